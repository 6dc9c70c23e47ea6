"""Panels on rollups plus the open hour give the figures of the raw points, at any moment of the hour.

Each panel runs as Grafana would at several moments ("as of": a second after an hour began, in its
middle, a second before it ends, and now), on the rollups of the simulated day's closed hours; its
combined frames must equal the door counters' (or meters') steps computed from the raw points of
the same range, by the definition in ``docs/rollups.md``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from dashboards import rollups
from telemetry.storage import HOUR_MS, hour_of
from tests.dashboards.conftest import SimulatedDay
from tests.dashboards.grafana import Frame, TimeRange
from tests.dashboards.panels import PanelRun, assignments, find, run_panel
from tests.rollup_reference import Step, steps

DAY_MS = 24 * HOUR_MS
BEIJING_MS = 8 * HOUR_MS
SETTLE_MS = 10_000
"""Live moments are taken this far back, so that every reading up to them has been written."""


def _moments() -> list[int]:
    now = int(time.time() * 1000) - SETTLE_MS
    top = hour_of(now)
    return [top - 3 * HOUR_MS + 1000, top - 5 * HOUR_MS + 30 * 60_000, top - 7 * HOUR_MS - 1000, now]


MOMENTS = _moments()


def _id(moment: int) -> str:
    return f"{(moment % HOUR_MS) // 1000}s into the hour" if moment != MOMENTS[-1] else "now"


def beijing_day(ms: int) -> int:
    return (ms + BEIJING_MS) // DAY_MS * DAY_MS - BEIJING_MS


def beijing_month(ms: int) -> str:
    return time.strftime("%Y-%m", time.gmtime((ms + BEIJING_MS) / 1000))


def _first_hour(window: TimeRange) -> int:
    """Rollups count whole hours: a range starting mid-hour starts at the next hour."""
    return -(-window.start_ms // HOUR_MS) * HOUR_MS


def _in(window: TimeRange, readings: list[Step]) -> list[Step]:
    return [r for r in readings if _first_hour(window) <= r.time <= window.end_ms]


def _run(day: SimulatedDay, dashboard: str, title: str, moment: int) -> list[PanelRun]:
    case = find(dashboard, title)
    day.rollups()
    return [run_panel(day, case, chosen, now_ms=moment) for chosen in assignments(day, case.dashboard)]


def _rows(frames: list[Frame]) -> list[dict[str, Any]]:
    return [dict(zip(f, values, strict=True)) for f in frames for values in zip(*f.values(), strict=True)]


def _nonzero(figures: dict[Any, float]) -> dict[Any, float]:
    return {k: v for k, v in figures.items() if v}


def _sums(readings: list[Step], key: Callable[[Step], Any]) -> dict[Any, float]:
    out: dict[Any, float] = defaultdict(float)
    for r in readings:
        out[key(r)] += r.step
    return _nonzero(out)


def _matrix(frames: list[Frame], x: str) -> dict[tuple[Any, str], float]:
    """A groupingToMatrix frame as {(row, column): value}."""
    (frame,) = frames
    return _nonzero({(row, column): values[i] or 0 for column, values in frame.items() if column != x
                     for i, row in enumerate(frame[x])})


def _visits(day: SimulatedDay, moment: int) -> list[Step]:
    return steps(day.influxd, day.db, "occupancy", "entries", end_ms=moment + 1)


STATION, DISTRICT = 0, 1


@pytest.mark.parametrize("moment", MOMENTS, ids=_id)
def test_visits_this_month_per_station_and_district_equal_the_raw_steps(simulated_day: SimulatedDay,
                                                                        moment: int) -> None:
    (run,) = _run(simulated_day, "yizhan-overview", "本月人次 Visits this month, per station", moment)
    readings = _in(run.time_range, _visits(simulated_day, moment))
    got = _nonzero({r["station"]: r["visits"] for r in _rows(run.frames())})
    assert got == _sums(readings, lambda r: r.series[STATION])
    assert got, "the simulated day has visits this month"
    (by_district,) = _run(simulated_day, "yizhan-overview", "本月人次 Visits this month, by district", moment)
    assert _nonzero({r["district"]: r["visits"] for r in _rows(by_district.frames())}) == _sums(
        readings, lambda r: r.series[DISTRICT])


@pytest.mark.parametrize("moment", MOMENTS, ids=_id)
def test_visits_per_station_and_day_equal_the_raw_steps(simulated_day: SimulatedDay, moment: int) -> None:
    (run,) = _run(simulated_day, "yizhan-overview", "每日人次 Visits per station and day (selected range)", moment)
    readings = _in(run.time_range, _visits(simulated_day, moment))
    got = _nonzero({(r["Time"], r["station"]): r["visits"] for r in _rows(run.frames())})
    assert got == _sums(readings, lambda r: (beijing_day(r.time), r.series[STATION]))
    assert len({d for d, _ in got}) == 2, "the simulated day spans two Beijing days"


@pytest.mark.parametrize("moment", MOMENTS, ids=_id)
def test_visits_per_day_by_district_equal_the_raw_steps(simulated_day: SimulatedDay, moment: int) -> None:
    (run,) = _run(simulated_day, "yizhan-overview", "每日人次 Visits per day, by district", moment)
    readings = _in(run.time_range, _visits(simulated_day, moment))
    assert _matrix(run.frames(), rollups.matrix_x("district")) == _sums(
        readings, lambda r: (beijing_day(r.time), r.series[DISTRICT]))


@pytest.mark.parametrize("moment", MOMENTS, ids=_id)
def test_visits_per_month_this_year_and_in_total_equal_the_raw_steps(simulated_day: SimulatedDay,
                                                                     moment: int) -> None:
    (months,) = _run(simulated_day, "yizhan-overview", "近12个月人次 Visits per month, by district (the last 12 months)",
                     moment)
    readings = _in(months.time_range, _visits(simulated_day, moment))
    assert _matrix(months.frames(), rollups.matrix_x("district")) == _sums(
        readings, lambda r: (beijing_month(r.time), r.series[DISTRICT]))
    for title in ("本年人次 Visits this year", "累计人次 Visits since the system started"):
        (run,) = _run(simulated_day, "yizhan-overview", title, moment)
        total = sum(r["visits"] for r in _rows(run.frames()))  # the stat panel's calcs: sum
        assert total == sum(_sums(_in(run.time_range, _visits(simulated_day, moment)), lambda _: 0).values())
        assert total > 0


@pytest.mark.parametrize("moment", MOMENTS, ids=_id)
def test_station_energy_per_day_equals_the_meters_raw_steps(simulated_day: SimulatedDay, moment: int) -> None:
    meters = steps(simulated_day.influxd, simulated_day.db, "charger", "energy_wh", per=("charger",),
                   end_ms=moment + 1)
    runs = _run(simulated_day, "yizhan-station", "每日用电 Energy per day, per charger", moment)
    for run in runs:
        station = run.variable("station")
        readings = [r for r in _in(run.time_range, meters) if r.series[STATION] == station]
        expected = _sums(readings, lambda r: (beijing_day(r.time), r.series[-1]))
        assert _matrix(run.frames(), rollups.matrix_x("charger")) == pytest.approx(expected), station
    assert any(run.results[0].rows for run in runs)
