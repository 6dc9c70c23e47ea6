"""The silent-stations panel and the station-offline alert at their edges, on points written for them.

Each test writes a few stations' readings into its own database, ending at chosen times before a
fixed moment ``NOW`` (30 s into a minute), and runs the panel or the rule as Grafana would at
``NOW``: which stations are listed or fire is decided by minutes either side of 10.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dashboards import alerts, overview
from dashboards.builder import Query
from telemetry.storage import HOUR_MS
from tests.dashboards.conftest import SimulatedDay
from tests.dashboards.grafana import TimeRange, interpolate
from tests.dashboards.panels import assignments, evaluate, find, run_panel
from tests.rig import Influxd

MINUTE_MS = 60_000
NOW = 1_796_000_000_000 // MINUTE_MS * MINUTE_MS + 30_000
"""A moment 30 s into a minute (2026-11-29 UTC), so that a minute either way is a whole bucket either way."""
HISTORY_MS = 2 * HOUR_MS
"""Each station reports once a minute for this long before its last reading."""
SILENT = "超过10分钟无数据 Stations silent for more than 10 minutes"
OCCUPANCY = "seq={seq}i,people=1i"
ONLINE = "online=true"


def _day(influxd: Influxd, db: str) -> SimulatedDay:
    """This test's database, for the runners of panels and rules (which read the simulated day's)."""
    return SimulatedDay(influxd, db, Path("/dev/null"))


def _write(influxd: Influxd, db: str, measurement: str, fields: str, last: dict[str, int]) -> None:
    """A point a minute per station until ``NOW - last[station]`` ms; ``{seq}`` in ``fields`` counts them."""
    lines = []
    for station, ago in last.items():
        end = NOW - ago
        times = range(end - HISTORY_MS, end + 1, MINUTE_MS)
        lines += [f"{measurement},station={station},district=kongtong {fields.format(seq=seq)} {t}"
                  for seq, t in enumerate(times, 1)]
    influxd.write(db, "\n".join(lines))


def _silent(day: SimulatedDay, now_ms: int = NOW) -> dict[str, float]:
    case = find(overview.UID, SILENT)
    (run,) = [run_panel(day, case, chosen, now_ms=now_ms) for chosen in assignments(day, case.dashboard)]
    return {station: minutes for frame in run.frames()
            for station, minutes in zip(frame["station"], frame["silent_minutes"], strict=True)}


WINDOW_MS = overview.SILENT_DAYS * 24 * HOUR_MS


def test_silent_stations_are_the_ones_whose_newest_reading_is_more_than_10_minutes_old(influxd: Influxd,
                                                                                       db: str) -> None:
    last = {"S-LIVE": 30_000, "S-9": 9 * MINUTE_MS, "S-10": 10 * MINUTE_MS, "S-10-1S": 10 * MINUTE_MS + 1000,
            "S-11": 11 * MINUTE_MS, "S-7H": 7 * HOUR_MS, "S-GONE": WINDOW_MS + HISTORY_MS + MINUTE_MS}
    _write(influxd, db, "occupancy", OCCUPANCY, last)
    _write(influxd, db, "station_status", ONLINE, {"S-LIVE": 0})  # the district variable's values
    got = _silent(_day(influxd, db))
    assert got == pytest.approx({"S-10-1S": 10 + 1 / 60, "S-11": 11, "S-7H": 420}), got
    # S-GONE's readings all lie before the panel's range: it has left the table


def test_silent_station_minutes_are_counted_from_the_end_of_the_range(influxd: Influxd, db: str) -> None:
    _write(influxd, db, "occupancy", OCCUPANCY, {"S-A": 0})
    _write(influxd, db, "station_status", ONLINE, {"S-A": 0})
    day = _day(influxd, db)
    assert _silent(day, NOW + 10 * MINUTE_MS) == {}
    assert _silent(day, NOW + 10 * MINUTE_MS + 1) == pytest.approx({"S-A": 10 + 1 / MINUTE_MS})
    assert _silent(day, NOW + 25 * HOUR_MS) == pytest.approx({"S-A": 25 * 60})


OFFLINE = next(r for r in alerts.RULES if r.uid == "yizhan-station-offline")
MOVING_AVERAGE = replace(OFFLINE, threshold=0.01, query=Query(
    'SELECT moving_average(count("online"), 10) AS "online_per_minute" FROM "station_status" '
    'WHERE $timeFilter AND "online" = true GROUP BY time(1m), "station", "district" fill(0)',
    columns=("online_per_minute",)))
"""The rule as it was (5.9 s at 1,000 stations): the definition it keeps."""


def _states(day: SimulatedDay, rule: alerts.AlertRule, now_ms: int) -> dict[str, bool]:
    """Per station, whether the rule fires at ``now_ms``."""
    window = TimeRange(now_ms - rule.window_s * 1000, now_ms)
    series = day.influxd.query(interpolate(rule.query.text, window, 1000, {}), day.db)
    return {s["tags"]["station"]: firing for s in series for firing in evaluate(rule, [s]).values()}


def test_station_offline_fires_after_10_minutes_without_an_online_status(influxd: Influxd, db: str) -> None:
    last = {"S-LIVE": 0, "S-9": 9 * MINUTE_MS, "S-11": 11 * MINUTE_MS, "S-OFF": 30 * MINUTE_MS,
            "S-7H": 7 * HOUR_MS}
    _write(influxd, db, "station_status", ONLINE, last)
    influxd.write(db, "\n".join(f"station_status,station=S-OFF,district=kongtong online=false {NOW - ago}"
                                for ago in range(0, 30 * MINUTE_MS, MINUTE_MS)))  # it has said offline since
    states = _states(_day(influxd, db), OFFLINE, NOW)
    assert states == {"S-LIVE": False, "S-9": False, "S-11": True, "S-OFF": True}, states
    # S-7H, online last 7 hours ago, has left the rule's 6-hour range


def test_station_offline_fires_at_the_same_moments_as_the_moving_average_it_replaced(influxd: Influxd,
                                                                                      db: str) -> None:
    _write(influxd, db, "station_status", ONLINE, {"S-A": 0, "S-B": 10 * MINUTE_MS - 20_000})
    day = _day(influxd, db)
    moments = range(NOW - 3 * MINUTE_MS, NOW + 12 * MINUTE_MS, 15_000)  # S-B starts firing, then S-A
    states = {now_ms: _states(day, OFFLINE, now_ms) for now_ms in moments}
    assert states == {now_ms: _states(day, MOVING_AVERAGE, now_ms) for now_ms in moments}
    assert {tuple(sorted(firing.items())) for firing in states.values()} == {
        (("S-A", False), ("S-B", False)), (("S-A", False), ("S-B", True)), (("S-A", True), ("S-B", True))}
