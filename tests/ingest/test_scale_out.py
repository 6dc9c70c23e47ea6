"""Several ingest processes split one stream through an MQTT shared subscription."""

from __future__ import annotations

import threading

from tests.conftest import IngestFactory
from tests.mqtt import publish
from tests.payloads import now_ms, occupancy, t
from tests.rig import Influxd, Mosquitto, wait_for


def test_scale_out_three_processes_each_reading_once_one_killed_mid_stream(
        broker: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    ingests = [start_ingest(MQTT_CLIENT_ID=f"ingest-{i}", INGEST_SHARE_GROUP="city") for i in range(3)]
    stations = ["PL-KT-001", "PL-KT-002", "PL-HT-001", "PL-JC-001"]
    n = 6000
    base = now_ms() - n - 60_000
    feed = [(t(stations[i % 4], "occupancy"), occupancy(i, i % 7, ts=base + i)) for i in range(n)]
    publisher = threading.Thread(target=lambda: [publish(broker.port, feed[i:i + 500]) for i in range(0, n, 500)])
    publisher.start()
    wait_for(lambda: sum(p.metric("ingest_messages_received_total") for p in ingests) >= 1500, what="flowing")
    ingests[1].kill()
    publisher.join()
    survivors = [ingests[0], ingests[2]]
    before = [p.metric("ingest_messages_received_total") for p in survivors]
    publish(broker.port, [(t("PL-KT-001", "occupancy"), occupancy(n + i, 1, ts=base + n + i)) for i in range(100)])
    wait_for(lambda: all(p.metric("ingest_messages_received_total") > b for p, b in zip(survivors, before,
                                                                                     strict=True)),
             what="both survivors still receiving")
    ingests[1].restart()  # same client id: its session's unacknowledged and queued messages come back
    wait_for(lambda: influxd.count("occupancy", "people", db) >= n + 100, timeout=60, what=f"{n + 100} readings")
    seqs = sorted(r["seq"] for r in influxd.rows("SELECT seq FROM occupancy", db))
    assert seqs == list(range(n + 100))
    received = [p.metric("ingest_messages_received_total") for p in ingests]
    assert all(r > 0 for r in received), received
