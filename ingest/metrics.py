"""Prometheus metrics of one ingest process, and the small HTTP server for /healthz and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from telemetry.contract import RejectReason

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Counts:
    """Counters as plain integers: the hot path adds to them, the collector reads them at scrape time."""

    messages: int = 0
    points_written: int = 0
    spooled_batches: int = 0
    redelivered: int = 0
    """DUP redeliveries and retained repeats: not in ``messages``."""
    sessions_lost: int = 0
    protocol_errors: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RejectReason, 0))


class _CountsCollector(Collector):
    def __init__(self, counts: Counts) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        c = self._counts
        yield CounterMetricFamily("ingest_messages_received", "MQTT messages received", value=c.messages)
        yield CounterMetricFamily("ingest_points_written", "Points written to InfluxDB (readings, status, rejects)",
                                  value=c.points_written)
        yield CounterMetricFamily("ingest_spooled_batches", "Batches written to the disk spool",
                                  value=c.spooled_batches)
        yield CounterMetricFamily("ingest_messages_redelivered", "MQTT messages received again (DUP redeliveries, "
                                  "retained repeats): not in ingest_messages_received", value=c.redelivered)
        yield CounterMetricFamily("ingest_sessions_lost", "Reconnections on which the broker had lost ingest's session",
                                  value=c.sessions_lost)
        errors = CounterMetricFamily("ingest_mqtt_protocol_errors", "Connections closed for what the broker sent, "
                                     "by kind", labels=["kind"])
        for kind, count in c.protocol_errors.items():
            errors.add_metric([kind], count)
        yield errors
        rejects = CounterMetricFamily("ingest_rejects", "Readings or messages rejected, by reason", labels=["reason"])
        for reason, count in c.rejects.items():
            rejects.add_metric([str(reason)], count)
        yield rejects


class AmqpStatus(Protocol):
    """What the AMQP source tells the metrics (:class:`ingest.amqp_consumer.AmqpConsumer`)."""

    @property
    def deliveries(self) -> int: ...
    @property
    def redeliveries(self) -> int: ...
    @property
    def consumer_cancels(self) -> int: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def node(self) -> str: ...
    @property
    def protocol_errors(self) -> Mapping[str, int]: ...


class _AmqpCollector(Collector):
    def __init__(self, status: AmqpStatus) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        s = self._status
        for name, text, value in (
                ("ingest_amqp_deliveries", "AMQP deliveries received, redeliveries included", s.deliveries),
                ("ingest_amqp_redeliveries", "AMQP deliveries with redelivered set (unacknowledged elsewhere before)",
                 s.redeliveries),
                ("ingest_amqp_consumer_cancels", "Consumers cancelled by the broker (basic.cancel)",
                 s.consumer_cancels),
                ("ingest_amqp_reconnects", "Consuming again after a connection that consumed ended", s.reconnects)):
            yield CounterMetricFamily(name, text, value=value)
        errors = CounterMetricFamily("ingest_amqp_protocol_errors", "Connections closed for what the broker sent, "
                                     "by kind", labels=["kind"])
        for kind, count in s.protocol_errors.items():
            errors.add_metric([kind], count)
        yield errors
        node = GaugeMetricFamily("ingest_amqp_node", "1 for the node consumed from", labels=["node"])
        if s.node:
            node.add_metric([s.node], 1)
        yield node


class Metrics:
    """One registry per instance, so tests can run several services in one process."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(_CountsCollector(self.counts))
        self.spool_bytes = Gauge("ingest_spool_bytes", "Bytes waiting in the disk spool", registry=r)
        self.spool_batches = Gauge("ingest_spool_batches", "Batches waiting in the disk spool", registry=r)
        self.spool_full = Gauge("ingest_spool_full", "1 while the spool is full and acks are held", registry=r)
        self.write_seconds = Histogram("ingest_write_seconds", "Duration of one InfluxDB write", registry=r,
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.mqtt_connected = Gauge("ingest_mqtt_connected", "1 while connected to the broker", registry=r)
        self.amqp_connected = Gauge("ingest_amqp_connected", "1 while consuming from the AMQP queue", registry=r)
        self.influx_up = Gauge("ingest_influx_up", "1 while the last InfluxDB write succeeded", registry=r)
        self.pending_points = Gauge("ingest_pending_points", "Points received, not yet written or spooled",
                                    registry=r)

    def watch_amqp(self, status: AmqpStatus) -> None:
        """Export the AMQP source's counters and node (only when that is the source)."""
        self.registry.register(_AmqpCollector(status))

    def gauge(self, gauge: Gauge) -> float:
        return float(gauge._value.get())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def serve_http(host: str, port: int, metrics: Metrics, health: Callable[[], dict[str, object]],
                     started: asyncio.Event | None = None) -> None:
    """Serve ``GET /healthz`` (JSON, always 200 while the process runs) and ``GET /metrics``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = request.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method != "GET":
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"method not allowed\n"
            elif path == "/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, metrics.exposition()
            elif path == "/healthz":
                status, ctype, body = "200 OK", "application/json", json.dumps(health()).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    logger.info("serving /healthz and /metrics on http://%s:%s", host, port)
    if started:
        started.set()
    async with server:
        await server.serve_forever()
