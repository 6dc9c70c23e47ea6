"""Ingest's AMQP source against real RabbitMQ nodes: readings published over MQTT to the ``rabbitmq_mqtt``
plugin reach InfluxDB once: through one node, through three ingest replicas of which one is SIGKILLed, and
across the SIGKILL of the node ingest consumes from."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster
from tests.mqtt import publish
from tests.payloads import now_ms, occupancy, t
from tests.rig import Influxd, IngestProcess, wait_for

STATIONS = ["PL-KT-001", "PL-KT-002", "PL-HT-001", "PL-JC-001"]
AmqpIngest = Callable[..., IngestProcess]


@pytest.fixture
def start_amqp_ingest(tmp_path: Path, influxd: Influxd, db: str) -> Iterator[AmqpIngest]:
    """``python -m ingest`` with ``AMQP_URL``; killed after the test."""
    started: list[IngestProcess] = []

    def start(amqp_url: str, **env: str) -> IngestProcess:
        settings = {"AMQP_URL": amqp_url, "INFLUX_URL": influxd.url, "INFLUX_DB": db,
                    "MQTT_CLIENT_ID": f"ingest-{uuid.uuid4().hex[:8]}", **env}
        proc = IngestProcess(tmp_path / f"ingest{len(started)}", **settings)
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.kill()


def feed(n: int, base: int) -> list[tuple[str, bytes | dict[str, Any]]]:
    return [(t(STATIONS[i % len(STATIONS)], "occupancy"), occupancy(i, i % 7, ts=base + i)) for i in range(n)]


def publish_retrying(ports: list[int], messages: list[tuple[str, bytes | dict[str, Any]]], vhost: str) -> None:
    """Publish, sending again through the next node what a broken connection left unacknowledged (a device does)."""
    for attempt in range(5):
        try:
            publish(ports[attempt % len(ports)], messages, username=f"{vhost}:guest", password="guest")
        except (RuntimeError, AssertionError, OSError):
            if attempt == 4:
                raise
        else:
            return


def queue_counts(cluster: Cluster, vhost: str) -> tuple[int, int]:
    """(ready, unacknowledged) of the ingest queue."""
    line = cluster.ctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "messages_ready",
                       "messages_unacknowledged").strip()
    name, ready, unacked = line.split()
    assert name == "yizhan.ingest"
    return int(ready), int(unacked)


def test_amqp_readings_published_over_mqtt_are_stored_once(rabbit_cluster: Cluster, influxd: Influxd, db: str,
                                                           start_amqp_ingest: AmqpIngest) -> None:
    vhost = rabbit_cluster.new_vhost()
    node = rabbit_cluster.nodes[0]
    ingest = start_amqp_ingest(node.amqp_url(vhost=vhost))  # declares and binds the queue before anything is published
    assert ingest.health()["amqp_node"] == f"127.0.0.1:{node.amqp_port}"
    n = 3000
    messages = feed(n, now_ms() - n - 60_000)
    messages.insert(n // 2, (t("PL-KT-001", "occupancy"), b"x" * 100_000))  # over MAX_PAYLOAD_BYTES
    publish(node.mqtt_port, messages, username=f"{vhost}:guest", password="guest")
    wait_for(lambda: influxd.count("occupancy", "people", db) >= n, timeout=60, what=f"{n} readings")
    seqs = sorted(r["seq"] for r in influxd.rows("SELECT seq FROM occupancy", db))
    assert seqs == list(range(n))
    wait_for(lambda: ingest.metric('ingest_rejects_total{reason="too_large"}') == 1, what="the too_large reject")
    wait_for(lambda: queue_counts(rabbit_cluster, vhost) == (0, 0), what="every delivery acknowledged")
    metrics = ingest.metrics()
    assert metrics["ingest_amqp_deliveries_total"] == n + 1
    assert metrics["ingest_amqp_redeliveries_total"] == 0
    assert metrics["ingest_messages_received_total"] == n + 1
    assert metrics["ingest_amqp_connected"] == metrics["ingest_mqtt_connected"] == 1  # "connected to the broker"
    publish(node.mqtt_port, feed(50, now_ms() - 30_000), username=f"{vhost}:guest", password="guest")
    wait_for(lambda: ingest.metric("ingest_amqp_deliveries_total") == n + 51, what="the last 50 delivered")
    assert ingest.stop(timeout=30) == 0  # SIGTERM: what was received is written and acknowledged, then the close
    assert queue_counts(rabbit_cluster, vhost) == (0, 0)


def test_amqp_three_replicas_one_sigkilled_mid_stream_store_every_reading_once(
        rabbit_cluster: Cluster, influxd: Influxd, db: str, start_amqp_ingest: AmqpIngest) -> None:
    vhost = rabbit_cluster.new_vhost()
    urls = [node.amqp_url(vhost=vhost) for node in rabbit_cluster.nodes]
    replicas = [start_amqp_ingest(",".join(urls[i:] + urls[:i])) for i in (0, 2)]
    # the victim holds what it receives unwritten, so unacknowledged, until it is killed
    victim = start_amqp_ingest(",".join(urls[1:] + urls[:1]), INGEST_BATCH_SECONDS="60",
                               INGEST_BATCH_IDLE_SECONDS="60", INGEST_BATCH_POINTS="100000")
    assert {r.health()["amqp_node"] for r in [*replicas, victim]} == {f"127.0.0.1:{n.amqp_port}"
                                                                     for n in rabbit_cluster.nodes}
    n = 9000
    messages = feed(n, now_ms() - n - 60_000)
    nodes = rabbit_cluster.nodes

    def publish_all() -> None:  # each third through another node's MQTT listener, in chunks
        for k in range(0, n, 500):
            ports = [nodes[(k // 500 + i) % 3].mqtt_port for i in range(3)]
            publish_retrying(ports, messages[k:k + 500], vhost)

    publisher = threading.Thread(target=publish_all, name="mqtt-publisher")
    publisher.start()
    try:
        held = wait_for(lambda: (d := victim.metric("ingest_amqp_deliveries_total")) >= 500 and d, timeout=60,
                        what="the victim holding 500 deliveries")
        assert victim.metric("ingest_points_written_total") == 0
        victim.kill()
    finally:
        publisher.join()
    wait_for(lambda: influxd.count("occupancy", "people", db) >= n, timeout=120, what=f"{n} readings")
    for station in STATIONS:
        seqs = sorted(r["seq"] for r in influxd.rows(f"SELECT seq FROM occupancy WHERE station = '{station}'", db))
        assert seqs == list(range(STATIONS.index(station), n, len(STATIONS))), f"{station}: gaps or duplicates"
    wait_for(lambda: queue_counts(rabbit_cluster, vhost) == (0, 0), what="every delivery acknowledged")
    redelivered = sum(r.metric("ingest_amqp_redeliveries_total") for r in replicas)
    assert redelivered >= held, f"the victim held {held} unacknowledged, the survivors got {redelivered} again"
    assert sum(r.metric("ingest_messages_redelivered_total") for r in replicas) == redelivered
    assert sum(r.metric("ingest_messages_received_total") for r in replicas) + redelivered >= n


def test_amqp_ingest_fails_over_when_its_node_is_sigkilled(rabbit_cluster: Cluster, influxd: Influxd, db: str,
                                                          start_amqp_ingest: AmqpIngest) -> None:
    vhost = rabbit_cluster.new_vhost()
    nodes = rabbit_cluster.nodes
    ingest = start_amqp_ingest(",".join(node.amqp_url(vhost=vhost) for node in nodes))
    assert ingest.health()["amqp_node"] == f"127.0.0.1:{nodes[0].amqp_port}"
    base = now_ms() - 120_000
    messages = feed(2000, base)
    publish_retrying([nodes[1].mqtt_port], messages[:1000], vhost)
    wait_for(lambda: influxd.count("occupancy", "people", db) >= 1000, timeout=60, what="the first 1000 readings")
    rabbit_cluster.kill(0)
    try:
        wait_for(lambda: ingest.health()["amqp_node"] in {f"127.0.0.1:{n.amqp_port}" for n in nodes[1:]},
                 timeout=90, what="ingest consuming from another node")
        publish_retrying([nodes[1].mqtt_port, nodes[2].mqtt_port], messages[1000:], vhost)
        wait_for(lambda: influxd.count("occupancy", "people", db) >= 2000, timeout=120, what="all 2000 readings")
    finally:
        rabbit_cluster.start(0)
    seqs = sorted(r["seq"] for r in influxd.rows("SELECT seq FROM occupancy", db))
    assert seqs == list(range(2000))
    assert ingest.metric("ingest_amqp_reconnects_total") >= 1
