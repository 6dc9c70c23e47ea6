"""The AMQP receive path of ingest: the asyncio transport around :class:`ingest.amqp_session.Session`.

It keeps one consumer on the quorum queue (``INGEST_QUEUE``) of a RabbitMQ cluster and hands every
delivery to a callback, acknowledging only when the caller says the message is durable
(:meth:`AmqpConsumer.ack`, once per written batch: one ``basic.ack`` with ``multiple``). Several
ingest processes are competing consumers of the one queue; the prefetch bounds what each has in
flight.

Every decision about the protocol is the session's (``ingest/amqp_session.py``); this module moves
bytes and timers: it connects to one node of ``AMQP_URL`` after the other, feeds what it reads and
the clock into the session, writes what the session has to send, and acts on its events (the
part shared with the MQTT subscriber is ``ingest/transport.py``). After a
session that was consuming it goes to the next node at once (a node that died, a consumer the
broker cancelled); otherwise it waits the shared backoff (``telemetry/backoff.py``) first, reset
after a session that consumed for 5 s. It never stops reading the socket for backpressure, so
heartbeats and a close by the broker are always seen; the session holds deliveries back while
paused, and the prefetch bounds how many.

Acknowledgement tokens carry the connection they came from: when a connection ends, RabbitMQ
requeues what was not acknowledged on it, so tokens of an earlier connection are dropped.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Final

from ingest.amqp_session import Closed, Consuming, Event, Session
from ingest.amqp_url import AmqpUrl
from ingest.exceptions import AmqpError
from ingest.source import OnMessages
from ingest.transport import CLOSE_SECONDS, SessionTransport, StreamProtocol
from telemetry.backoff import Backoff

logger = logging.getLogger(__name__)

_HEALTHY_SECONDS: Final = 5.0
"""A session that consumed this long resets the reconnect backoff."""

_Proto = StreamProtocol[Session, Event]


class AmqpConsumer(SessionTransport[Session, Event]):
    """A consumer of a RabbitMQ quorum queue with acknowledgements under the caller's control.

    Args:
        urls: the cluster's nodes, tried in turn (``AMQP_URL``).
        queue: the quorum queue, declared and bound to ``amq.topic`` at every connect.
        consumer_tag: this replica's name (its connections and consumers are named after it).
        on_messages: called synchronously with the deliveries of every read, in order.
        on_event: called with every session event (:class:`ingest.amqp_session.Consuming`, ``Closed``).
        tls: the TLS context for ``amqps://`` nodes (None: the system's CAs).
        prefetch: deliveries the broker may have sent unacknowledged (the in-flight bound).
        heartbeat: seconds proposed; two without a frame from the broker end the connection.
        connect_timeout: for the TCP connection and the whole handshake up to ``consume-ok``.
        backoff: the delays between attempts (by default up to ``backoff_max``).
    """

    def __init__(self, *, urls: Sequence[AmqpUrl], queue: str, consumer_tag: str,
                 on_messages: OnMessages | None = None, on_event: Callable[[Event], None] | None = None,
                 tls: ssl.SSLContext | None = None, prefetch: int = 2000, heartbeat: int = 30,
                 connect_timeout: float = 10.0, backoff_max: float = 30.0, backoff: Backoff | None = None) -> None:
        if not urls:
            raise ValueError("no AMQP node to connect to")
        super().__init__(on_messages=on_messages or (lambda _messages: None), name="AMQP")
        self._on_event = on_event or (lambda _event: None)
        self._urls, self._queue, self._tag, self._tls = list(urls), queue, consumer_tag, tls
        self._prefetch, self._heartbeat, self._connect_timeout = prefetch, heartbeat, connect_timeout
        self.backoff = backoff or Backoff(initial=min(0.5, backoff_max), cap=backoff_max,
                                          healthy_after=_HEALTHY_SECONDS)
        self._index = 0
        self._connection = 0
        self.node = ""
        """``host:port`` of the node consumed from ("" while not consuming)."""
        self.consumer_cancels = 0
        self.reconnects = 0
        """Times consuming again after a connection that consumed ended."""
        self.protocol_errors: dict[str, int] = {}
        self._consumed = self._consuming = False
        self._session: Session | None = None
        self._base = [0, 0]  # deliveries and redeliveries of the connections that ended

    async def run(self) -> None:
        """Connect, consume; fail over to the next node, with backoff after a failed attempt."""
        try:
            while not self._stopping.is_set():
                try:
                    closed = await self._connect()
                except (OSError, AmqpError) as exc:
                    reason = str(exc) or type(exc).__name__
                else:
                    reason = closed.reason
                if self._stopping.is_set():
                    return
                node = self._urls[self._index].node
                self._index = (self._index + 1) % len(self._urls)
                first = self.backoff.failures == 0
                delay = self.backoff.next()
                if first and self._consuming:
                    delay = 0.0  # lost a good session (a node died, the consumer was cancelled): the next node now
                logger.warning("AMQP %s: %s; connecting to %s in %.1f s", node, reason,
                               self._urls[self._index].node, delay)
                if delay:
                    await self.pause_unless_stopped(delay)
        finally:
            self._finished.set()

    async def _connect(self) -> Closed:
        """One connection, from TCP connect to its end; returns how it ended, raises on errors."""
        url = self._urls[self._index]
        self._connection += 1
        self._consuming = False
        started = time.monotonic()
        tls = (self._tls or ssl.create_default_context()) if url.tls else None
        transport, proto = await self.open(url.host, url.port, tls, self._connect_timeout, AmqpError)
        session = proto.session = self._session = Session(
            connection=self._connection, now=started, username=url.username, password=url.password,
            vhost=url.vhost, queue=self._queue, prefetch=self._prefetch, heartbeat=self._heartbeat,
            handshake_timeout=self._connect_timeout, close_timeout=CLOSE_SECONDS,
            consumer_tag=f"{self._tag}#{self._connection}", paused=self._paused)
        try:
            closed = await self.watch(proto, session)
            assert isinstance(closed, Closed)  # noqa: S101 - the only event that ends a session
        finally:
            self._session = None
            self._base[0] += session.deliveries
            self._base[1] += session.redeliveries
            if self.connected.is_set():
                self.connected.clear()
                self.node = ""
                self.on_state(False)
                self.backoff.succeeded(time.monotonic() - started)
            await self.close(transport, proto)
        if closed.cancelled:
            self.consumer_cancels += 1
        if closed.error is not None:
            raise closed.error
        return closed

    def event(self, proto: _Proto, event: Event) -> None:
        match event:
            case Consuming(queue=queue, messages=messages, consumers=consumers, server=server):
                node = self._urls[self._index].node
                if self._consumed:
                    self.reconnects += 1
                self._consumed = self._consuming = True
                self.node = node
                logger.info("AMQP consuming %s on %s (%s; %d ready, %d other consumers)", queue, node, server,
                            messages, consumers)
                self.connected.set()
                self.on_state(True)
            case Closed(protocol_error=kind):
                proto.closed = event
                if kind is not None:
                    self.protocol_errors[kind] = self.protocol_errors.get(kind, 0) + 1
        self._on_event(event)

    @property
    def deliveries(self) -> int:
        """Deliveries received (redeliveries included) over every connection."""
        return self._base[0] + (self._session.deliveries if self._session else 0)

    @property
    def redeliveries(self) -> int:
        """Deliveries with ``redelivered`` set: another consumer or connection had them and did not acknowledge."""
        return self._base[1] + (self._session.redeliveries if self._session else 0)
