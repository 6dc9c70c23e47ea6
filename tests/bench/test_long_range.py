"""The long-range bench on a real influxd: every point written, every panel and alert query timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.long_range import (
    OWN_RANGE,
    Case,
    Store,
    case_registry,
    fill_rollups,
    load,
    rebuild,
    rebuilt_hours,
    rollup_station_years,
    table,
    time_all,
)
from bench.station_data import DAY_MS
from dashboards import alerts, provisioning
from tests.rig import Influxd

END = 1_795_000_000_000 // DAY_MS * DAY_MS


def test_long_range_writes_every_point_and_times_every_panel_and_alert(influxd: Influxd, db: str,
                                                                      tmp_path: Path) -> None:
    stations = case_registry(3, tmp_path)
    store = Store(influxd, db)
    case = load(store, Case(3, 1, 1, END), stations, connections=2)
    counts = [influxd.count(m, f, db) for m, f in (("occupancy", "people"), ("charger", "power_w"),
                                                   ("temperature", "celsius"), ("station_status", "online"))]
    assert sum(counts) == case.points
    assert all(counts), counts

    timed = time_all(store, stations, case, [1], timeout=60, skip_over=None)
    panels = [(d.uid, p.title, days) for d in provisioning.dashboards(stations).values() for r in d.rows
              for p in r.panels for days in ([OWN_RANGE] if p.time_from else []) + [1]]
    assert any(days == OWN_RANGE for _, _, days in panels), "panels with a relative time of their own"
    alert_rules = [("alert", r.title, OWN_RANGE) for r in alerts.RULES]
    assert [(t.dashboard, t.panel, t.days) for t in timed] == panels + alert_rules, \
        "every panel over the range and over its own; every alert rule over its own"
    assert all(t.seconds is not None and t.seconds >= 0 for t in timed)
    visits = next(t for t in timed if t.panel.startswith("每日人次 Visits per day"))
    assert visits.rows > 0, "a day of visits per district"


def test_long_range_table_puts_before_and_after_side_by_side(tmp_path: Path) -> None:
    row = {"dashboard": "d", "panel": "p", "own_range": "now/M", "days": 365, "queries": 1, "rows": 1,
           "timeout": 60.0, "skipped": False}
    (tmp_path / "timings-after.json").write_text(json.dumps([row | {"seconds": 0.04}]))
    (tmp_path / "timings-before.json").write_text(json.dumps([row | {"seconds": None}]))
    assert table(tmp_path).splitlines()[2] == "| d | p | now/M | > 60 | 0.040 |"
    assert table(tmp_path).splitlines()[0].endswith("| 365 d before (s) | 365 d after (s) |")


def test_long_range_fill_copies_the_rebuilt_hours_over_the_range(influxd: Influxd, db: str, tmp_path: Path) -> None:
    """The rollups the real rebuild made for one day, copied over three: three times the station-hours."""
    stations = case_registry(3, tmp_path)
    store = Store(influxd, db)
    case = load(store, Case(3, 1, 1, END), stations, connections=2)
    done = rebuild(store, case, tmp_path)
    assert done["seconds"] is not None
    built = rebuilt_hours(store)
    assert built == (case.start_ms, case.end_ms), built
    one_day = rollup_station_years(store)
    assert one_day == pytest.approx(3 * 24 / (365 * 24)), "a point per station and hour"
    filled = fill_rollups(store, (END - 3 * DAY_MS, END), connections=2)
    assert rollup_station_years(store) == pytest.approx(3 * one_day), filled
