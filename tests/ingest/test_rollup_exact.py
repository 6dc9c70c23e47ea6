"""Exactness end to end: a simulated month of three stations through the real broker and two ingest
replicas on a shared subscription, with a station offline two days (its backlog arriving late), a
reboot, clock skew and a counter reset; every hourly and daily figure of the rollups ingest kept
equals the same figure computed from the raw points.

The month is 30 days less 6 hours, ending 2 hours before the current hour (so every hour of it is
closed): its first readings stay younger than the contract's ``MAX_AGE_MS`` (30 days) while it runs.
"""

from __future__ import annotations

import time
from collections import defaultdict

from simulator.faults import ClockSkew, NetworkLoss, Reboot, Scenario
from simulator.simulation import Broker, Simulation
from telemetry import registry
from telemetry.contract import AgentConfig
from telemetry.storage import CHARGER_1H, HOUR_MS, OCCUPANCY_1H, day_of, hour_of
from tests.conftest import IngestFactory
from tests.ingest import rollup_reference as ref
from tests.ingest.test_keeper import rolled_up
from tests.mqtt import publish
from tests.payloads import now_ms, occupancy, t
from tests.rig import Influxd, Mosquitto, wait_for

DAY_S = 86400
MONTH_S = 30 * DAY_S - 6 * 3600
COARSE = AgentConfig(occupancy_interval_s=900, charger_interval_s=900, temperature_interval_s=1800,
                     status_interval_s=3600)
RESET = "PL-JC-001"  # not simulated: its door counter is reset by hand


def daily(influxd: Influxd, db: str, query: str) -> dict[tuple[str, int], float]:
    return {(r["station"], r["time"]): r["v"] for r in influxd.rows(query, db) if r["v"] is not None}


def assert_daily_counters_equal_non_negative_difference(influxd: Influxd, db: str) -> None:
    """Days (Beijing) of visits and energy from the hourly rollups == InfluxQL over the raw points."""
    for raw, field, rollup, steps in (("occupancy", "entries", OCCUPANCY_1H, "visits"),
                                      ("charger", "energy_wh", CHARGER_1H, "energy_wh")):
        from_raw = daily(influxd, db, f'SELECT sum(d) AS v FROM (SELECT non_negative_difference("{field}") AS d '
                                      f'FROM "{raw}" GROUP BY *) WHERE time >= 0 AND time < now() '
                                      "GROUP BY time(1d, -8h), station fill(none)")
        from_rollups = daily(influxd, db, f'SELECT sum("{steps}") AS v FROM "rollup"."{rollup}" WHERE time >= 0 '
                                          "AND time < now() GROUP BY time(1d, -8h), station fill(none)")
        assert from_raw, raw
        assert {k for k, v in from_rollups.items() if v} == {k for k, v in from_raw.items() if v}, raw
        for key, value in from_raw.items():
            assert abs(from_rollups[key] - value) <= 1e-6 * max(1.0, value), (raw, key)


def assert_daily_sums_equal_the_definition(influxd: Influxd, db: str) -> None:
    """Days of readings, minutes and people sums from the hourly rollups == the plain-Python definition."""
    want: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0, 0])
    for (measurement, tags, hour), fields in ref.expected(influxd, db).items():
        if measurement == OCCUPANCY_1H:
            acc = want[dict(tags)["station"], day_of(hour)]
            acc[0] += fields["readings"]
            acc[1] += fields["minutes"]
            acc[2] += fields["people_sum"]
    got = {(r["station"], r["time"]): [r["readings"], r["minutes"], r["people_sum"]] for r in influxd.rows(
        f'SELECT sum(readings) AS readings, sum(minutes) AS minutes, sum(people_sum) AS people_sum FROM "rollup"."'
        f'{OCCUPANCY_1H}" WHERE time >= 0 AND time < now() GROUP BY time(1d, -8h), station fill(none)', db)}
    assert got == dict(want)


async def test_rollups_exact_over_a_simulated_month_two_replicas_late_backlog_reboot_skew_and_reset(
        broker: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    env = {"INGEST_SHARE_GROUP": "city", "INGEST_ROLLUP_TICK_SECONDS": "0.5", "INGEST_ROLLUP_GRACE_SECONDS": "1",
           "INGEST_ROLLUP_SETTLE_SECONDS": "15"}
    replicas = [start_ingest(MQTT_CLIENT_ID=f"ingest-{i}", **env) for i in range(2)]
    stations = registry.load().reporting[:3]
    a, b, c = (s.id for s in stations)
    end = hour_of(now_ms()) / 1000 - 2 * 3600
    start = end - MONTH_S
    scenario = Scenario(faults=(NetworkLoss(station=a, at=10 * DAY_S, for_=2 * DAY_S),
                                Reboot(station=b, at=20 * DAY_S), ClockSkew(station=c, skew=-90)))
    summary = await Simulation(stations=stations, broker=Broker("127.0.0.1", broker.port), start=start,
                               duration=end - start, seed=11, scenario=scenario, config=COARSE,
                               drain_timeout=60).run()
    assert summary.total("acknowledged") == summary.total("produced") > 0
    h = int(end * 1000) - HOUR_MS
    publish(broker.port, [(t(RESET, "occupancy"), occupancy(i + 1, 1, ts=h + i * 60_000, entries=e, exits=0))
                          for i, e in enumerate((100, 110, 5, 20, 26))])  # a reboot reset the counter to 0
    produced = summary.total("produced") + 5
    wait_for(lambda: sum(influxd.count(m, "seq", db) for m in ("occupancy", "charger", "temperature")) == produced,
             timeout=300, what=f"the {produced} readings in InfluxDB")
    wait_for(lambda: all(r.health()["rollups_pending"] == 0 for r in replicas) and rolled_up(influxd, db),
             timeout=300, what="every rollup equal to the definition from the raw points")
    assert all(r.health()["rollups_recomputed"] > 0 for r in replicas), "both replicas kept rollups"
    assert_daily_counters_equal_non_negative_difference(influxd, db)
    assert_daily_sums_equal_the_definition(influxd, db)
    assert ref.stored(influxd, db)[OCCUPANCY_1H, (("district", "jingchuan"), ("kind", "smart"), ("station", RESET)),
                                   h]["visits"] == 10 + 15 + 6
    assert time.time() * 1000 > h + 2 * HOUR_MS  # all of it in closed hours
