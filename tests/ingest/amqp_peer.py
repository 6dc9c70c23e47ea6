"""A scripted AMQP 0-9-1 broker: frames built by pamqp, and a small asyncio server that plays them.

The frame builders serve the sans-IO session's tests; :class:`ScriptedBroker` serves the
transport's: each connection runs ``script(conn, number)``, :class:`Conn` reads the client's frames
in the background (answering the handshake with :meth:`Conn.handshake`), and the script sends what
it wants when it wants. It reaches what a real broker cannot be made to do on demand: refuse
credentials, close a channel at the declare, cancel a consumer, go silent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from pamqp import heartbeat as pamqp_heartbeat
from pamqp.base import Frame

from ingest.amqp_session import CHANNEL
from tests.ingest.scripted_server import ScriptedServer

ROUTING_KEY = "stations.v1.PL-KT-001.occupancy"
TOPIC = "stations/v1/PL-KT-001/occupancy"
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


def method(value: Frame, channel: int = CHANNEL) -> bytes:
    return pamqp_frame.marshal(value, channel)


def start(*, mechanisms: str = "AMQPLAIN PLAIN", major: int = 0, minor: int = 9) -> bytes:
    return method(commands.Connection.Start(version_major=major, version_minor=minor, mechanisms=mechanisms,
                                            server_properties={"product": "RabbitMQ", "version": "3.10.8",
                                                               "cluster_name": "scripted"}), 0)


def tune(*, heartbeat: int = 60, frame_max: int = 131072, channel_max: int = 2047) -> bytes:
    return method(commands.Connection.Tune(channel_max=channel_max, frame_max=frame_max, heartbeat=heartbeat), 0)


def open_ok() -> bytes:
    return method(commands.Connection.OpenOk(), 0)


def channel_open_ok() -> bytes:
    return method(commands.Channel.OpenOk())


def qos_ok() -> bytes:
    return method(commands.Basic.QosOk())


def declare_ok(queue: str = "yizhan.ingest", messages: int = 0, consumers: int = 0) -> bytes:
    return method(commands.Queue.DeclareOk(queue, messages, consumers))


def bind_ok() -> bytes:
    return method(commands.Queue.BindOk())


def consume_ok(tag: str = "t") -> bytes:
    return method(commands.Basic.ConsumeOk(tag))


def close(code: int, text: str, class_id: int = 0, method_id: int = 0) -> bytes:
    return method(commands.Connection.Close(code, text, class_id, method_id), 0)


def close_ok() -> bytes:
    return method(commands.Connection.CloseOk(), 0)


def channel_close(code: int, text: str, class_id: int = 50, method_id: int = 10) -> bytes:
    return method(commands.Channel.Close(code, text, class_id, method_id))


def cancel(tag: str = "t") -> bytes:
    return method(commands.Basic.Cancel(tag, nowait=True))


def heartbeat() -> bytes:
    return pamqp_frame.marshal(pamqp_heartbeat.Heartbeat(), 0)


def deliver(body: bytes, tag: int = 1, *, redelivered: bool = False, routing_key: str = ROUTING_KEY,
            frame_max: int = 131072, body_size: int | None = None) -> bytes:
    """``basic.deliver``, its content header (with a content type, as the MQTT plugin sets headers) and
    its body in frames of at most ``frame_max``."""
    size = len(body) if body_size is None else body_size
    out = [method(commands.Basic.Deliver("t", tag, redelivered, "amq.topic", routing_key)),
           pamqp_frame.marshal(pamqp_header.ContentHeader(0, size, commands.Basic.Properties(
               content_type="application/json", delivery_mode=2, headers={"x-mqtt-publish-qos": 1})), CHANNEL)]
    room = frame_max - 8
    out += [pamqp_frame.marshal(pamqp_body.ContentBody(body[k:k + room]), CHANNEL) for k in range(0, len(body), room)]
    return b"".join(out)


HANDSHAKE = (start, tune, open_ok, channel_open_ok, qos_ok, declare_ok, bind_ok, consume_ok)
"""What the broker answers, one per step of the client's handshake."""


def frames(data: bytes) -> list[tuple[int, object]]:
    """The client's bytes as (channel, pamqp object), the protocol header left out."""
    if data.startswith(b"AMQP"):
        data = data[8:]
    out: list[tuple[int, object]] = []
    while data:
        used, channel, value = pamqp_frame.unmarshal(data)
        out.append((channel, value))
        data = data[used:]
    return out


def methods(data: bytes) -> list[object]:
    return [value for _, value in frames(data)]


@dataclass
class Conn:
    """One client connection: what it sent (pamqp objects), and a way to answer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: list[object] = field(default_factory=list)
    header: bytes = b""
    answer_close: bool = True
    """Answer the client's ``connection.close`` with ``close-ok``, as a broker does."""
    closed_at: float | None = None
    _buffer: bytes = b""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_all(self) -> None:
        try:
            self.header = await self.reader.readexactly(8)
            while data := await self.reader.read(65536):
                self._buffer += data
                while len(self._buffer) >= 8:
                    size = int.from_bytes(self._buffer[3:7])
                    if len(self._buffer) < size + 8:
                        break
                    _, _, value = pamqp_frame.unmarshal(self._buffer[:size + 8])
                    self._buffer = self._buffer[size + 8:]
                    self.received.append(value)
                    if isinstance(value, commands.Connection.Close) and self.answer_close:
                        self.send(close_ok())
                    self._arrived.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed_at = time.monotonic()
            self._arrived.set()

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def expect(self, kind: type[object], timeout: float = 5.0, *, count: int = 1) -> list[object]:
        """Wait until the client has sent ``count`` frames of ``kind``; return them all."""
        async with asyncio.timeout(timeout):
            while len(found := [f for f in self.received if isinstance(f, kind)]) < count:
                if self.closed_at is not None:
                    raise AssertionError(f"connection closed before {count} {kind.__name__}: {self.received}")
                self._arrived.clear()
                await self._arrived.wait()
        return found

    async def handshake(self, *, steps: int = len(HANDSHAKE), heartbeat: int = 60) -> None:
        """Answer the client's handshake up to ``steps`` answers (all: consuming)."""
        answers = [start, lambda: tune(heartbeat=heartbeat), *HANDSHAKE[2:]][:steps]
        asks = [None, commands.Connection.StartOk, commands.Connection.Open, commands.Channel.Open,
                commands.Basic.Qos, commands.Queue.Declare, commands.Queue.Bind, commands.Basic.Consume]
        for ask, answer in zip(asks, answers, strict=False):
            if ask is not None:
                await self.expect(ask)
            self.send(answer())

    async def closed(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while self.closed_at is None:
                self._arrived.clear()
                await self._arrived.wait()

    def close(self) -> None:
        self.writer.close()


class ScriptedBroker(ScriptedServer[Conn]):
    """``async with ScriptedBroker(script) as broker``: listening on ``broker.port``; ``broker.conns`` in order."""

    def conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Conn:
        return Conn(reader, writer)

    def url(self, user: str = "guest", password: str = "guest") -> str:  # noqa: S107 - the test broker takes any
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/"
