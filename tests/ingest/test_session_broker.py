"""Ingest's MQTT session against the real Mosquitto: long outages, a dead broker, a huge payload, retained wills."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry import registry
from telemetry.contract import MAX_PAYLOAD_BYTES
from tests.conftest import IngestFactory
from tests.mqtt import publish
from tests.payloads import now_ms, occupancy, t
from tests.rig import ROOT, SHIPPED_MOSQUITTO_CONF, Influxd, IngestProcess, Mosquitto, wait_for

S = "PL-KT-001"


def conf_value(text: str, key: str) -> int:
    match = re.search(rf"^{key}\s+(\d+)\s*$", text, re.MULTILINE)
    assert match, f"{key} is not set"
    return int(match.group(1))


def connections(broker: Mosquitto, client_id: str) -> int:
    """How many times ``client_id`` connected, from the broker's log."""
    return (broker.dir / "mosquitto.log").read_text().count(f" as {client_id} ")


def test_broker_limits_shipped_and_in_the_tests_and_the_demo(broker: Mosquitto) -> None:
    shipped = SHIPPED_MOSQUITTO_CONF.read_text()
    assert conf_value(shipped, "message_size_limit") == MAX_PAYLOAD_BYTES
    assert conf_value(shipped, "max_queued_bytes") == 400 * 1024 * 1024
    assert conf_value(broker.config(), "message_size_limit") == MAX_PAYLOAD_BYTES
    assert conf_value(broker.config(), "max_queued_bytes") == 400 * 1024 * 1024
    assert "deploy/mosquitto/mosquitto.conf" in (ROOT / "scripts" / "demo.sh").read_text()


def test_broker_drops_a_payload_over_the_contract_limit_before_ingest(broker: Mosquitto, influxd: Influxd, db: str,
                                                                      start_ingest: IngestFactory) -> None:
    ingest = start_ingest()
    publish(broker.port, [(t(S, "occupancy"), " " * (MAX_PAYLOAD_BYTES + 1)), (t(S, "occupancy"), occupancy(1, 2))])
    wait_for(lambda: influxd.count("occupancy", "people", db) == 1, what="the reading after the oversize payload")
    assert ingest.metric("ingest_messages_received_total") == 1


def test_session_retained_last_will_one_offline_point_across_two_ingest_restarts(
        broker: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    ingest = start_ingest()
    publish(broker.port, [(t(S, "status"), {"state": "offline"})], retain=True)  # a last will: no ts
    wait_for(lambda: influxd.count("station_status", "online", db) == 1, what="the offline point")
    for seq in (1, 2):
        assert ingest.stop() == 0
        ingest.restart()
        wait_for(lambda: ingest.metric("ingest_messages_redelivered_total") == 1,
                 what="the retained will again, at the new subscription")
        publish(broker.port, [(t(S, "occupancy"), occupancy(seq, 1, ts=now_ms() - 10 + seq))])  # after the repeat
        wait_for(lambda: influxd.count("occupancy", "people", db) == seq, what=f"reading {seq}")  # noqa: B023
    assert influxd.count("station_status", "online", db) == 1


def peak_rss_mb(proc: IngestProcess) -> float:
    assert proc.proc is not None
    status = Path(f"/proc/{proc.proc.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


@pytest.fixture
def broker_without_size_limit(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "unlimited", extra="message_size_limit 0").start()
    yield server
    server.stop()


def test_session_100_mb_payload_never_buffered_and_the_next_readings_arrive(
        broker_without_size_limit: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    """A broker that takes any size (not ours): ingest reads past 100 MB without holding it."""
    broker = broker_without_size_limit
    ingest = start_ingest(MQTT_URL=broker.url)
    publish(broker.port, [(t(S, "occupancy"), b"[" + b" " * (100 * 1024 * 1024) + b"]")], timeout=120)
    ts = now_ms() - 1000
    publish(broker.port, [(t(S, "occupancy"), occupancy(seq, 1, ts=ts + seq)) for seq in (1, 2)])
    wait_for(lambda: influxd.count("occupancy", "people", db) == 2, timeout=120, what="the readings after it")
    assert ingest.metric('ingest_rejects_total{reason="too_large"}') == 1
    [reject] = influxd.rows('SELECT * FROM "monitor"."ingest_rejects"', db)
    assert reject["detail"] == f"payload is {100 * 1024 * 1024 + 2} bytes, at most {MAX_PAYLOAD_BYTES}"
    assert peak_rss_mb(ingest) < 200


def test_session_broker_sigstopped_noticed_within_1_5_keepalive_then_reconnects(
        broker: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    keepalive = 2
    ingest = start_ingest(INGEST_MQTT_KEEPALIVE_SECONDS=str(keepalive))
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_for(lambda: not ingest.health()["mqtt_connected"], timeout=10, interval=0.02,
                 what="ingest to notice the stopped broker")
        noticed = time.monotonic() - stopped
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    assert noticed < 1.5 * keepalive
    assert "no packet from the broker" in ingest.log.read_text()
    wait_for(lambda: ingest.health()["mqtt_connected"], timeout=30, what="ingest connected again")
    publish(broker.port, [(t(S, "occupancy"), occupancy(1, 1))])
    wait_for(lambda: influxd.count("occupancy", "people", db) == 1, what="a reading after the reconnect")


READINGS, PER_MESSAGE = 1_000_000, 100


def backlog() -> list[tuple[str, str]]:
    """1,000,000 readings of 10 stations, 100 to a message (the contract's batch form), each its own ts."""
    stations = [s.id for s in registry.load().reporting[:10]]
    base = now_ms() - READINGS - 60_000
    messages = []
    for si, station in enumerate(stations):
        per = READINGS // len(stations)
        for start in range(0, per, PER_MESSAGE):
            items = ",".join(f'{{"ts":{base + i},"seq":{i},"people":{i % 20}}}' for i in range(start, start + PER_MESSAGE))
            messages.append((t(station, "occupancy"), f"[{items}]"))
        assert len(messages) == (si + 1) * per // PER_MESSAGE
    return messages


def test_session_1_000_000_readings_queued_influxd_sigstopped_20_s_every_reading_once_no_reconnect_loop(
        broker: Mosquitto, own_influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    ingest = start_ingest(influx=own_influxd)
    client_id = ingest.env["MQTT_CLIENT_ID"]
    assert ingest.stop() == 0  # the session stays with the broker and queues what follows
    sent = publish(broker.port, backlog(), timeout=120)
    assert own_influxd.proc is not None
    own_influxd.proc.send_signal(signal.SIGSTOP)
    try:
        ingest.restart()
        wait_for(lambda: ingest.metric("ingest_messages_received_total") > 0, what="the backlog flowing")
        time.sleep(20)  # the outage itself: InfluxDB stopped for 20 s while the backlog comes in
    finally:
        own_influxd.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: own_influxd.count("occupancy", "people", db) == READINGS, timeout=180, interval=1,
             what=f"{READINGS} readings in InfluxDB")
    wait_for(lambda: ingest.metric("ingest_pending_points") == 0 and ingest.metric("ingest_spool_batches") == 0,
             what="nothing pending or spooled")
    metrics = ingest.metrics()
    assert metrics["ingest_messages_received_total"] == sent  # every message once as new; redeliveries apart
    reconnects = connections(broker, client_id)
    log = ingest.log.read_text()
    overflows = log.count("dropped while paused")
    assert reconnects == 2 + overflows, f"{reconnects} connections, {overflows} overflow reconnects"
    assert overflows <= 3, "a reconnect loop"
    assert "; retrying in" not in log, "the MQTT session failed and backed off"
