"""The whole city through the real broker, ingest and InfluxDB: 45 stations, 2 simulated hours."""

from __future__ import annotations

import time
from collections import Counter

from simulator.faults import MALFORMED_KINDS, Malformed, NetworkLoss, Scenario
from simulator.simulation import Broker, Simulation
from telemetry import registry
from tests.conftest import IngestFactory
from tests.rig import Influxd, Mosquitto, wait_for

CUT = "PL-KT-005"  # smart: chargers C1, C2; sensors indoor, outdoor
CUT_AT, CUT_FOR = 45 * 60.0, 30 * 60.0


def per_station(influxd: Influxd, db: str, measurements: str, field: str, tags: str = "station") -> Counter[tuple[str, ...]]:
    rows = influxd.rows(f'SELECT count("{field}") FROM {measurements} GROUP BY {tags}', db)
    out: Counter[tuple[str, ...]] = Counter()
    for r in rows:
        out[tuple(r[t.strip()] for t in tags.split(","))] += int(r["count"])
    return out


async def test_city_45_stations_two_hours_with_one_cut_off_all_land_in_influxdb(
        broker: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    start_ingest()
    stations = registry.load().reporting
    assert len(stations) == 45
    start = float(int(time.time()) - 2 * 3600 - 600)
    scenario = Scenario(faults=(NetworkLoss(station=CUT, at=CUT_AT, for_=CUT_FOR),), malformed=Malformed(rate=0.003))
    summary = await Simulation(stations=stations, broker=Broker("127.0.0.1", broker.port), start=start, speed=2000,
                               duration=7200, seed=42, scenario=scenario, drain_timeout=30).run()
    produced = {t.station: t.produced for t in summary.stations}
    assert summary.total("buffered") == summary.total("dropped") == 0
    assert summary.total("acknowledged") == summary.total("produced")

    # every reading stored once: a reading overwritten by another of the same series and ts is missing here
    readings = "occupancy, charger, temperature"
    wait_for(lambda: sum(per_station(influxd, db, readings, "seq").values()) == sum(produced.values()), timeout=60,
             what=f"the {sum(produced.values())} readings in InfluxDB")
    assert {s: n for (s,), n in per_station(influxd, db, readings, "seq").items()} == produced

    # every station in every measurement it should be in: each charger, each sensor, its status
    assert set(per_station(influxd, db, "occupancy", "people")) == {(s.id,) for s in stations}
    assert set(per_station(influxd, db, "charger", "power_w", "station, charger")) == {
        (s.id, c.id) for s in stations for c in s.chargers}
    assert set(per_station(influxd, db, "temperature", "celsius", "station, sensor")) == {
        (s.id, sensor) for s in stations for sensor in s.sensors}
    assert set(per_station(influxd, db, "station_status", "online")) == {(s.id,) for s in stations}

    # the cut-off station: seq without a gap, its offline half hour replayed with the original timestamps
    rows = influxd.rows(f"SELECT seq FROM {readings} WHERE station = '{CUT}'", db)
    assert sorted(int(r["seq"]) for r in rows) == list(range(1, produced[CUT] + 1))
    cut_ms = (start + CUT_AT) * 1000, (start + CUT_AT + CUT_FOR) * 1000
    assert sum(cut_ms[0] <= r["time"] < cut_ms[1] for r in rows) > 150
    offline = influxd.rows(f"SELECT online FROM station_status WHERE station = '{CUT}' AND online = false", db)
    assert len(offline) == 2, "expected the last will at the cut and the clean offline at the end"

    # what ingest rejected is exactly what the simulator sent malformed, kind by kind
    sent = summary.malformed()
    assert set(sent) == {k.value for k in MALFORMED_KINDS}
    wait_for(lambda: {r: n for (r,), n in per_station(influxd, db, '"monitor"."ingest_rejects"', "detail", "reason").items()}
             == dict(sent), timeout=30, what=f"ingest_rejects by reason == {dict(sent)}")
