"""The MQTT connection: one paho session at a time, driven on the event loop's selector.

paho-mqtt 2.x runs without a thread of its own: its socket is registered with the loop
(``loop_read``/``loop_write`` from reader and writer callbacks, ``loop_misc`` for the pings from
the keepalive task), so one process runs thousands of agents. Each session::

    open      a new paho client through the transport (TCP, TLS, CONNECT); what was in flight
              is in the buffer, never in a client's memory
    CONNACK   within connect_timeout, else the session failed; a refusal failed too
    up        subscribed to the config topic; the owner's on_connect publishes and replays
    lost      the socket closed, or paho's keepalive found the broker silent

then moves to the next broker of its list (one broker: the same one again; see
``failover.py``) and waits before the next session: capped exponential backoff with jitter
(:class:`telemetry.backoff.Backoff`), reset after a session that stayed up ``healthy_after``
seconds, so a broker that accepts and drops at once keeps the wait growing. Nothing in flight is
carried from one session to the next: the new client starts with an empty window, and what the
old one had sent without its PUBACK is still in the buffer, so the replay sends it on the new
broker.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_stubs.clock import Clock
from firmware_stubs.exceptions import ConnectError
from firmware_stubs.failover import Failover
from firmware_stubs.transport import Transport, close_socket
from telemetry.backoff import Backoff
from telemetry.settings import BrokerNode

logger = logging.getLogger(__name__)

SUBSCRIBE_QOS: Final = 0
"""The config subscription's QoS. RabbitMQ 3.10 backs a QoS 1 subscription with a durable classic queue
(``mqtt-subscription-<client id>qos1``) on the node of the first connection: while that node is down, no
other node accepts the same client id (the queue's declare fails), so the agent could not fail over. A
QoS 0 subscription's queue is transient and goes with its node. Nothing is lost: the config is retained
(sent again on every connect) and its generation makes a copy seen twice harmless."""


Address = BrokerNode
"""A broker (one node of a cluster) and the credentials the station logs in with there."""


@dataclass(slots=True, frozen=True)
class Endpoint:
    """The broker and who the station is to it."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    keepalive: int = 60

    @classmethod
    def of(cls, broker: Address, client_id: str, keepalive: int) -> Endpoint:
        return cls(broker.host, broker.port, client_id, broker.username, broker.password, broker.tls, keepalive)


@dataclass(slots=True, frozen=True)
class Events:
    """What the connection tells its owner, on the event loop."""

    on_connect: Callable[[], None]
    """CONNACK accepted and subscribed: publish what waits."""
    on_puback: Callable[[int], None]
    on_message: Callable[[str, bytes], None]
    on_read: Callable[[], None]
    """After each batch of input (acknowledgements are best flushed together)."""
    on_drop: Callable[[], None]
    """The session is gone: nothing is in flight any more."""


class Connection:
    """One station's MQTT connection, reconnecting until :meth:`closing`.

    Args:
        endpoints: where and as whom: one or more brokers, tried in turn (see ``failover.py``).
        will: the last will (topic, payload), retained at QoS 1.
        subscribe: the topic to subscribe to on every connect, at QoS 0 (see :data:`SUBSCRIBE_QOS`).
        max_inflight: paho's bound on unacknowledged messages.
        transport: opens each session's socket.
        backoff: the waits between sessions (over the whole list).
        clock: the agent's time (the backoff waits on it; sessions are timed on it).
        connect_timeout: real seconds to wait for CONNACK.
        events: the owner's callbacks.
        name: the station, for logs.
    """

    __slots__ = ("_client", "_clock", "_closing", "_connack", "_connect_timeout", "_connected", "_events",
                 "_failover", "_loop", "_lost", "_max_inflight", "_name", "_subscribe", "_transport", "_will",
                 "connects")

    def __init__(self, *, endpoints: Sequence[Endpoint], will: tuple[str, bytes], subscribe: str,
                 max_inflight: int, transport: Transport, backoff: Backoff, clock: Clock, connect_timeout: float,
                 events: Events, name: str) -> None:
        self._failover = Failover(endpoints, backoff)
        self._will, self._subscribe, self._max_inflight = will, subscribe, max_inflight
        self._transport, self._clock = transport, clock
        self._connect_timeout, self._events, self._name = connect_timeout, events, name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._connected = False
        self._connack: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None
        self._closing = False
        self.connects = 0
        """Sessions that got their CONNACK."""

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def endpoint(self) -> Endpoint:
        """The broker of the open session (or of the next one)."""
        return self._failover.current

    def closing(self) -> None:
        """Make no new session after this one."""
        self._closing = True

    def publish(self, topic: str, payload: str, *, retain: bool = False) -> int | None:
        """Publish at QoS 1; returns the message id, None when not connected or paho refused."""
        client = self._client
        if client is None or not self._connected:
            return None
        info = client.publish(topic, payload, qos=1, retain=retain)
        return info.mid if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS else None

    async def disconnect(self, within: float) -> None:
        """Send DISCONNECT (no will) and wait up to ``within`` seconds for the socket to close."""
        client, lost = self._client, self._lost
        if client is None:
            return
        client.disconnect()
        if lost is not None:
            await asyncio.wait([lost], timeout=within)

    async def run(self) -> None:
        """Sessions one after another, through the brokers with the backoff between them, until :meth:`closing`."""
        failures = 0
        while not self._closing:
            e = self.endpoint
            try:
                up = await self._session(e)
                failures = 0
                wait = self._failover.lost(up)
            except ConnectError as exc:
                failures += 1
                log = logger.info if failures == 1 else logger.debug
                log("%s: MQTT %s:%s: %s; retrying with backoff", self._name, e.host, e.port, exc)
                wait = self._failover.failed()
            if self._closing:
                return
            await self._clock.sleep_until(self._clock.time() + wait)

    async def keepalive(self) -> None:
        """paho's pings and its check that the broker still answers."""
        while True:
            await asyncio.sleep(max(1.0, self.endpoint.keepalive / 6))
            if self._client is not None:
                self._client.loop_misc()

    async def _session(self, e: Endpoint) -> float:
        """One session on ``e``; returns how long it was up (on the agent's clock)."""
        client = self._new_client(e)
        await self._transport.open(client, e.host, e.port, e.keepalive)
        if self._closing:
            close_socket(client)
            raise ConnectError("closing")
        loop = self._loop = asyncio.get_running_loop()
        self._connack, self._lost = loop.create_future(), loop.create_future()
        self._client = client
        try:
            self._watch(client, loop)
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await self._connack
            except TimeoutError as exc:
                raise ConnectError(f"no CONNACK within {self._connect_timeout} s") from exc
            self.connects += 1
            up = self._clock.time()
            await self._lost
            if not self._closing:
                logger.info("%s: connection lost", self._name)
            return self._clock.time() - up
        finally:
            self.drop()

    def _new_client(self, e: Endpoint) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=e.client_id, clean_session=True,
                             protocol=MQTTProtocolVersion.MQTTv311)
        client.max_inflight_messages_set(self._max_inflight)
        client.max_queued_messages_set(0)
        if e.username is not None:
            client.username_pw_set(e.username, e.password)
        if e.tls is not None:
            client.tls_set_context(e.tls)
        client.will_set(self._will[0], self._will[1], qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _watch(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        sock = client.socket()
        if sock is None:
            raise ConnectError("connection closed")
        loop.add_reader(sock, self._on_readable, client)
        if client.want_write():
            loop.add_writer(sock, self._on_writable, client)

    def drop(self) -> None:
        """Close the session's socket at once, without DISCONNECT (the broker publishes the will)."""
        client, self._client = self._client, None
        self._connected = False
        if client is not None:
            client.on_socket_close = client.on_socket_register_write = client.on_socket_unregister_write = None
            sock = client.socket()
            if sock is not None and sock.fileno() >= 0 and self._loop is not None:
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
            close_socket(client)
        self._events.on_drop()
        for fut in (self._connack, self._lost):
            if fut is not None and fut.done() and not fut.cancelled():
                fut.exception()
            elif fut is not None:
                fut.cancel()
        self._connack = self._lost = None

    # --- paho callbacks (on the event loop) --------------------------------------------------

    def _on_readable(self, client: mqtt.Client) -> None:
        if client is not self._client:
            return
        client.loop_read()
        sock = client.socket()
        while isinstance(sock, ssl.SSLSocket) and sock.pending() and client is self._client:
            client.loop_read()  # decrypted bytes wait inside the TLS object, not on the socket
            sock = client.socket()
        self._events.on_read()

    def _on_writable(self, client: mqtt.Client) -> None:
        if client is self._client:
            client.loop_write()

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self._loop is not None and sock.fileno() >= 0:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _on_socket_register_write(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            self._loop.add_writer(sock, self._on_writable, client)

    def _on_socket_unregister_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            self._loop.remove_writer(sock)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: mqtt.ConnectFlags, reason: ReasonCode,
                    _properties: Properties | None) -> None:
        if client is not self._client or self._connack is None or self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(ConnectError(f"the broker refused the connection: {reason}"))
            return
        self._connected = True
        client.subscribe(self._subscribe, qos=SUBSCRIBE_QOS)
        self._events.on_connect()
        self._connack.set_result(None)

    def _on_disconnect(self, client: mqtt.Client, _userdata: Any, _flags: mqtt.DisconnectFlags,
                       _reason: ReasonCode, _properties: Properties | None) -> None:
        if client is not self._client:
            return
        self._connected = False
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectError("the connection closed before CONNACK"))
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _on_publish(self, client: mqtt.Client, _userdata: Any, mid: int, _reason: ReasonCode,
                    _properties: Properties | None) -> None:
        if client is self._client:
            self._events.on_puback(mid)

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if client is self._client:
            self._events.on_message(message.topic, bytes(message.payload))
