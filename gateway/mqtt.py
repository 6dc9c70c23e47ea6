"""The gateway's MQTT links (aiomqtt): live state in, configs and HTTP-ingress readings out.

The gateway carries little traffic, so aiomqtt's convenience wins here; ingest, which carries
it all, has its own receive path (docs/ingest.md). ``MQTT_URL`` lists one broker or the nodes of
one cluster; :class:`MqttCluster` holds one :class:`MqttLink` per node. Each reconnects as every
client here does (:class:`telemetry.backoff.Backoff`: 1 s doubling to 30 s, jitter, reset after
a session that stayed up 10 s).

What each link subscribes to (docs/gateway.md, "On a cluster", says why)::

    every link        the exact config topic of every reporting station: the node's retained
                      copies come back at subscribe (RabbitMQ sends none to a wildcard), so the
                      gateway knows what each node holds, and republishes the newest where older
    the reader        also stations/v1/+/+: the live state.
                      One link only: a message published on any node reaches every node's
                      subscribers, so a reader per node would decode everything n times. When
                      the reader's node dies, the first other link up becomes the reader.

A pushed config is published retained to every node that is up; a node that comes back gets every
newest config it does not hold once its read-back settled. While no link is up, publishing raises
:class:`DependencyUnavailableError` (HTTP 503).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Final

import aiomqtt
from pydantic import ValidationError

from gateway.configs import DesiredConfigs
from gateway.exceptions import DependencyUnavailableError
from telemetry.backoff import Backoff
from telemetry.contract import SUBSCRIPTION, AgentConfig, Kind, topic
from telemetry.settings import BrokerNode

logger = logging.getLogger(__name__)

HEALTHY_AFTER: Final = 10.0
"""A session up this long (seconds) resets the reconnect backoff."""
LIVE_TOPICS: Final = (SUBSCRIPTION,)
"""The reader's subscription: every station topic (the live state also counts what it refuses)."""
SUBSCRIBE_CHUNK: Final = 500
"""Topics per SUBSCRIBE packet."""


class MqttLink:
    """One broker node: publishes at QoS 1 and returns once the node acknowledged.

    Args:
        on_message: (topic, payload, retained) of every message received.
        on_up: awaited after each CONNACK, before messages are read (it subscribes).
        on_down: called when a session that came up ends.
    """

    def __init__(self, *, host: str, port: int, on_message: Callable[[str, bytes, bool], None],
                 on_up: Callable[[], Awaitable[None]], on_down: Callable[[], None], username: str | None = None,
                 password: str | None = None, tls: ssl.SSLContext | None = None, client_id: str = "",
                 backoff: Backoff | None = None) -> None:
        self.host, self.port = host, port
        self._on_message, self._on_up, self._on_down = on_message, on_up, on_down
        self._username, self._password, self._tls = username, password, tls
        self._client_id = client_id
        self.backoff = backoff or Backoff(initial=1.0, cap=30.0, jitter=0.5, healthy_after=HEALTHY_AFTER)
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Sessions one after another, with the backoff between them (cancel to stop)."""
        while True:
            up: float | None = None
            reason = "the session ended"
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self._client_id or None,
                                          username=self._username, password=self._password,
                                          tls_context=self._tls, keepalive=30) as client:
                    up = time.monotonic()
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                reason = str(exc)
            finally:
                self._client = None
                if self.connected.is_set():
                    self.connected.clear()
                    self._on_down()
            if up is not None:
                self.backoff.succeeded(time.monotonic() - up)
            wait = self.backoff.next()
            logger.warning("MQTT %s:%s: %s; retrying in %.1f s", self.host, self.port, reason, wait)
            await asyncio.sleep(wait)

    async def _session(self, client: aiomqtt.Client) -> None:
        self._client = client
        self.connected.set()
        logger.info("MQTT connected to %s:%s", self.host, self.port)
        await self._on_up()
        async for message in client.messages:
            payload = message.payload
            body = payload if isinstance(payload, bytes) else str(payload).encode()
            self._on_message(str(message.topic), body, bool(message.retain))

    async def subscribe(self, topics: Sequence[str]) -> None:
        """Subscribe at QoS 1, a chunk of topics per SUBSCRIBE."""
        client = self._client
        if client is None:
            return
        for i in range(0, len(topics), SUBSCRIBE_CHUNK):
            await client.subscribe([(t, 1) for t in topics[i:i + SUBSCRIBE_CHUNK]])

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        client = self._client
        if client is None:
            raise DependencyUnavailableError("mqtt", f"not connected to {self.host}:{self.port}")
        try:
            async with asyncio.timeout(10):
                await client.publish(topic, payload, qos=1, retain=retain)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise DependencyUnavailableError("mqtt", f"publish to {topic} on {self.host}:{self.port} not "
                                                     f"acknowledged: {exc}") from exc


Node = BrokerNode
"""One broker of ``MQTT_URL`` and how the gateway logs in there."""


class MqttCluster:
    """One link per node (see the module docstring); the live state from one reader link.

    Args:
        nodes: the brokers, in ``MQTT_URL`` order (the first link to come up becomes the reader).
        stations: the reporting stations, whose configs it follows.
        on_live: (topic, payload) of every message the reader gets (the live state).
        on_config: (station, newest config) whenever the newest config of a station changes.
        client_id: the MQTT client id (suffixed ``-<node>`` with several nodes: RabbitMQ keeps one
            connection per client id in the whole cluster); empty: random.
        settle: quiet seconds after a link's subscriptions before what the node misses is published.
    """

    def __init__(self, *, nodes: Sequence[Node], stations: Sequence[str], on_live: Callable[[str, bytes], None],
                 on_config: Callable[[str, AgentConfig], None], client_id: str = "", settle: float = 1.0,
                 backoff: Callable[[], Backoff] | None = None) -> None:
        if not nodes:
            raise ValueError("give at least one broker node")
        self.configs = DesiredConfigs()
        self._stations = frozenset(stations)
        self._config_topics = [topic(s, Kind.CONFIG) for s in stations]
        self._on_live, self._on_config, self._settle = on_live, on_config, settle
        self.links = [MqttLink(host=n.host, port=n.port, username=n.username, password=n.password, tls=n.tls,
                               client_id=f"{client_id}-{i}" if client_id and len(nodes) > 1 else client_id,
                               backoff=backoff() if backoff else None, on_message=partial(self._on_message, i),
                               on_up=partial(self._on_up, i), on_down=partial(self._on_down, i))
                      for i, n in enumerate(nodes)]
        self.reader: int | None = None
        self.connected = asyncio.Event()
        """Set while at least one node is linked."""
        self._last_config = [0.0] * len(nodes)
        self._settling: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Every link, until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                for i, link in enumerate(self.links):
                    tg.create_task(link.run(), name=f"mqtt node {i}")
        finally:
            for task in (*self._settling.values(), *self._tasks):
                task.cancel()

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish once, through the reader (else any link up): a message reaches every node's subscribers."""
        await self._any_link().publish(topic, payload)

    async def publish_config(self, station: str, config: AgentConfig) -> int:
        """Publish ``config`` retained to every node up; returns how many acknowledged (at least one)."""
        up = [i for i, link in enumerate(self.links) if link.connected.is_set()]
        results = await asyncio.gather(*(self._store(i, station, config) for i in up), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if len(failed) == len(results):
            raise failed[0] if failed else DependencyUnavailableError("mqtt", "not connected to any broker")
        for exc in failed:
            logger.warning("config %s for %s: %s (published there when it is back)", config.rev, station, exc)
        self.configs.pushed(station, config)
        self._on_config(station, self.configs.newest[station])
        return len(results) - len(failed)

    def _any_link(self) -> MqttLink:
        order = ([self.reader] if self.reader is not None else []) + list(range(len(self.links)))
        for i in order:
            if self.links[i].connected.is_set():
                return self.links[i]
        raise DependencyUnavailableError("mqtt", "not connected to the broker")

    async def _store(self, node: int, station: str, config: AgentConfig) -> None:
        await self.links[node].publish(topic(station, Kind.CONFIG), config.model_dump_json().encode(), retain=True)
        self.configs.stored(node, station, config)

    # --- what the links tell ------------------------------------------------------------------

    async def _on_up(self, node: int) -> None:
        self.connected.set()
        self.configs.reset(node)
        link = self.links[node]
        if self.reader is None:
            self.reader = node
            await self._read_live(node)
        self._last_config[node] = time.monotonic()
        await link.subscribe(self._config_topics)
        self._settling[node] = asyncio.create_task(self._catch_up(node), name=f"mqtt node {node} catch-up")

    def _on_down(self, node: int) -> None:
        self.configs.reset(node)
        settling = self._settling.pop(node, None)
        if settling is not None:
            settling.cancel()
        if not any(link.connected.is_set() for link in self.links):
            self.connected.clear()
        if self.reader == node:
            self.reader = None
            self._promote(node)

    def _promote(self, after: int) -> None:
        """The reader's node is gone: the next link up reads the live state (none up: the first to come)."""
        n = len(self.links)
        for k in range(1, n):
            j = (after + k) % n
            if self.links[j].connected.is_set():
                self.reader = j
                self._spawn(self._read_live(j), f"mqtt node {j} reader")
                return

    async def _read_live(self, node: int) -> None:
        link = self.links[node]
        await link.subscribe(LIVE_TOPICS)
        logger.info("MQTT node %d (%s:%s) is the live state's reader", node, link.host, link.port)

    def _on_message(self, node: int, message_topic: str, payload: bytes, retained: bool) -> None:
        if node == self.reader:
            self._on_live(message_topic, payload)
        if not message_topic.endswith("/config"):
            return
        self._last_config[node] = time.monotonic()
        station = message_topic.split("/")[2]
        if station not in self._stations or not payload.strip():
            return  # an empty retained config changes nothing (the agents ignore it too)
        try:
            config = AgentConfig.model_validate_json(payload)
        except ValidationError:
            logger.debug("node %d: an invalid config for %s ignored", node, station)
            return
        before = self.configs.newest.get(station)
        newest = self.configs.seen(node, station, config, retained=retained)
        if self.configs.newest[station] is not before:
            self._on_config(station, self.configs.newest[station])
        if newest is not None:
            self._spawn(self._store(node, station, newest), f"republish {station} to node {node}")

    async def _catch_up(self, node: int) -> None:
        """Once the node's retained configs stopped coming, publish there every newest one it lacks."""
        while (quiet := time.monotonic() - self._last_config[node]) < self._settle:  # noqa: ASYNC110 - a quiet period
            await asyncio.sleep(self._settle - quiet)
        behind = self.configs.behind(node)
        try:
            for station, config in behind:
                await self._store(node, station, config)
        except DependencyUnavailableError as exc:
            logger.warning("MQTT node %d: %s (again when it is back)", node, exc)
            return
        if behind:
            logger.info("MQTT node %d: published %d configs it did not hold", node, len(behind))

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        async def run() -> None:
            try:
                await coro
            except (DependencyUnavailableError, aiomqtt.MqttError) as exc:  # the link's end is handled by its run
                logger.warning("MQTT %s: %s", name, exc)
        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
