"""End to end: a paho client publishes, ``python -m ingest`` writes, InfluxQL reads back."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from telemetry.storage import MONITOR_MEASUREMENTS, Tier, qualified
from tests.conftest import IngestFactory
from tests.mqtt import publish
from tests.payloads import charger, now_ms, occupancy, t, temperature
from tests.rig import Influxd, Mosquitto, wait_for

S = "PL-KT-001"  # smart: chargers C1 (10 sockets), C2 (10); sensors indoor, outdoor


def field_types(influxd: Influxd, db: str, measurement: str) -> dict[str, str]:
    series = influxd.query(f'SHOW FIELD KEYS FROM "{measurement}"', db)
    return {name: kind for name, kind in series[0]["values"]} if series else {}


def rows(influxd: Influxd, db: str, measurement: str) -> list[dict[str, Any]]:
    source = qualified(Tier.MONITOR, measurement) if measurement in MONITOR_MEASUREMENTS else f'"{measurement}"'
    return influxd.rows(f"SELECT * FROM {source} ORDER BY time", db)


def test_end_to_end_every_kind_singly_and_in_batches(broker: Mosquitto, influxd: Influxd, db: str,
                                                      start_ingest: IngestFactory) -> None:
    ingest = start_ingest()
    ts = now_ms() - 60_000
    publish(broker.port, [
        (t(S, "occupancy"), occupancy(1, 4, ts=ts, entries=120, exits=116)),
        (t(S, "occupancy"), [occupancy(2, 5, ts=ts + 1), occupancy(3, 6, ts=ts + 2, entries=122)]),
        (t(S, "charger"), charger(4, "C1", 3, ts=ts, power_w=450.5, energy_wh=1234.25, fault="E07")),
        (t(S, "charger"), [charger(5, "C2", 10, ts=ts + 1, power_w=0, energy_wh=99.0)]),
        (t(S, "temperature"), temperature(6, "indoor", 18.5, ts=ts, humidity_pct=41.5)),
        (t(S, "temperature"), [temperature(7, "outdoor", -11.25, ts=ts + 1), temperature(8, "indoor", 19, ts=ts + 2)]),
        (t(S, "status"), {"state": "online", "ts": ts, "fw": "1.4.2", "uptime_s": 3600, "buffered": 7}),
    ])
    wait_for(lambda: influxd.count("temperature", "celsius", db) == 3 and influxd.count("station_status", "online", db),
             what="every point written")
    tags = {"station": S, "district": "kongtong", "kind": "smart"}
    assert rows(influxd, db, "occupancy") == [
        {"time": ts, **tags, "people": 4, "capacity": 20, "entries": 120, "exits": 116, "seq": 1},
        {"time": ts + 1, **tags, "people": 5, "capacity": 20, "entries": None, "exits": None, "seq": 2},
        {"time": ts + 2, **tags, "people": 6, "capacity": 20, "entries": 122, "exits": None, "seq": 3},
    ]
    assert rows(influxd, db, "charger") == [
        {"time": ts, **tags, "charger": "C1", "sockets_in_use": 3, "sockets_total": 10, "power_w": 450.5,
         "energy_wh": 1234.25, "fault": "E07", "seq": 4},
        {"time": ts + 1, **tags, "charger": "C2", "sockets_in_use": 10, "sockets_total": 10, "power_w": 0,
         "energy_wh": 99, "fault": None, "seq": 5},
    ]
    assert rows(influxd, db, "temperature") == [
        {"time": ts, **tags, "sensor": "indoor", "celsius": 18.5, "humidity_pct": 41.5, "seq": 6},
        {"time": ts + 1, **tags, "sensor": "outdoor", "celsius": -11.25, "humidity_pct": None, "seq": 7},
        {"time": ts + 2, **tags, "sensor": "indoor", "celsius": 19, "humidity_pct": None, "seq": 8},
    ]
    assert rows(influxd, db, "station_status") == [
        {"time": ts, **tags, "online": True, "fw": "1.4.2", "uptime_s": 3600, "buffered": 7},
    ]
    assert field_types(influxd, db, "occupancy") == {"people": "integer", "capacity": "integer", "entries": "integer",
                                                     "exits": "integer", "seq": "integer"}
    assert field_types(influxd, db, "charger") == {"sockets_in_use": "integer", "sockets_total": "integer",
                                                   "power_w": "float", "energy_wh": "float", "fault": "string",
                                                   "seq": "integer"}
    assert field_types(influxd, db, "temperature") == {"celsius": "float", "humidity_pct": "float",
                                                       "seq": "integer"}
    assert field_types(influxd, db, "station_status") == {"online": "boolean", "fw": "string",
                                                          "uptime_s": "integer", "buffered": "integer"}
    assert ingest.metric("ingest_messages_received_total") == 7
    assert rows(influxd, db, "ingest_rejects") == []


def test_end_to_end_rfc3339_timestamps_and_last_will_without_ts(broker: Mosquitto, influxd: Influxd, db: str,
                                                                start_ingest: IngestFactory) -> None:
    start_ingest()
    before = now_ms()
    local = datetime.now(timezone(timedelta(hours=8))).replace(microsecond=125_000) - timedelta(hours=1)
    publish(broker.port, [
        (t(S, "occupancy"), {"ts": local.isoformat(), "seq": 1, "people": 2}),
        (t(S, "status"), {"state": "offline"}),
    ])
    wait_for(lambda: influxd.count("station_status", "online", db), what="the offline status")
    assert [r["time"] for r in rows(influxd, db, "occupancy")] == [int(local.timestamp() * 1000)]
    status = rows(influxd, db, "station_status")
    assert len(status) == 1
    assert status[0]["online"] is False
    assert before <= status[0]["time"] <= now_ms()


def test_end_to_end_config_topic_is_not_stored_or_rejected(broker: Mosquitto, influxd: Influxd, db: str,
                                                            start_ingest: IngestFactory) -> None:
    ingest = start_ingest()
    publish(broker.port, [(t(S, "config"), {"occupancy_interval_s": 30}), (t(S, "occupancy"), occupancy(1, 1))])
    wait_for(lambda: influxd.count("occupancy", "people", db) == 1, what="the occupancy reading")
    assert ingest.metric("ingest_messages_received_total") == 2
    assert sum(v for k, v in ingest.metrics().items() if k.startswith("ingest_rejects_total")) == 0


INJECTIONS = ["E1,x=1 y=2", 'say "hi"', "back\\slash\\", "故障 过流", "a=b", "\\", 'x"\\" z=1i 1']


def test_end_to_end_injection_is_stored_verbatim_or_rejected(broker: Mosquitto, influxd: Influxd, db: str,
                                                             start_ingest: IngestFactory) -> None:
    ingest = start_ingest()
    ts = now_ms() - 10_000
    feed: list[tuple[str, Any]] = [(t(S, "charger"), charger(i, "C1", ts=ts + i, fault=text))
                                   for i, text in enumerate(INJECTIONS)]
    hostile_names = ["in,door", "in door", "in=door", 'in"door', "in\\door", "in\ndoor", "室内"]
    feed += [(t(S, "temperature"), temperature(100 + i, name, ts=ts + i)) for i, name in enumerate(hostile_names)]
    feed += [(t(S, "charger"), charger(200 + i, name, ts=ts + i)) for i, name in enumerate(hostile_names)]
    feed += [(t(S, "charger"), charger(300, "C1", ts=ts + 300, fault="E1\nfake,station=x people=1i"))]
    publish(broker.port, feed)
    rejected = 2 * len(hostile_names) + 1
    wait_for(lambda: influxd.count("ingest_rejects", "detail", db) == rejected, what=f"{rejected} rejects")
    assert sorted(r["fault"] for r in rows(influxd, db, "charger")) == sorted(INJECTIONS)
    assert influxd.count("temperature", "celsius", db) == 0
    assert ingest.metric('ingest_rejects_total{reason="schema"}') == rejected
    assert sorted(v[0] for v in influxd.query("SHOW MEASUREMENTS", db)[0]["values"]) == ["charger", "ingest_rejects"]
    assert influxd.query("SHOW TAG VALUES FROM charger WITH KEY = charger", db)[0]["values"] == [["charger", "C1"]]
    assert set(field_types(influxd, db, "charger")) == {"sockets_in_use", "sockets_total", "power_w", "energy_wh",
                                                        "fault", "seq"}


def test_end_to_end_json_logs_and_healthz(broker: Mosquitto, influxd: Influxd, db: str,
                                          start_ingest: IngestFactory) -> None:
    ingest = start_ingest(LOG_FORMAT="json", INGEST_SUMMARY_SECONDS="0.2")
    healthy = {"status": "ok", "mqtt_connected": True, "influx_up": True, "spool_batches": 0, "pending_points": 0,
               "rollups_pending": 0, "rollups_recomputed": 0}
    wait_for(lambda: ingest.health() == healthy, what=f"healthz to report {healthy}")
    wait_for(lambda: "summary: received" in ingest.log.read_text(), what="a summary line")
    entries = [json.loads(line) for line in ingest.log.read_text().splitlines()]
    assert {"ts", "level", "logger", "msg"} <= set(entries[0])
    assert any(e["logger"] == "ingest.subscriber" and e["msg"].startswith("MQTT connected") for e in entries)


def test_end_to_end_ingest_stats_and_station_lag(broker: Mosquitto, influxd: Influxd, db: str,
                                                 start_ingest: IngestFactory) -> None:
    """ingest writes its own statistics into InfluxDB: rates, spool, write latency, lag per reading and station."""
    start_ingest(INGEST_STATS_SECONDS="0.3", INGEST_STATION_STATS_SECONDS="0.3", MQTT_CLIENT_ID="ingest-a")
    old = now_ms() - 120_000
    publish(broker.port, [(t(S, "occupancy"), [occupancy(i, 1, ts=old + i) for i in range(10)]),
                          (t("PL-KT-999", "occupancy"), "{}")])

    def busy_interval() -> list[dict[str, Any]]:
        return influxd.rows("SELECT * FROM monitor.ingest_stats WHERE readings > 0", db)

    [stat] = wait_for(busy_interval, what="an ingest_stats point with readings")
    assert stat["instance"] == "ingest-a"
    assert (stat["messages"], stat["readings"], stat["rejects"]) == (2, 10, 1)
    assert 120_000 - 100 <= stat["lag_p50_ms"] <= stat["lag_p99_ms"] < 180_000
    assert stat["mqtt_connected"] is True
    assert stat["spool_bytes"] == 0
    [lag] = wait_for(lambda: influxd.rows("SELECT * FROM monitor.ingest_station_lag", db), what="a station lag point")
    assert (lag["station"], lag["district"], lag["messages"]) == (S, "kongtong", 1)
    assert lag["lag_min_ms"] == lag["lag_max_ms"] == lag["lag_p50_ms"]
    assert 120_000 - 100 <= lag["lag_min_ms"] < 180_000
    wait_for(lambda: any(r["write_ms_mean"] for r in influxd.rows("SELECT * FROM monitor.ingest_stats", db)),
             what="a write latency in ingest_stats")
