"""The MQTT receive path of ingest: the asyncio transport around :class:`ingest.session.Session`.

It does one thing: keep a persistent session (clean session off) subscribed at QoS 1 and hand
every PUBLISH to a callback, sending the PUBACK only when the caller says the message is durable
(:meth:`Subscriber.ack`, called once per written batch). Why our own and not aiomqtt or paho:
``docs/ingest.md`` (aiomqtt 2.x cannot acknowledge after processing; paho's manual ack costs
60-70 µs of CPU per message here, this path 10-11 µs).

Every decision about the protocol is the session's (``ingest/session.py``); this module moves
bytes and timers: it connects, feeds what it reads and the clock into the session, writes what
the session has to send, and acts on its events (reconnect with backoff, or at once when the
session asks for a redelivery). It never stops reading the socket for backpressure, so CONNACK,
SUBACK, PINGRESP and EOF are always seen; the session holds PUBLISHes back while paused.

Acknowledgement tokens carry the connection they came from: after a reconnect the broker
redelivers what was not acknowledged, so tokens of an earlier connection are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Final

from ingest.exceptions import MqttError
from ingest.session import Closed, Connected, Event, Session, State, Subscribed, connect_packet
from ingest.source import DUP, OVERSIZE, RETAINED, AckToken, Message, OnMessages
from telemetry.backoff import Backoff

__all__ = ["DUP", "OVERSIZE", "RETAINED", "AckToken", "Message", "OnMessages", "Subscriber", "connect_packet"]

logger = logging.getLogger(__name__)

# Read coalescing: after a small read, wait this long before reading again, so the next read
# carries many messages. Per read the event loop and the syscalls cost about as much CPU as
# decoding a dozen readings; 2 ms adds 2 ms of latency and divides that cost by the batch.
_SMALL_READ: Final = 32 * 1024
_COALESCE_SECONDS: Final = 0.002
_CLOSE_SECONDS: Final = 5.0
"""How long a closing connection may take to write what is left (the last PUBACKs, DISCONNECT)."""
_HEALTHY_SECONDS: Final = 5.0
"""A subscribed session that lasted this long resets the reconnect backoff."""


class _Protocol(asyncio.Protocol):
    """Feeds the byte stream into the session; PUBLISHes go straight to the subscriber's callback."""

    def __init__(self, owner: Subscriber) -> None:
        self._owner = owner
        self._coalescing = False
        self.session: Session | None = None
        self.closed: Closed | None = None
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - stream transport
        self.transport = transport

    def connection_lost(self, _exc: Exception | None) -> None:
        if self.session is not None and self.session.state is not State.CLOSED:
            self.session.receive_eof()
            self._owner.pump(self)
        if not self.lost.done():
            self.lost.set_result(None)

    def eof_received(self) -> bool:
        if self.session is not None:
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
        if len(data) < _SMALL_READ and self.transport is not None and not self._coalescing:
            self._coalescing = True
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(_COALESCE_SECONDS, self._read_again)

    def _read_again(self) -> None:
        self._coalescing = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class Subscriber:
    """A persistent-session QoS 1 subscription with acknowledgements under the caller's control.

    Args:
        host, port: the broker.
        client_id: the session's identity; the broker keeps its subscription and unacknowledged
            messages while it is away.
        topic_filter: what to subscribe to, at QoS 1.
        on_messages: called synchronously with the PUBLISH packets of every read, in order (see
            :data:`OnMessages`).
        on_event: called with every session event (:class:`ingest.session.Connected`, ``Subscribed``,
            ``Closed``): the service counts lost sessions and protocol errors with it.
        tls: a TLS context for ``mqtts://``, or None.
        connect_timeout: for the TCP connection and the CONNACK together (the SUBACK may come
            after a resumed session's backlog: the keepalive watches the broker meanwhile).
        hold_bytes: PUBLISHes held while paused before the session drops them for a redelivery.
        backoff: the delays between attempts (by default up to ``backoff_max``, reset after a
            session that was subscribed for 5 s).
    """

    def __init__(self, *, host: str, port: int, client_id: str, topic_filter: str,
                 on_messages: OnMessages, on_event: Callable[[Event], None] | None = None,
                 username: str | None = None, password: str | None = None, tls: ssl.SSLContext | None = None,
                 keepalive: int = 30, connect_timeout: float = 10.0, backoff_max: float = 30.0,
                 hold_bytes: int = 32 * 1024 * 1024, backoff: Backoff | None = None) -> None:
        self.on_messages = on_messages
        self._on_event = on_event or (lambda _event: None)
        self._host, self._port, self._tls = host, port, tls
        self._client_id, self._topic_filter = client_id, topic_filter
        self._username, self._password = username, password
        self._keepalive, self._connect_timeout, self._hold_bytes = keepalive, connect_timeout, hold_bytes
        self.backoff = backoff or Backoff(initial=min(1.0, backoff_max), cap=backoff_max,
                                          healthy_after=_HEALTHY_SECONDS)
        self._proto: _Protocol | None = None
        self._connection = 0
        self._had_session = False
        self._undelivered: frozenset[int] = frozenset()
        self._paused = False
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._wake = asyncio.Event()
        self.connected = asyncio.Event()
        self.on_state: Callable[[bool], None] = lambda _up: None

    async def run(self) -> None:
        """Connect, subscribe, receive; reconnect with capped exponential backoff and jitter."""
        try:
            while not self._stopping.is_set():
                try:
                    closed = await self._session()
                except (OSError, MqttError) as exc:
                    reason = str(exc) or type(exc).__name__
                else:
                    if closed.redeliver:
                        logger.info("MQTT %s", closed.reason)
                        continue
                    reason = closed.reason
                if self._stopping.is_set():
                    return
                delay = self.backoff.next()
                logger.warning("MQTT %s:%s: %s; retrying in %.1f s", self._host, self._port, reason, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
        finally:
            self._finished.set()

    async def _session(self) -> Closed:
        """One connection, from TCP connect to its end; returns how it ended, raises on errors."""
        loop = asyncio.get_running_loop()
        self._connection += 1
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, proto = await loop.create_connection(
                    lambda: _Protocol(self), self._host, self._port, ssl=self._tls,
                    server_hostname=self._host if self._tls else None)
        except TimeoutError as exc:
            raise MqttError(f"TCP connection not made in {self._connect_timeout:.0f} s") from exc
        proto.session = Session(client_id=self._client_id, topic_filter=self._topic_filter,
                                connection=self._connection, now=started, keepalive=self._keepalive,
                                connect_timeout=self._connect_timeout, username=self._username,
                                password=self._password, expect_session=self._had_session,
                                paused=self._paused, hold_bytes=self._hold_bytes, undelivered=self._undelivered)
        self._proto = proto
        try:
            self.pump(proto)
            closed = await self._watch(proto, proto.session)
            self._undelivered = frozenset(proto.session.dropped_ids) if closed.redeliver else frozenset()
        finally:
            self._proto = None
            if self.connected.is_set():
                self.connected.clear()
                self.on_state(False)
                self.backoff.succeeded(time.monotonic() - started)
            await self._close(transport, proto)
        if closed.error is not None:
            raise closed.error
        return closed

    async def _watch(self, proto: _Protocol, session: Session) -> Closed:
        """Tick the session at its deadlines until it is closed."""
        while True:
            if proto.closed is not None:
                return proto.closed
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, session.deadline - time.monotonic())):
                    await self._wake.wait()
            session.tick(time.monotonic())
            self.pump(proto)

    async def _close(self, transport: asyncio.Transport, proto: _Protocol) -> None:
        """Close after writing what is left (the last PUBACKs, DISCONNECT); abort if it takes too long."""
        transport.close()
        try:
            async with asyncio.timeout(_CLOSE_SECONDS):
                await proto.lost
        except TimeoutError:
            logger.warning("MQTT connection did not close in %.0f s: aborting it", _CLOSE_SECONDS)
            transport.abort()

    def pump(self, proto: _Protocol) -> None:
        """Write what the session has to send and act on its events."""
        session, transport = proto.session, proto.transport
        if session is None or transport is None:
            return
        if out := session.data_to_send():
            transport.write(out)
        for event in session.next_events():
            if isinstance(event, Closed):
                proto.closed = event
            self._event(event)

    def _event(self, event: Event) -> None:
        self._wake.set()  # the session's deadline may be earlier now (the keepalive after the CONNACK)
        match event:
            case Connected(session_present=present, session_lost=lost):
                self._had_session = True
                if lost:
                    logger.warning("MQTT broker %s:%s lost the session of %s: what was published while ingest "
                                   "was away is gone", self._host, self._port, self._client_id)
                else:
                    logger.info("MQTT connected to %s:%s as %s (session %s)", self._host, self._port,
                                self._client_id, "resumed" if present else "new")
            case Subscribed():
                logger.info("MQTT subscribed to %s", self._topic_filter)
                self.connected.set()
                self.on_state(True)
        self._on_event(event)

    def ack(self, tokens: Iterable[AckToken]) -> int:
        """Send the PUBACKs of ``tokens`` that belong to the current connection, in one write."""
        proto = self._proto
        if proto is None or proto.session is None:
            return 0
        sent = proto.session.ack(tokens, time.monotonic())
        self.pump(proto)
        return sent

    def pause(self) -> None:
        """Hold PUBLISHes back (backpressure); the connection is still read, and watched."""
        self._paused = True
        if self._proto and self._proto.session:
            self._proto.session.pause()

    def resume(self) -> None:
        """Hand PUBLISHes over again, those held meanwhile first."""
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
        """PUBLISHes held back while paused."""
        proto = self._proto
        return proto.session.held if proto and proto.session else 0

    async def stop(self) -> None:
        """Send DISCONNECT after the PUBACKs queued so far (the session stays); wait until :meth:`run` ends."""
        self._stopping.set()
        proto = self._proto
        if proto and proto.session:
            proto.session.disconnect(time.monotonic())
            self.pump(proto)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_SECONDS + 1):
                await self._finished.wait()
