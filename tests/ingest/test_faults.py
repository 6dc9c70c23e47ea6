"""Nothing is lost when InfluxDB or ingest goes down, or the spool fills up."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.conftest import IngestFactory
from tests.mqtt import publish
from tests.payloads import now_ms, occupancy, t
from tests.rig import ROOT, Influxd, Mosquitto, wait_for

S = "PL-KT-001"


def readings(n: int, *, start_seq: int = 1) -> list[tuple[str, dict[str, Any]]]:
    base = now_ms() - n - 10_000
    return [(t(S, "occupancy"), occupancy(seq, seq % 20, ts=base + seq)) for seq in range(start_seq, start_seq + n)]


def seqs(influxd: Influxd, db: str) -> list[int]:
    return [r["seq"] for r in influxd.rows("SELECT seq FROM occupancy", db)]


def assert_exactly(influxd: Influxd, db: str, n: int) -> None:
    wait_for(lambda: influxd.count("occupancy", "people", db) >= n, timeout=60, what=f"{n} readings in InfluxDB")
    got = seqs(influxd, db)
    assert sorted(got) == list(range(1, n + 1)), f"{len(got)} points, {len(set(got))} distinct seq"


def test_faults_influxdb_down_while_5000_published_then_back(broker: Mosquitto, own_influxd: Influxd, db: str,
                                                             start_ingest: IngestFactory) -> None:
    ingest = start_ingest(influx=own_influxd)
    own_influxd.stop()
    publish(broker.port, readings(5000))
    wait_for(lambda: ingest.metric("ingest_messages_received_total") == 5000, what="ingest received all 5000")
    wait_for(lambda: ingest.metric("ingest_pending_points") == 0, what="every batch spooled")
    assert ingest.metric("ingest_spool_batches") >= 1
    assert ingest.metric("ingest_influx_up") == 0
    own_influxd.start()
    assert_exactly(own_influxd, db, 5000)
    wait_for(lambda: ingest.metric("ingest_spool_batches") == 0, what="the spool drained")
    assert ingest.metric("ingest_influx_up") == 1


def test_faults_ingest_sigkilled_while_readings_flow_then_restarted(broker: Mosquitto, influxd: Influxd, db: str,
                                                                    start_ingest: IngestFactory) -> None:
    ingest = start_ingest()
    feed = readings(6000)
    publisher = threading.Thread(target=lambda: [publish(broker.port, feed[i:i + 500]) for i in range(0, 6000, 500)])
    publisher.start()
    wait_for(lambda: ingest.metric("ingest_messages_received_total") >= 1500, what="readings flowing")
    ingest.kill()
    publisher.join()
    ingest.restart()
    assert_exactly(influxd, db, 6000)


def test_faults_spool_survives_sigkill(broker: Mosquitto, own_influxd: Influxd, db: str,
                                       start_ingest: IngestFactory) -> None:
    """Batches acknowledged into the spool are written after a crash and restart."""
    ingest = start_ingest(influx=own_influxd)
    own_influxd.stop()
    publish(broker.port, readings(1000))
    wait_for(lambda: ingest.metric("ingest_messages_received_total") == 1000 and
             ingest.metric("ingest_pending_points") == 0, what="everything spooled")
    ingest.kill()
    own_influxd.start()
    ingest.restart()
    assert_exactly(own_influxd, db, 1000)


def test_faults_ingest_down_readings_wait_in_the_broker_session(broker: Mosquitto, influxd: Influxd, db: str,
                                                                start_ingest: IngestFactory) -> None:
    ingest = start_ingest()
    assert ingest.stop() == 0
    publish(broker.port, readings(300))
    ingest.restart()
    assert_exactly(influxd, db, 300)


def test_faults_sigterm_flushes_and_exits_0(broker: Mosquitto, influxd: Influxd, db: str,
                                            start_ingest: IngestFactory) -> None:
    ingest = start_ingest(INGEST_BATCH_SECONDS="30", INGEST_BATCH_IDLE_SECONDS="30")  # written at the flush
    publish(broker.port, readings(200))
    wait_for(lambda: ingest.metric("ingest_pending_points") == 200, what="200 points pending")
    assert ingest.stop(signal.SIGTERM, timeout=10) == 0
    assert sorted(seqs(influxd, db)) == list(range(1, 201))
    assert "stopped" in ingest.log.read_text()


def test_faults_spool_full_holds_acks_then_drains(broker: Mosquitto, own_influxd: Influxd, db: str,
                                                  start_ingest: IngestFactory) -> None:
    ingest = start_ingest(influx=own_influxd, INGEST_SPOOL_MAX_MB="0.02", INGEST_BATCH_POINTS="100")
    own_influxd.stop()
    publish(broker.port, readings(2000))
    wait_for(lambda: ingest.metric("ingest_spool_full") == 1, what="the spool reported full")
    assert ingest.metric("ingest_spool_bytes") <= 0.02 * 1024 * 1024
    assert "not acknowledging messages" in ingest.log.read_text()
    own_influxd.start()
    assert_exactly(own_influxd, db, 2000)
    wait_for(lambda: ingest.metric("ingest_spool_full") == 0, what="spool_full back to 0")


def test_faults_write_rejected_points_are_narrowed_down(broker: Mosquitto, influxd: Influxd, db: str,
                                                        start_ingest: IngestFactory) -> None:
    """A field type conflict rejects only the conflicting points; the rest of the batch is written."""
    ingest = start_ingest(INGEST_BATCH_SECONDS="2")
    ts = now_ms() - 5000
    influxd.write(db, f'occupancy,station={S},district=kongtong,kind=smart people="many" {ts}')
    feed = readings(20)
    feed.insert(7, (t(S, "temperature"), {"ts": ts, "seq": 99, "sensor": "indoor", "celsius": 20.5}))
    publish(broker.port, feed)
    wait_for(lambda: ingest.metric('ingest_rejects_total{reason="write_rejected"}') == 20, what="20 write rejects")
    wait_for(lambda: influxd.count("ingest_rejects", "detail", db) == 20, what="20 reject points")
    row = influxd.rows("SELECT * FROM monitor.ingest_rejects LIMIT 1", db)[0]
    assert row["reason"] == "write_rejected"
    assert row["station"] == S
    assert "field type conflict" in row["detail"]
    assert influxd.count("temperature", "celsius", db) == 1


def run_ingest(**env: str) -> subprocess.CompletedProcess[str]:
    """``python -m ingest`` with only ``env`` (and PATH): for settings it must refuse at start."""
    return subprocess.run([sys.executable, "-m", "ingest"], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", **env}, check=False)


def test_faults_bad_setting_names_the_variable() -> None:
    proc = run_ingest(INFLUX_URL="ftp://nowhere", MQTT_URL="mqtt://")
    assert proc.returncode == 2
    assert "INFLUX_URL: Value error, must be an http:// or https:// URL, got 'ftp://nowhere'" in proc.stderr
    assert "MQTT_URL: Value error, no host in 'mqtt://'" in proc.stderr


def test_faults_bad_registry_refuses_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "stations.yaml"
    bad.write_text("stations:\n  - {id: PL-KT-1, name: x, district: kongtong, kind: smart, capacity: 1,"
                   " location: {lat: 1, lon: 1}}\n")
    proc = run_ingest(STATIONS_FILE=str(bad))
    assert proc.returncode != 0
    assert "station #1 (PL-KT-1): id: Value error, malformed id" in proc.stderr


def test_faults_unreadable_tls_files_are_named_at_start() -> None:
    proc = run_ingest(MQTT_CA_FILE="/nonexistent/ca.pem", INFLUX_CA_FILE="/nonexistent/influx-ca.pem")
    assert proc.returncode == 2
    assert "MQTT_CA_FILE: Value error, cannot read /nonexistent/ca.pem" in proc.stderr
    assert "INFLUX_CA_FILE: Value error, cannot read /nonexistent/influx-ca.pem" in proc.stderr
    alone = run_ingest(MQTT_KEY_FILE=str(ROOT / "README.md"))
    assert alone.returncode == 2
    assert "MQTT_KEY_FILE is set without MQTT_CERT_FILE" in alone.stderr
