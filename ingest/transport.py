"""The asyncio side that ingest's two sources share: a sans-IO session fed from a socket and ticked.

:class:`SessionTransport` is the base of :class:`ingest.subscriber.Subscriber` (MQTT) and
:class:`ingest.amqp_consumer.AmqpConsumer` (AMQP). It moves bytes and timers only: what a read
brings goes into the session, what the session has to send goes out, its deadlines are kept, and
its events go to the subclass (:meth:`SessionTransport.event`). Acknowledgements, pausing and
the clean stop are the same for both; so is reading the socket, which never stops for
backpressure (the session holds messages back while paused), only for 2 ms after a small read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Generic, Protocol, TypeVar

from ingest.source import AckToken, Message, OnMessages

logger = logging.getLogger(__name__)

# Read coalescing: after a small read, wait this long before reading again, so the next read
# carries many messages. Per read the event loop and the syscalls cost about as much CPU as
# decoding a dozen readings; 2 ms adds 2 ms of latency and divides that cost by the batch.
_SMALL_READ: Final = 32 * 1024
_COALESCE_SECONDS: Final = 0.002
CLOSE_SECONDS: Final = 5.0
"""How long a closing connection may take to write what is left (the last acknowledgements, the close)."""


class SansIOSession(Protocol):
    """What the transport needs of a session (``ingest.session.Session``, ``ingest.amqp_session.Session``)."""

    @property
    def is_closed(self) -> bool: ...
    @property
    def deadline(self) -> float: ...
    @property
    def held(self) -> int: ...
    def receive_data(self, data: bytes, now: float) -> list[Message]: ...
    def receive_eof(self) -> None: ...
    def tick(self, now: float) -> None: ...
    def ack(self, tokens: Iterable[AckToken], now: float) -> int: ...
    def pause(self) -> None: ...
    def resume(self) -> list[Message]: ...
    def disconnect(self, now: float) -> None: ...
    def data_to_send(self) -> bytes: ...
    def next_events(self) -> Sequence[object]: ...


S = TypeVar("S", bound=SansIOSession)
E = TypeVar("E")


class StreamProtocol(asyncio.Protocol, Generic[S, E]):
    """Feeds the byte stream into the session; messages go straight to the owner's callback."""

    def __init__(self, owner: SessionTransport[S, E]) -> None:
        self._owner = owner
        self._coalescing = False
        self.session: S | None = None
        self.closed: E | None = None
        """The session's event that ended it, once it came."""
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - stream transport
        self.transport = transport

    def connection_lost(self, _exc: Exception | None) -> None:
        self.eof_received()
        if not self.lost.done():
            self.lost.set_result(None)

    def eof_received(self) -> bool:
        if self.session is not None and not self.session.is_closed:
            self.session.receive_eof()
            self._owner.pump(self)
        return False

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        messages = session.receive_data(data, time.monotonic())
        self._owner.pump(self)
        if messages:
            self._owner.on_messages(messages)
        transport = self.transport
        if len(data) < _SMALL_READ and transport is not None and not self._coalescing:
            self._coalescing = True
            transport.pause_reading()
            asyncio.get_running_loop().call_later(_COALESCE_SECONDS, self._read_again)

    def _read_again(self) -> None:
        self._coalescing = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class SessionTransport(Generic[S, E]):
    """One connection at a time to a broker, its session kept and ticked; subclasses connect and reconnect.

    Subclasses implement :meth:`event` (and set ``proto.closed`` for the event that ends a session).
    """

    def __init__(self, *, on_messages: OnMessages, name: str) -> None:
        self.on_messages = on_messages
        self._name = name
        self._proto: StreamProtocol[S, E] | None = None
        self._paused = False
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._wake = asyncio.Event()
        self.connected = asyncio.Event()
        self.on_state: Callable[[bool], None] = lambda _up: None

    def event(self, proto: StreamProtocol[S, E], event: E) -> None:
        raise NotImplementedError

    async def open(self, host: str, port: int, tls: ssl.SSLContext | None, connect_seconds: float,
                   error: Callable[[str], Exception]) -> tuple[asyncio.Transport, StreamProtocol[S, E]]:
        """The TCP (and TLS) connection, within ``connect_seconds``; ``error`` makes the exception for a timeout."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_seconds):
                return await loop.create_connection(lambda: StreamProtocol(self), host, port, ssl=tls,
                                                    server_hostname=host if tls else None)
        except TimeoutError as exc:
            raise error(f"TCP connection not made in {connect_seconds:.0f} s") from exc

    async def watch(self, proto: StreamProtocol[S, E], session: S) -> E:
        """Tick the session at its deadlines until it is closed; returns the event that closed it."""
        self._proto = proto
        if self._stopping.is_set():  # stop() came while connecting: end this session cleanly at once
            session.disconnect(time.monotonic())
        self.pump(proto)
        try:
            while proto.closed is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, session.deadline - time.monotonic())):
                        await self._wake.wait()
                session.tick(time.monotonic())
                self.pump(proto)
            return proto.closed
        finally:
            self._proto = None

    async def close(self, transport: asyncio.Transport, proto: StreamProtocol[S, E]) -> None:
        """Close after writing what is left; abort if it takes too long."""
        transport.close()
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await proto.lost
        except TimeoutError:
            logger.warning("%s connection did not close in %.0f s: aborting it", self._name, CLOSE_SECONDS)
            transport.abort()

    async def pause_unless_stopped(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less if :meth:`stop` is called meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping.wait()

    def pump(self, proto: StreamProtocol[S, E]) -> None:
        """Write what the session has to send and act on its events."""
        session, transport = proto.session, proto.transport
        if session is None or transport is None:
            return
        if out := session.data_to_send():
            transport.write(out)
        for event in session.next_events():
            self._wake.set()  # the session's deadline may have changed (the keepalive after the handshake)
            self.event(proto, event)  # type: ignore[arg-type]  # the session's events are E

    def ack(self, tokens: Iterable[AckToken]) -> int:
        """Acknowledge ``tokens`` that belong to the current connection, in one write."""
        proto = self._proto
        if proto is None or proto.session is None:
            return 0
        sent = proto.session.ack(tokens, time.monotonic())
        self.pump(proto)
        return sent

    def pause(self) -> None:
        """Hold messages back (backpressure); the connection is still read, and watched."""
        self._paused = True
        if self._proto and self._proto.session:
            self._proto.session.pause()

    def resume(self) -> None:
        """Hand messages over again, those held meanwhile first."""
        if not self._paused:
            return
        self._paused = False
        proto = self._proto
        if proto and proto.session:
            held = proto.session.resume()
            self.pump(proto)
            if held:
                self.on_messages(held)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def held(self) -> int:
        """Messages held back while paused."""
        proto = self._proto
        return proto.session.held if proto and proto.session else 0

    async def stop(self) -> None:
        """End the session cleanly after the acknowledgements queued so far; wait until ``run`` ends."""
        self._stopping.set()
        proto = self._proto
        if proto and proto.session:
            proto.session.disconnect(time.monotonic())
            self.pump(proto)
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_SECONDS * 2 + 1):
                await self._finished.wait()
