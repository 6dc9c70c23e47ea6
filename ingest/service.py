"""The ingest service as one coroutine: source (MQTT or AMQP), pipeline, rollup keeper, HTTP and summary, wired."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ingest import retention
from ingest.amqp_consumer import AmqpConsumer
from ingest.config import Settings
from ingest.exceptions import InfluxError
from ingest.influxql import InfluxQL
from ingest.journal import Journal
from ingest.keeper import Keeper
from ingest.metrics import Metrics, serve_http
from ingest.pipeline import Pipeline
from ingest.session import Closed, Connected, Event
from ingest.source import Source
from ingest.spool import Spool
from ingest.stats import Stats
from ingest.subscriber import Subscriber
from ingest.writer import make_writer
from telemetry.settings import parse_addr

logger = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 8.0
_TIERS_RETRY_SECONDS = 5.0


async def serve(settings: Settings, *, stop: asyncio.Event) -> None:
    """Run ingest until ``stop`` is set; then stop reading, flush, acknowledge and return."""
    registry = settings.load_registry()
    metrics = Metrics()
    spool = Spool(directory=settings.ingest_spool_dir, max_bytes=int(settings.ingest_spool_max_mb * 1024 * 1024))
    writer = make_writer(settings)
    ql = InfluxQL.from_settings(settings)
    keeper = Keeper(ql=ql, writer=writer, journal=Journal(path=settings.journal_file),
                    grace=settings.ingest_rollup_grace_seconds, tick=settings.ingest_rollup_tick_seconds,
                    settle=settings.ingest_rollup_settle_seconds)
    stats = Stats(instance=settings.mqtt_client_id, metrics=metrics)
    pipeline = Pipeline(registry=registry, writer=writer, spool=spool, metrics=metrics, stats=stats,
                        batch_points=settings.ingest_batch_points, batch_seconds=settings.ingest_batch_seconds,
                        batch_idle=settings.ingest_batch_idle_seconds,
                        write_concurrency=settings.ingest_write_concurrency,
                        max_pending=settings.ingest_write_concurrency + 2, keeper=keeper)
    subscriber, source_health = _source(settings, pipeline, metrics)
    pipeline.attach(subscriber)
    metrics.pending_points.set_function(lambda: pipeline.pending_points)
    if await writer.ready():
        metrics.influx_up.set(1)
        await _ensure_tiers(ql, settings)  # before the first write to the monitor tier
    else:
        logger.warning("InfluxDB at %s does not answer yet: batches will be spooled", settings.influx_url)
    host, port = parse_addr(settings.ingest_http_addr)

    def health() -> dict[str, object]:
        return {"status": "ok", **source_health(),
                "influx_up": bool(metrics.gauge(metrics.influx_up)), "spool_batches": len(spool),
                "pending_points": pipeline.pending_points, "rollups_pending": keeper.pending,
                "rollups_recomputed": keeper.recomputed}

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(subscriber.run(), name="amqp-receive" if settings.amqp_url else "mqtt-receive"),
                tg.create_task(pipeline.run(), name="influx-write"),
                tg.create_task(serve_http(host, port, metrics, health), name="http"),
                tg.create_task(_summaries(metrics, pipeline, settings.ingest_summary_seconds), name="summary"),
                tg.create_task(_stats(stats, pipeline, settings), name="stats"),
                tg.create_task(keeper.run(), name="rollup-keeper"),
                tg.create_task(_tiers(ql, settings), name="retention-tiers"),
            ]
            await stop.wait()
            logger.info("stopping: no more reads, flushing %d pending points", pipeline.pending_points)
            subscriber.pause()
            for task in tasks[1:]:
                task.cancel()
            try:
                async with asyncio.timeout(SHUTDOWN_SECONDS):
                    await pipeline.flush()
            except TimeoutError:
                logger.warning("flush did not finish in %.0f s: the broker will redeliver what is left",
                               SHUTDOWN_SECONDS)
            await subscriber.stop()
    finally:
        await writer.aclose()
        await ql.aclose()
    _log_summary(metrics, pipeline)
    logger.info("stopped")


def _source(settings: Settings, pipeline: Pipeline, metrics: Metrics) -> tuple[Source, Callable[[], dict[str, object]]]:
    """The MQTT subscriber, or with ``AMQP_URL`` the AMQP consumer; and what ``/healthz`` says of it.

    ``mqtt_connected`` (in ``/healthz``, the ``ingest_mqtt_connected`` gauge and ``ingest_stats``) means
    "connected to the broker" for both, so that probes, the pipeline dashboard and the ingest-away
    alert work unchanged on the AMQP source.
    """
    if settings.amqp_url:
        consumer = AmqpConsumer(urls=settings.amqp_urls, queue=settings.ingest_queue,
                                consumer_tag=settings.mqtt_client_id, on_messages=pipeline.on_messages,
                                tls=settings.amqp_tls_context(), prefetch=settings.ingest_amqp_prefetch,
                                heartbeat=settings.ingest_amqp_heartbeat_seconds)
        def amqp_state(up: bool) -> None:
            metrics.amqp_connected.set(1 if up else 0)
            metrics.mqtt_connected.set(1 if up else 0)

        consumer.on_state = amqp_state
        metrics.watch_amqp(consumer)

        def amqp_health() -> dict[str, object]:
            up = consumer.connected.is_set()
            return {"source": "amqp", "connected": up, "mqtt_connected": up, "amqp_node": consumer.node,
                    "amqp_deliveries": consumer.deliveries, "amqp_redeliveries": consumer.redeliveries,
                    "amqp_consumer_cancels": consumer.consumer_cancels, "amqp_reconnects": consumer.reconnects}

        return consumer, amqp_health
    mqtt = settings.mqtt
    subscriber = Subscriber(host=mqtt.host, port=mqtt.port, client_id=settings.mqtt_client_id,
                            topic_filter=settings.topic_filter, on_messages=pipeline.on_messages,
                            on_event=lambda event: _count_event(metrics, event), username=mqtt.username,
                            password=mqtt.password, tls=settings.mqtt_tls_context(),
                            keepalive=settings.ingest_mqtt_keepalive_seconds,
                            hold_bytes=int(settings.ingest_mqtt_hold_mb * 1024 * 1024))
    subscriber.on_state = lambda up: metrics.mqtt_connected.set(1 if up else 0)

    return subscriber, lambda: {"mqtt_connected": subscriber.connected.is_set()}


def _count_event(metrics: Metrics, event: Event) -> None:
    """Session events that the metrics and ``ingest_stats`` count."""
    counts = metrics.counts
    match event:
        case Connected(session_lost=True):
            counts.sessions_lost += 1
        case Closed(protocol_error=kind) if kind is not None:
            counts.protocol_errors[kind] = counts.protocol_errors.get(kind, 0) + 1


async def _tiers(ql: InfluxQL, settings: Settings) -> None:
    """Create or alter the retention policies (1.x), retrying until InfluxDB answers; writes to a tier
    not there yet fail as InfluxDB being unavailable, so they wait in the spool meanwhile."""
    while True:
        if await _ensure_tiers(ql, settings):
            return
        await asyncio.sleep(_TIERS_RETRY_SECONDS)


async def _ensure_tiers(ql: InfluxQL, settings: Settings) -> bool:
    if settings.influx_v2:
        return True  # buckets and DBRP mappings are made by the deployment (deploy/influxdb/init-dbrp.sh)
    try:
        async with asyncio.timeout(_TIERS_RETRY_SECONDS * 2):
            await retention.ensure(ql, database=settings.influx_db, days=settings.retention_days)
    except (InfluxError, TimeoutError) as exc:
        logger.info("retention policies not checked yet (%r): retrying", exc)
        return False
    return True


async def _stats(stats: Stats, pipeline: Pipeline, settings: Settings) -> None:
    """Write ``ingest_stats`` every INGEST_STATS_SECONDS, ``ingest_station_lag`` every INGEST_STATION_STATS_SECONDS."""
    every, station_every = settings.ingest_stats_seconds, settings.ingest_station_stats_seconds
    next_station = time.monotonic() + station_every
    while True:
        await asyncio.sleep(every)
        now_ms = int(time.time() * 1000)
        lines = [stats.interval_point(now_ms, pipeline.pending_points)]
        if time.monotonic() >= next_station:
            lines += stats.station_points(now_ms)
            next_station += station_every
        pipeline.add_points(lines)


async def _summaries(metrics: Metrics, pipeline: Pipeline, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        _log_summary(metrics, pipeline)


def _log_summary(metrics: Metrics, pipeline: Pipeline) -> None:
    with contextlib.suppress(Exception):
        c = metrics.counts
        rejects = {str(k): v for k, v in c.rejects.items() if v}
        logger.info("summary: received %d messages, written %d points, rejected %s, spooled %d batches "
                    "(%d waiting, %d bytes), pending %d points", c.messages, c.points_written, rejects or "none",
                    c.spooled_batches, metrics.gauge(metrics.spool_batches), metrics.gauge(metrics.spool_bytes),
                    pipeline.pending_points)
