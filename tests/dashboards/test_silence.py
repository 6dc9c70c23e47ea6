"""The station-offline alert at its edges, on points written for it.

Each test writes a few stations' statuses into its own database, ending at chosen times before a
fixed moment ``NOW`` (30 s into a minute), and runs the rule as Grafana would at ``NOW``: which
stations fire is decided by minutes either side of 10.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dashboards import alerts
from dashboards.builder import Query
from tests.dashboards.conftest import SimulatedDay
from tests.dashboards.grafana import TimeRange, interpolate
from tests.dashboards.panels import evaluate
from tests.rig import Influxd

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
NOW = 1_796_000_000_000 // MINUTE_MS * MINUTE_MS + 30_000
"""A moment 30 s into a minute (2026-11-29 UTC), so that a minute either way is a whole bucket either way."""
HISTORY_MS = 2 * HOUR_MS
"""Each station reports once a minute for this long before its last reading."""
ONLINE = "online=true"


def _day(influxd: Influxd, db: str) -> SimulatedDay:
    """This test's database, for the panel runner (which reads the simulated day's)."""
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
