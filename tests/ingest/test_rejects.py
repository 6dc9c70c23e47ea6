"""Every reject reason reaches ``ingest_rejects`` and ``/metrics`` exactly; nothing stops ingest."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import IngestFactory
from tests.mqtt import publish
from tests.payloads import charger, now_ms, occupancy, t, temperature
from tests.rig import Influxd, Mosquitto, wait_for

S = "PL-KT-001"
BASIC = "PL-KT-042"  # a basic station: in the registry, no telemetry

CASES: list[tuple[str, str, bytes | str, str, str]] = [
    # reason, topic, payload, station field, detail
    ("bad_topic", "stations/v1//occupancy", "{}", "", "expected stations/v1/<station id>/<kind>"),
    ("unknown_station", t("PL-KT-999", "occupancy"), "{}", "PL-KT-999",
     "station 'PL-KT-999' is not in the registry"),
    ("unknown_station", t(BASIC, "occupancy"), "{}", BASIC, f"station {BASIC} is basic: it has no telemetry"),
    ("unknown_kind", f"stations/v1/{S}/humidity", "{}", S,
     "unknown kind 'humidity': expected one of occupancy, charger, temperature, status, config"),
    ("bad_json", t(S, "occupancy"), "{not json", S, "Expecting property name enclosed in double quotes at line 1 column 2"),
    ("bad_json", t(S, "occupancy"), b"\xff\xfe{}", S, "not UTF-8: invalid start byte at byte 0"),
    ("schema", t(S, "occupancy"), json.dumps({"ts": 1, "seq": 1, "people": 1001}), S,
     "people: Input should be less than or equal to 1000"),
    ("schema", t(S, "occupancy"), json.dumps({"ts": 1, "seq": 1, "people": 1, "colour": "red"}), S,
     "colour: Extra inputs are not permitted"),
    ("schema", t(S, "charger"), json.dumps(charger(1, "C9")), S, "charger_id: 'C9' is not a charger of PL-KT-001"),
    ("schema", t(S, "charger"), json.dumps(charger(1, "C1", 11)), S, "sockets_in_use: 11 > the 10 sockets of C1"),
    ("schema", t(S, "temperature"), json.dumps(temperature(1, "attic")), S,
     "sensor: 'attic' is not a sensor of PL-KT-001"),
    ("schema", t(S, "status"), json.dumps({"state": "asleep"}), S, "state: Input should be 'online' or 'offline'"),
    ("too_large", t(S, "occupancy"), " " * 70_000, S, "payload is 70000 bytes, at most 65536"),
]


@pytest.mark.parametrize(("reason", "topic", "payload", "station", "detail"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_reject_point_and_metric_for_each_reason(broker: Mosquitto, influxd: Influxd, db: str,
                                                 start_ingest: IngestFactory, reason: str, topic: str,
                                                 payload: bytes | str, station: str, detail: str) -> None:
    ingest = start_ingest()
    publish(broker.port, [(topic, payload), (t(S, "occupancy"), occupancy(1, 3))])
    wait_for(lambda: influxd.count("ingest_rejects", "detail", db) == 1, what="one reject point")
    [row] = influxd.rows("SELECT * FROM monitor.ingest_rejects", db)
    assert {k: row[k] for k in ("reason", "station", "topic", "detail")} == {
        "reason": reason, "station": station, "topic": topic, "detail": detail}
    assert ingest.metric(f'ingest_rejects_total{{reason="{reason}"}}') == 1
    wait_for(lambda: influxd.count("occupancy", "people", db) == 1, what="the valid reading after the reject")


def test_reject_ts_out_of_range_future_and_old(broker: Mosquitto, influxd: Influxd, db: str,
                                               start_ingest: IngestFactory) -> None:
    ingest = start_ingest()
    now = now_ms()
    publish(broker.port, [(t(S, "occupancy"), occupancy(1, 1, ts=now + 3600_000)),
                          (t(S, "occupancy"), occupancy(2, 1, ts=now - 8 * 86400_000)),
                          (t(S, "occupancy"), occupancy(3, 1, ts=now + 60_000))])  # 1 min ahead: accepted
    wait_for(lambda: ingest.metric('ingest_rejects_total{reason="ts_out_of_range"}') == 2, what="2 rejects")
    wait_for(lambda: influxd.count("ingest_rejects", "detail", db) == 2, what="2 reject points")
    old, future = sorted(r["detail"] for r in influxd.rows("SELECT * FROM monitor.ingest_rejects", db))
    assert re.fullmatch(rf"ts {now + 3600_000} is 3[56]\d\d s ahead of the server clock \(at most 300 s\)", future)
    assert old == f"ts {now - 8 * 86400_000} is more than 7 days old"
    wait_for(lambda: influxd.count("occupancy", "people", db) == 1, what="the reading 1 minute ahead")


def test_reject_one_bad_reading_of_a_batch_rejects_that_reading_only(broker: Mosquitto, influxd: Influxd, db: str,
                                                                     start_ingest: IngestFactory) -> None:
    ingest = start_ingest()
    now = now_ms()
    batch = [occupancy(1, 1, ts=now - 3), occupancy(2, -1, ts=now - 2), occupancy(3, 3, ts=now - 1),
             {"ts": now, "seq": 4}]
    publish(broker.port, [(t(S, "occupancy"), batch)])
    wait_for(lambda: influxd.count("ingest_rejects", "detail", db) == 2, what="two reject points")
    assert sorted(r["detail"] for r in influxd.rows("SELECT * FROM monitor.ingest_rejects", db)) == [
        "[1] people: Input should be greater than or equal to 0", "[3] people: Field required"]
    assert sorted(r["seq"] for r in influxd.rows("SELECT * FROM occupancy", db)) == [1, 3]
    assert ingest.metric('ingest_rejects_total{reason="schema"}') == 2


def test_reject_burst_of_equal_rejects_is_stored_one_point_each(broker: Mosquitto, influxd: Influxd, db: str,
                                                                start_ingest: IngestFactory) -> None:
    start_ingest()
    publish(broker.port, [(t("PL-KT-999", "occupancy"), "{}")] * 300)
    wait_for(lambda: influxd.count("ingest_rejects", "detail", db) == 300, what="300 reject points")
