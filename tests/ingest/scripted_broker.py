"""A scripted MQTT broker: a small asyncio server that plays packets and records what ingest sends.

Each connection runs ``script(conn, number)``; :class:`Conn` reads every packet of the client in the
background (answering PINGREQ unless told not to), and the script sends what it wants when it wants.
It reaches what a real broker cannot be made to do: refuse, grant QoS 0, send QoS 2 or 3, go silent.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ingest.session import packet
from tests.ingest.scripted_server import ScriptedServer

CONNECT, PUBLISH, PUBACK, SUBSCRIBE, PINGREQ, DISCONNECT = 1, 3, 4, 8, 12, 14
TOPIC = "stations/v1/PL-KT-001/occupancy"


def connack(code: int = 0, *, present: bool = False) -> bytes:
    return packet(0x20, bytes([1 if present else 0, code]))


def suback(packet_id: int = 1, granted: int = 1) -> bytes:
    return packet(0x90, struct.pack("!HB", packet_id, granted))


def publish(payload: bytes, packet_id: int | None = None, *, qos: int = 1, dup: bool = False,
            retain: bool = False, topic: str = TOPIC) -> bytes:
    raw = topic.encode()
    body = struct.pack("!H", len(raw)) + raw + (struct.pack("!H", packet_id or 1) if qos else b"") + payload
    return packet(0x30 | qos << 1 | (0x08 if dup else 0) | (0x01 if retain else 0), body)


@dataclass(slots=True, frozen=True)
class Packet:
    kind: int
    flags: int
    body: bytes

    @property
    def packet_id(self) -> int:
        return int(struct.unpack("!H", self.body[:2])[0])


@dataclass
class Conn:
    """One client connection: what it sent, and a way to answer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    answer_pings: bool = True
    received: list[Packet] = field(default_factory=list)
    closed_at: float | None = None
    last_sent_at: float = field(default_factory=time.monotonic)
    _new: asyncio.Event = field(default_factory=asyncio.Event)
    _seen: int = 0

    def send(self, data: bytes) -> None:
        self.writer.write(data)
        self.last_sent_at = time.monotonic()

    async def expect(self, kind: int, timeout: float = 5.0) -> Packet:
        """The next packet of ``kind`` the client sends (those before it are skipped, still recorded)."""
        async with asyncio.timeout(timeout):
            while True:
                while self._seen < len(self.received):
                    self._seen += 1
                    if self.received[self._seen - 1].kind == kind:
                        return self.received[self._seen - 1]
                if self.closed_at is not None:
                    raise AssertionError(f"connection closed before a packet of type {kind}: {self.kinds()}")
                self._new.clear()
                await self._new.wait()

    async def wait_closed(self, timeout: float = 10.0) -> float:
        """When the client closed the connection (monotonic)."""
        async with asyncio.timeout(timeout):
            while self.closed_at is None:
                self._new.clear()
                await self._new.wait()
        return self.closed_at

    def kinds(self) -> list[int]:
        return [p.kind for p in self.received]

    def close(self) -> None:
        self.writer.close()

    async def read_all(self) -> None:
        try:
            while True:
                head = await self.reader.readexactly(1)
                length, mult = 0, 1
                while True:
                    b = (await self.reader.readexactly(1))[0]
                    length += (b & 127) * mult
                    mult *= 128
                    if b < 128:
                        break
                body = await self.reader.readexactly(length)
                self.received.append(Packet(head[0] >> 4, head[0] & 0x0F, body))
                if head[0] >> 4 == PINGREQ and self.answer_pings:
                    self.send(b"\xd0\x00")
                self._new.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed_at = time.monotonic()
            self._new.set()


Script = Callable[[Conn, int], Awaitable[None]]


async def handshake(conn: Conn, *, present: bool = False, granted: int = 1) -> None:
    """CONNECT -> CONNACK 0, SUBSCRIBE -> SUBACK."""
    await conn.expect(CONNECT)
    conn.send(connack(present=present))
    sub = await conn.expect(SUBSCRIBE)
    conn.send(suback(sub.packet_id, granted))


class ScriptedBroker(ScriptedServer[Conn]):
    """``async with ScriptedBroker(script) as broker``: listening on ``broker.port``; ``broker.conns`` in order."""

    def conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Conn:
        return Conn(reader, writer)
