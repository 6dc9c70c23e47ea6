"""A scripted MQTT 3.1.1 broker for connection tests: plays a script to each client, records what it sends.

The n-th connection plays the n-th script (the last one again for any further connection). A
script is a sequence of steps; once it is played the broker stays silent, still recording,
until the client hangs up::

    async with ScriptedBroker([Expect(CONNECT), Reply(connack(5))],      # 1st: refused
                              [Expect(CONNECT), Reply(connack()), Serve()]) as broker:
        ...                                                              # 2nd and later: served
        await until(lambda: len(broker.sessions) >= 3, what="a third attempt")

:class:`Serve` answers like a broker (PUBACK, SUBACK, PINGRESP) until the test calls
:meth:`Session.hang_up`; a script that ends without it plays a dead broker: silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from types import TracebackType
from typing import Self


class Type(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    SUBSCRIBE = 8
    SUBACK = 9
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


CONNECT, PUBLISH, SUBSCRIBE, PINGREQ, DISCONNECT = Type.CONNECT, Type.PUBLISH, Type.SUBSCRIBE, Type.PINGREQ, \
    Type.DISCONNECT


@dataclass(slots=True, frozen=True)
class Packet:
    type: Type
    flags: int
    body: bytes


@dataclass(slots=True, frozen=True)
class Connect:
    """The fields of a CONNECT packet the tests look at."""

    client_id: str
    clean_session: bool
    keepalive: int
    will_topic: str | None
    will_payload: bytes | None
    will_qos: int
    will_retain: bool
    username: str | None


def connack(return_code: int = 0) -> bytes:
    """CONNACK: 0 accepted; 1-5 refused (5: not authorized)."""
    return bytes([Type.CONNACK << 4, 2, 0, return_code])


@dataclass(slots=True, frozen=True)
class Expect:
    """Wait until the client sends a packet of this type."""

    type: Type


@dataclass(slots=True, frozen=True)
class Reply:
    """Send these bytes."""

    data: bytes


@dataclass(slots=True, frozen=True)
class Close:
    """Hang up at once (no DISCONNECT exists from a 3.1.1 broker)."""


@dataclass(slots=True, frozen=True)
class Serve:
    """Answer as a broker: PUBACK each QoS 1 PUBLISH, SUBACK each SUBSCRIBE, PINGRESP each PINGREQ.

    With ``puback=False`` it never acknowledges a PUBLISH: everything the client sends stays in its
    in-flight window (a node that took the messages and died before its queues confirmed them).
    """

    puback: bool = True


Step = Expect | Reply | Close | Serve


@dataclass(slots=True)
class Session:
    """One client connection: what it sent, in order, and whether the client hung up."""

    packets: list[Packet] = field(default_factory=list)
    opened: float = field(default_factory=time.monotonic)
    """When the client connected (orders the sessions of several brokers)."""
    client_left: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by :meth:`hang_up`."""

    def of(self, kind: Type) -> list[Packet]:
        return [p for p in self.packets if p.type is kind]

    @property
    def connect(self) -> Connect:
        return parse_connect(self.of(CONNECT)[0].body)

    def hang_up(self) -> None:
        """End a :class:`Serve` step: the broker closes the connection."""
        self.ended.set()


class ScriptedBroker:
    """A TCP server on a free port of 127.0.0.1 playing ``scripts`` (see the module docstring)."""

    def __init__(self, *scripts: Sequence[Step]) -> None:
        if not scripts:
            raise ValueError("give at least one script")
        self._scripts = scripts
        self.sessions: list[Session] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session()
        script = self._scripts[min(len(self.sessions), len(self._scripts) - 1)]
        self.sessions.append(session)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await _play(script, session, reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()


async def _play(script: Sequence[Step], session: Session, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    for step in script:
        match step:
            case Expect(kind):
                while (packet := await _read(reader, session)) is not None and packet.type is not kind:
                    pass
                if packet is None:
                    return
            case Reply(data):
                writer.write(data)
                await writer.drain()
            case Close():
                return
            case Serve(puback):
                await _serve(session, reader, writer, puback=puback)
                return
    while await _read(reader, session) is not None:  # silence
        pass


async def _serve(session: Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 puback: bool) -> None:
    hang_up = asyncio.ensure_future(session.ended.wait())
    try:
        while True:
            read = asyncio.ensure_future(_read(reader, session))
            await asyncio.wait([read, hang_up], return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                read.cancel()
                return
            packet = read.result()
            if packet is None:
                return
            if answer := _answer(packet, puback=puback):
                writer.write(answer)
                await writer.drain()
    finally:
        hang_up.cancel()


def _answer(packet: Packet, *, puback: bool) -> bytes:
    match packet.type:
        case Type.PUBLISH if packet.flags & 0x06 and puback:
            topic_len = int.from_bytes(packet.body[:2])
            return bytes([Type.PUBACK << 4, 2]) + packet.body[2 + topic_len:4 + topic_len]
        case Type.SUBSCRIBE:
            return bytes([Type.SUBACK << 4, 3]) + packet.body[:2] + b"\x01"
        case Type.PINGREQ:
            return bytes([Type.PINGRESP << 4, 0])
    return b""


async def _read(reader: asyncio.StreamReader, session: Session) -> Packet | None:
    """The next packet (recorded), or None once the client has hung up."""
    try:
        first = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        session.client_left = True
        return None
    packet = Packet(Type(first >> 4), first & 0x0F, body)
    session.packets.append(packet)
    return packet


def parse_connect(body: bytes) -> Connect:
    """The CONNECT variable header and payload of MQTT 3.1.1 (protocol name, level, flags, then fields)."""
    fields = _Fields(body)
    fields.string()  # "MQTT"
    fields.take(1)  # level 4
    flags = fields.take(1)[0]
    keepalive = int.from_bytes(fields.take(2))
    client_id = fields.string().decode()
    will_topic = fields.string().decode() if flags & 0x04 else None
    will_payload = fields.string() if flags & 0x04 else None
    username = fields.string().decode() if flags & 0x80 else None
    return Connect(client_id, bool(flags & 0x02), keepalive, will_topic, will_payload, (flags >> 3) & 0x03,
                   bool(flags & 0x20), username)


class _Fields:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def take(self, n: int) -> bytes:
        out = self._data[self._at:self._at + n]
        self._at += n
        return out

    def string(self) -> bytes:
        return self.take(int.from_bytes(self.take(2)))
