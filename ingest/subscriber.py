"""The MQTT receive path of ingest: an MQTT 3.1.1 client on ``asyncio.Protocol``.

It does one thing: keep a persistent session (clean session off) subscribed at QoS 1 and hand
every PUBLISH to a callback, sending the PUBACK only when the caller says the message is durable
(:meth:`Subscriber.ack`, called once per written batch). Why our own and not aiomqtt or paho:
``docs/ingest.md`` (aiomqtt 2.x cannot acknowledge after processing; paho's manual ack costs
60-70 µs of CPU per message here, this path 10-11 µs).

Acknowledgement tokens carry the connection they came from: after a reconnect the broker
redelivers what was not acknowledged, so tokens of an earlier connection are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from ingest.exceptions import ConnectRefusedError, MqttError, MqttProtocolError, SubscribeRefusedError

logger = logging.getLogger(__name__)

AckToken = tuple[int, int]
"""(connection number, packet id) of a QoS 1 message."""

_PUBLISH = 3
_PUBACK_PACK = struct.Struct("!BBH").pack
_PINGREQ: Final = b"\xc0\x00"
_DISCONNECT: Final = b"\xe0\x00"
# Read coalescing: after a small read, wait this long before reading again, so the next read
# carries many messages. Per read the event loop and the syscalls cost about as much CPU as
# decoding a dozen readings; 2 ms adds 2 ms of latency and divides that cost by the batch.
_SMALL_READ: Final = 32 * 1024
_COALESCE_SECONDS: Final = 0.002


Message = tuple[str, bytes, AckToken | None]
"""A PUBLISH: topic, payload, and the token to acknowledge (None for QoS 0)."""
OnMessages = Callable[[Sequence[Message]], None]
"""Called with the PUBLISH packets of each read, in order (one call per read: decoding can batch)."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id: str, *, keepalive: int, clean_session: bool,
                   username: str | None, password: str | None) -> bytes:
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0) | (
        0x40 if password is not None else 0)
    body = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _utf8(client_id)
    if username is not None:
        body += _utf8(username)
    if password is not None:
        body += _utf8(password)
    return _packet(0x10, body)


def subscribe_packet(topic_filter: str, packet_id: int = 1) -> bytes:
    return _packet(0x82, struct.pack("!H", packet_id) + _utf8(topic_filter) + b"\x01")


class _Protocol(asyncio.Protocol):
    """Splits the byte stream into packets; PUBLISH goes straight to the subscriber's callback."""

    def __init__(self, owner: Subscriber, connection: int) -> None:
        self._owner = owner
        self._connection = connection
        self._pending: list[bytes] = []
        self._coalescing = False
        self._pending_len = 0
        self._need = 2
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.last_rx = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - stream transport
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(MqttError("connection closed by the broker"))
        if not self.lost.done():
            self.lost.set_result(exc)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        if self._pending:  # the rest of a packet split across reads: join once it is complete
            self._pending.append(data)
            self._pending_len += len(data)
            if self._pending_len < self._need:
                return
            data = b"".join(self._pending)
            self._pending = []
        messages: list[Message] = []
        try:
            i = self._parse(data, messages)
        except (MqttProtocolError, IndexError) as exc:  # what came before is not acknowledged: it comes back
            logger.warning("MQTT protocol error, closing the connection: %s", exc)
            if self.transport:
                self.transport.abort()
            return
        if messages:
            self._owner.on_messages(messages)
        if i < len(data):
            rest = data[i:]
            self._pending, self._pending_len = [rest], len(rest)
        if len(data) < _SMALL_READ and self.transport is not None and not self._coalescing:
            self._coalescing = True
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(_COALESCE_SECONDS, self._read_again)

    def _read_again(self) -> None:
        self._coalescing = False
        if self.transport is not None and not self.transport.is_closing() and not self._owner.paused:
            self.transport.resume_reading()

    def _parse(self, data: bytes, messages: list[Message]) -> int:
        """Collect the PUBLISHes of ``data`` in ``messages``, handle the rest; return where a partial packet begins."""
        add, connection = messages.append, self._connection
        i, end = 0, len(data)
        while end - i >= 2:
            j, length, mult = i + 1, 0, 1
            while True:  # remaining length: up to 4 bytes, 7 bits each
                if j >= end:
                    self._need = end - i + 1
                    return i
                b = data[j]
                j += 1
                length += (b & 127) * mult
                if b < 128:
                    break
                mult *= 128
                if mult > 128**3:
                    raise MqttProtocolError("malformed remaining length")
            stop = j + length
            if stop > end:
                self._need = stop - i
                return i
            first = data[i]
            if first >> 4 == _PUBLISH:  # the hot path, inline
                k = j + 2 + ((data[j] << 8) | data[j + 1])
                topic = data[j + 2:k].decode("utf-8", "replace")
                if first & 0x06:
                    add((topic, data[k + 2:stop], (connection, (data[k] << 8) | data[k + 1])))
                else:
                    add((topic, data[k:stop], None))
            else:
                self._control(first, data, j, stop)
            i = stop
        self._need = 2
        return i

    def _control(self, first: int, data: bytes, start: int, end: int) -> None:
        match first >> 4:
            case 2:
                if not self.connack.done():
                    self.connack.set_result((data[start + 1], bool(data[start] & 1)))
            case 9:
                if not self.suback.done():
                    self.suback.set_result(data[start + 2] if end - start >= 3 else 0x80)
            case 13 | 4:
                pass
            case other:
                raise MqttProtocolError(f"unexpected packet type {other}")


class Subscriber:
    """A persistent-session QoS 1 subscription with acknowledgements under the caller's control.

    Args:
        host, port: the broker.
        client_id: the session's identity; the broker keeps its subscription and unacknowledged
            messages while it is away.
        topic_filter: what to subscribe to, at QoS 1.
        on_messages: called synchronously with the PUBLISH packets of every read, in order (see
            :data:`OnMessages`).
        tls: a TLS context for ``mqtts://``, or None.
    """

    def __init__(self, *, host: str, port: int, client_id: str, topic_filter: str,
                 on_messages: OnMessages, username: str | None = None,
                 password: str | None = None, tls: ssl.SSLContext | None = None,
                 keepalive: int = 30, connect_timeout: float = 10.0, backoff_max: float = 30.0) -> None:
        self.on_messages = on_messages
        self._host, self._port, self._tls = host, port, tls
        self._client_id, self._topic_filter = client_id, topic_filter
        self._username, self._password = username, password
        self._keepalive, self._connect_timeout, self._backoff_max = keepalive, connect_timeout, backoff_max
        self._proto: _Protocol | None = None
        self._connection = 0
        self._paused = False
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()
        self.on_state: Callable[[bool], None] = lambda _up: None

    async def run(self) -> None:
        """Connect, subscribe, receive; reconnect with capped exponential backoff and jitter."""
        delay = 1.0
        while not self._stopping.is_set():
            try:
                await self._session()
                delay = 1.0
            except (OSError, TimeoutError, MqttError) as exc:
                logger.warning("MQTT %s:%s: %s; retrying in up to %.0f s", self._host, self._port,
                               exc or type(exc).__name__, delay)
            if self._stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay * random.uniform(0.5, 1.0)):  # noqa: S311 - jitter
                    await self._stopping.wait()
            delay = min(delay * 2, self._backoff_max)

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        self._connection += 1
        async with asyncio.timeout(self._connect_timeout):
            transport, proto = await loop.create_connection(
                lambda: _Protocol(self, self._connection), self._host, self._port, ssl=self._tls,
                server_hostname=self._host if self._tls else None)
        self._proto = proto
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport.write(connect_packet(self._client_id, keepalive=self._keepalive, clean_session=False,
                                               username=self._username, password=self._password))
                code, present = await proto.connack
                if code:
                    raise ConnectRefusedError(code)
                transport.write(subscribe_packet(self._topic_filter))
                if await proto.suback == 0x80:
                    raise SubscribeRefusedError(self._topic_filter)
            logger.info("MQTT connected to %s:%s as %s (session %s), subscribed to %s", self._host, self._port,
                        self._client_id, "resumed" if present else "new", self._topic_filter)
            if self._paused:
                transport.pause_reading()
            self.connected.set()
            self.on_state(True)
            await self._watch(proto)
        finally:
            if self.connected.is_set():
                self.on_state(False)
            self.connected.clear()
            self._proto = None
            transport.abort()

    async def _watch(self, proto: _Protocol) -> None:
        """Wait until the connection is lost or stopped; ping so the broker knows we are alive."""
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
        lost: asyncio.Future[Any] = proto.lost
        try:
            while True:
                done, _ = await asyncio.wait({lost, stop}, timeout=self._keepalive / 2,
                                             return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return
                if lost in done:
                    raise MqttError(f"connection lost: {proto.lost.result() or 'closed by the broker'}")
                silent = time.monotonic() - proto.last_rx
                if not self._paused and silent > self._keepalive * 1.5:
                    raise MqttError(f"no packet from the broker for {silent:.0f} s")
                if proto.transport:
                    proto.transport.write(_PINGREQ)
        finally:
            stop.cancel()

    def ack(self, tokens: Iterable[AckToken]) -> int:
        """Send the PUBACKs of ``tokens`` that belong to the current connection, in one write."""
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            return 0
        current = self._connection
        acks = [_PUBACK_PACK(0x40, 2, pid) for conn, pid in tokens if conn == current]
        if acks:
            proto.transport.write(b"".join(acks))
        return len(acks)

    def pause(self) -> None:
        """Stop reading from the broker (backpressure); unacknowledged messages stay with it."""
        if not self._paused:
            self._paused = True
            if self._proto and self._proto.transport:
                self._proto.transport.pause_reading()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            proto = self._proto
            if proto and proto.transport and not proto.transport.is_closing() and not proto._coalescing:
                proto.transport.resume_reading()

    @property
    def paused(self) -> bool:
        return self._paused

    async def stop(self) -> None:
        """Send DISCONNECT (the session and its unacknowledged messages stay) and end :meth:`run`."""
        proto = self._proto
        if proto and proto.transport and not proto.transport.is_closing():
            proto.transport.write(_DISCONNECT)
        self._stopping.set()
