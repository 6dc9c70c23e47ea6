"""What the gateway's routes use, opened by the app's lifespan and closed with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway import queries
from gateway.config import Settings
from gateway.credentials import StationPasswords, TokenStore
from gateway.exceptions import DependencyUnavailableError, InfluxQueryError
from gateway.geo import GeoIndex
from gateway.influx import InfluxReader
from gateway.live import LiveState
from gateway.mqtt import MqttCluster
from telemetry.codec import Decoder
from telemetry.registry import Registry

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    requests: Counter = field(init=False)
    latency: Histogram = field(init=False)
    mqtt_connected: Gauge = field(init=False)
    live_messages: Gauge = field(init=False)
    mqtt_reader: Gauge = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("gateway_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram("gateway_request_seconds", "HTTP request duration", ["route"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.mqtt_connected = Gauge("gateway_mqtt_connected", "1 while connected to the broker", registry=r)
        self.live_messages = Gauge("gateway_live_messages", "MQTT messages applied to live state", registry=r)
        self.mqtt_reader = Gauge("gateway_mqtt_reader", "MQTT_URL index of the node the live state is read from "
                                 "(-1: none up)", registry=r)


@dataclass(slots=True)
class Services:
    registry: Registry
    live: LiveState
    influx: InfluxReader
    mqtt: MqttCluster
    tokens: TokenStore
    passwords: StationPasswords
    decoder: Decoder
    metrics: GatewayMetrics
    geo: GeoIndex
    summary: tuple[float, bytes] | None = None  # (when, JSON body) of /v1/summary, recomputed after a second
    summary_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open InfluxDB and MQTT, seed live state, run the subscription; close all on exit."""
    registry = settings.load_registry()
    decoder = Decoder(registry)  # one for the live state and the HTTP ingress: same verdicts, one route cache
    live = LiveState(registry, decoder)
    metrics = GatewayMetrics()
    link = MqttCluster(nodes=settings.mqtt_nodes(),
                       stations=[s.id for s in registry.reporting], client_id=settings.gateway_mqtt_client_id,
                       on_live=live.on_message, on_config=live.desire)
    metrics.mqtt_connected.set_function(lambda: 1 if link.connected.is_set() else 0)
    metrics.live_messages.set_function(lambda: live.messages)
    metrics.mqtt_reader.set_function(lambda: -1 if link.reader is None else link.reader)
    async with InfluxReader(url=settings.influx_url, database=settings.influx_db,
                            username=settings.influx_username, password=settings.influx_password,
                            token=settings.influx_token, ca_file=settings.influx_ca_file) as influx:
        try:
            logger.info("seeded live state of %d stations from InfluxDB", await queries.seed(live, influx))
        except (DependencyUnavailableError, InfluxQueryError) as exc:
            logger.warning("cannot seed live state from InfluxDB (%s): stations start unknown", exc)
        task = asyncio.create_task(link.run(), name="mqtt")
        try:
            yield Services(registry, live, influx, link, TokenStore(settings.gateway_tokens_file),
                           StationPasswords(settings.station_password_file), decoder, metrics,
                           GeoIndex(registry.reporting))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
