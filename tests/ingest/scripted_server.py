"""The server half of the scripted brokers (MQTT: ``scripted_broker.py``, AMQP: ``amqp_peer.py``).

Each connection gets a protocol-specific ``Conn`` (made by :meth:`ScriptedServer.conn`) that reads
the client in the background (``read_all``) while ``script(conn, number)`` sends what it wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar


class _Conn(Protocol):
    async def read_all(self) -> None: ...
    def close(self) -> None: ...


C = TypeVar("C", bound=_Conn)


class ScriptedServer(Generic[C]):
    """``async with Server(script) as server``: listening on ``server.port``; ``server.conns`` in order.

    With ``tls``, the listener speaks TLS with that server context."""

    def __init__(self, script: Callable[[C, int], Awaitable[None]], *, tls: ssl.SSLContext | None = None) -> None:
        self._script = script
        self._tls = tls
        self.conns: list[C] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self._connected = asyncio.Event()
        self.port = 0

    def conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> C:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.conns:
            conn.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.conn(reader, writer)
        number = len(self.conns)
        self.conns.append(conn)
        self._connected.set()
        self._tasks.append(asyncio.create_task(conn.read_all(), name=f"scripted-read-{number}"))
        await self._script(conn, number)
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    async def connection(self, number: int, timeout: float = 10.0) -> C:
        """The ``number``-th connection (from 0), once it is made."""
        async with asyncio.timeout(timeout):
            while len(self.conns) <= number:
                self._connected.clear()
                await self._connected.wait()
        return self.conns[number]
