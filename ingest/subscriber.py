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

import logging
import ssl
import time
from collections.abc import Callable
from typing import Final

from ingest.exceptions import MqttError
from ingest.session import Closed, Connected, Event, Session, Subscribed, connect_packet
from ingest.source import DUP, OVERSIZE, RETAINED, AckToken, Message, OnMessages
from ingest.transport import SessionTransport, StreamProtocol
from telemetry.backoff import Backoff

__all__ = ["DUP", "OVERSIZE", "RETAINED", "AckToken", "Message", "OnMessages", "Subscriber", "connect_packet"]

logger = logging.getLogger(__name__)

_HEALTHY_SECONDS: Final = 5.0
"""A subscribed session that lasted this long resets the reconnect backoff."""

_Proto = StreamProtocol[Session, Event]


class Subscriber(SessionTransport[Session, Event]):
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
        super().__init__(on_messages=on_messages, name="MQTT")
        self._on_event = on_event or (lambda _event: None)
        self._host, self._port, self._tls = host, port, tls
        self._client_id, self._topic_filter = client_id, topic_filter
        self._username, self._password = username, password
        self._keepalive, self._connect_timeout, self._hold_bytes = keepalive, connect_timeout, hold_bytes
        self.backoff = backoff or Backoff(initial=min(1.0, backoff_max), cap=backoff_max,
                                          healthy_after=_HEALTHY_SECONDS)
        self._connection = 0
        self._had_session = False
        self._undelivered: frozenset[int] = frozenset()

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
                await self.pause_unless_stopped(delay)
        finally:
            self._finished.set()

    async def _session(self) -> Closed:
        """One connection, from TCP connect to its end; returns how it ended, raises on errors."""
        self._connection += 1
        started = time.monotonic()
        transport, proto = await self.open(self._host, self._port, self._tls, self._connect_timeout, MqttError)
        session = proto.session = Session(
            client_id=self._client_id, topic_filter=self._topic_filter, connection=self._connection, now=started,
            keepalive=self._keepalive, connect_timeout=self._connect_timeout, username=self._username,
            password=self._password, expect_session=self._had_session, paused=self._paused,
            hold_bytes=self._hold_bytes, undelivered=self._undelivered)
        try:
            closed = await self.watch(proto, session)
            assert isinstance(closed, Closed)  # noqa: S101 - the only event that ends a session
            self._undelivered = frozenset(session.dropped_ids) if closed.redeliver else frozenset()
        finally:
            if self.connected.is_set():
                self.connected.clear()
                self.on_state(False)
                self.backoff.succeeded(time.monotonic() - started)
            await self.close(transport, proto)
        if closed.error is not None:
            raise closed.error
        return closed

    def event(self, proto: _Proto, event: Event) -> None:
        if isinstance(event, Closed):
            proto.closed = event
        self._event(event)

    def _event(self, event: Event) -> None:
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
