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

from dashboards import completeness, rollups, seqgaps
from telemetry.storage import DAY_MS, HOUR_MS, day_of, hour_of
from tests.dashboards.conftest import SimulatedDay
from tests.dashboards.grafana import Frame, TimeRange
from tests.dashboards.panels import REGISTRY, PanelRun, assignments, find, run_panel
from tests.rollup_reference import Step, points, steps

BEIJING_MS = 8 * HOUR_MS
SETTLE_MS = 10_000
"""Live moments are taken this far back, so that every reading up to them has been written."""


def _moments() -> list[int]:
    now = int(time.time() * 1000) - SETTLE_MS
    top = hour_of(now)
    return [top - 3 * HOUR_MS + 1000, top - 5 * HOUR_MS + 30 * 60_000, top - 7 * HOUR_MS - 1000, now]


MOMENTS = _moments()


def _first_hour_of_today() -> int:
    """20 minutes into the Beijing day (yesterday's, if today's are not yet 20 minutes old): its closed
    hours have no rollup point, a today panel's figure is the open hour's alone."""
    now = MOMENTS[-1]
    moment = day_of(now) + 20 * 60_000
    return moment if moment <= now else moment - DAY_MS


FIRST_HOUR = _first_hour_of_today()


def _id(moment: int) -> str:
    if moment == FIRST_HOUR:
        return "20 min into the day"
    return f"{(moment % HOUR_MS) // 1000}s into the hour" if moment != MOMENTS[-1] else "now"


def beijing_month(ms: int) -> str:
    return time.strftime("%Y-%m", time.gmtime((ms + BEIJING_MS) / 1000))


def beijing_date(ms: int, pattern: str = "%Y-%m-%d") -> str:
    """A Beijing day as the per-day panels show it (formatTime: ``YYYY-MM-DD`` or ``MM-DD``)."""
    return time.strftime(pattern, time.gmtime((ms + BEIJING_MS) / 1000))


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


def _cells(run: PanelRun) -> dict[tuple[str, int], float]:
    """A status-history panel's non-empty cells: (station, bucket start) -> percentage."""
    return {(name, t): v for f in run.frames() for name in f if name != "Time"
            for t, v in zip(f["Time"], f[name], strict=True) if v}


def _nonzero(figures: dict[Any, float]) -> dict[Any, float]:
    return {k: v for k, v in figures.items() if v}


def _sums(readings: list[Step], key: Callable[[Step], Any]) -> dict[Any, float]:
    out: dict[Any, float] = defaultdict(float)
    for r in readings:
        out[key(r)] += r.step
    return _nonzero(out)


def _matrix(frames: list[Frame], x: str) -> dict[tuple[Any, str], float]:
    """A groupingToMatrix frame as {(row, column): value}; a missing cell must be null, never text."""
    (frame,) = frames
    assert all(v is None or isinstance(v, int | float) for c, vs in frame.items() if c != x for v in vs), frame
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
    assert got == _sums(readings, lambda r: (beijing_date(r.time), r.series[STATION]))
    assert got, "the simulated day has visits"  # two days when the range's first day had any (not at night)


@pytest.mark.parametrize("moment", MOMENTS, ids=_id)
def test_visits_per_day_by_district_equal_the_raw_steps(simulated_day: SimulatedDay, moment: int) -> None:
    (run,) = _run(simulated_day, "yizhan-overview", "每日人次 Visits per day, by district", moment)
    readings = _in(run.time_range, _visits(simulated_day, moment))
    assert _matrix(run.frames(), rollups.matrix_x("district")) == _sums(
        readings, lambda r: (beijing_date(r.time, "%m-%d"), r.series[DISTRICT]))


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
        expected = _sums(readings, lambda r: (beijing_date(r.time, "%m-%d"), r.series[-1]))
        assert _matrix(run.frames(), rollups.matrix_x("charger")) == pytest.approx(expected), station
    assert any(run.results[0].rows for run in runs)


def test_completeness_hours_on_rollups_equal_the_raw_minutes_with_a_reading(simulated_day: SimulatedDay) -> None:
    moment = MOMENTS[-1]
    (run,) = _run(simulated_day, "yizhan-completeness", "人数 Occupancy: minutes with a reading (%)", moment)
    minutes: dict[tuple[str, int], set[int]] = defaultdict(set)
    for r in _visits(simulated_day, moment):
        if _first_hour(run.time_range) <= r.time and hour_of(r.time) < hour_of(moment):
            minutes[(r.series[STATION], hour_of(r.time))].add(r.time // 60_000)
    got = _cells(run)
    assert got == pytest.approx({k: 100 * len(v) / 60 for k, v in minutes.items()})
    assert hour_of(moment) not in {t for _, t in got}, "the open hour shows once it closes"


@pytest.mark.parametrize("moment", MOMENTS, ids=_id)
def test_station_seq_gaps_on_rollups_equal_the_raw_seqs(simulated_day: SimulatedDay, moment: int) -> None:
    runs = _run(simulated_day, "yizhan-station", "序号缺口 Open seq gaps", moment)
    for run in runs:
        station = run.variable("station")
        start = _first_hour(run.time_range)
        seqs = [r["seq"] for measurement in seqgaps.MEASUREMENTS
                for r in points(simulated_day.influxd, simulated_day.db, measurement, '"seq"', moment + 1)
                if r["station"] == station and r["time"] >= start]
        (row,) = _rows(run.frames())
        assert (row[seqgaps.RECEIVED], row[seqgaps.GAPS]) == (len(seqs), max(seqs) - min(seqs) + 1 - len(seqs)), \
            station


TRUST = "今日可信度 Can today's numbers be trusted? One row per station"


def _raw_times(day: SimulatedDay, measurement: str, window: TimeRange) -> dict[str, list[int]]:
    """Each station's raw reading times of ``measurement`` in ``window`` (its end included)."""
    out: dict[str, list[int]] = defaultdict(list)
    for r in points(day.influxd, day.db, measurement, '"seq"', window.end_ms + 1):
        if r["time"] >= window.start_ms:
            out[r["station"]].append(r["time"])
    return out


@pytest.mark.parametrize("moment", [*MOMENTS, FIRST_HOUR], ids=_id)
def test_trust_table_on_rollups_equals_the_raw_minutes_and_readings(simulated_day: SimulatedDay,
                                                                    moment: int) -> None:
    """Today's completeness per station, closed hours from the rollups and the open hour raw, equals
    the raw figures: minutes with an occupancy reading, and charger and sensor readings, over the
    day's one-minute buckets so far."""
    (run,) = _run(simulated_day, "yizhan-completeness", TRUST, moment)
    window = run.time_range
    buckets = (window.end_ms - window.start_ms) // 60_000 + 1
    stations = REGISTRY.by_id
    occupancy = {station: 100 * len({t // 60_000 for t in times}) / (completeness.OCCUPANCY_SHARE * buckets)
                 for station, times in _raw_times(simulated_day, "occupancy", window).items()}
    kinds = {}
    for kind in (completeness.CHARGERS, completeness.TEMPERATURE):
        kinds[kind.name] = {station: 100 * len(times) / (kind.devices(stations[station]) * 60 / kind.interval_s
                                                          * buckets)
                            for station, times in _raw_times(simulated_day, kind.measurement, window).items()}
    rows = {r["驿站 station"]: r for r in _rows(run.frames())}
    titles = completeness.TRUST_COLUMNS
    assert {s: r[titles[completeness.OCCUPANCY_COLUMN]] for s, r in rows.items() if s in occupancy} == \
        pytest.approx(occupancy)
    for kind in (completeness.CHARGERS, completeness.TEMPERATURE):
        assert kinds[kind.name], f"the simulated day has {kind.name} readings today"
        assert {s: r[titles[kind.column]] for s, r in rows.items() if s in kinds[kind.name]} == \
            pytest.approx(kinds[kind.name]), kind.name
    assert occupancy, "the simulated day has occupancy readings today"
    received: dict[str, int] = defaultdict(int)
    for measurement in seqgaps.MEASUREMENTS:
        for station, times in _raw_times(simulated_day, measurement, window).items():
            received[station] += len(times)
    assert {s: r[titles[seqgaps.RECEIVED]] for s, r in rows.items() if s in received} == received


@pytest.mark.parametrize("kind", [completeness.CHARGERS, completeness.TEMPERATURE], ids=lambda k: k.name)
def test_completeness_device_hours_on_rollups_equal_the_raw_readings(simulated_day: SimulatedDay,
                                                                     kind: completeness.Kind) -> None:
    moment = MOMENTS[-1]
    (run,) = _run(simulated_day, "yizhan-completeness", f"{kind.label}: readings received / expected (%)", moment)
    stations = REGISTRY.by_id
    readings: dict[tuple[str, int], int] = defaultdict(int)
    for station, times in _raw_times(simulated_day, kind.measurement, run.time_range).items():
        for t in times:
            if _first_hour(run.time_range) <= t and hour_of(t) < hour_of(moment):
                readings[(station, hour_of(t))] += 1
    got = _cells(run)
    assert got == pytest.approx({(s, h): 100 * n / (kind.devices(stations[s]) * 60 / kind.interval_s * 60)
                                 for (s, h), n in readings.items()})
    assert got, "the simulated day has readings of closed hours"


def _closed_days(run: PanelRun, moment: int) -> tuple[int, int]:
    """The Beijing days the per-day grids show: from the one holding the range's start to the last
    one ended by ``moment``."""
    return day_of(run.time_range.start_ms), day_of(moment)


def test_completeness_days_on_rollups_equal_the_raw_minutes_with_a_reading(simulated_day: SimulatedDay) -> None:
    """Each closed Beijing day's cell, from the daily rollups, is the raw minutes with a reading of that
    whole day over its 1,440 (the day under way is left to the per-hour grid)."""
    moment = MOMENTS[-1]
    (run,) = _run(simulated_day, "yizhan-completeness", "人数 Occupancy per day: minutes with a reading (%)", moment)
    first, today = _closed_days(run, moment)
    minutes: dict[tuple[str, int], set[int]] = defaultdict(set)
    for r in _visits(simulated_day, moment):
        if first <= r.time < today:
            minutes[(r.series[STATION], day_of(r.time))].add(r.time // 60_000)
    got = _cells(run)
    assert got == pytest.approx({k: 100 * len(v) / (completeness.OCCUPANCY_SHARE * 1440) for k, v in minutes.items()})
    assert got, "the simulated day began before today (Beijing)"
    assert all(t < today for _, t in got), "the day under way shows once it ends"


@pytest.mark.parametrize("kind", [completeness.CHARGERS, completeness.TEMPERATURE], ids=lambda k: k.name)
def test_completeness_device_days_on_rollups_equal_the_raw_readings(simulated_day: SimulatedDay,
                                                                    kind: completeness.Kind) -> None:
    moment = MOMENTS[-1]
    (run,) = _run(simulated_day, "yizhan-completeness", f"{kind.label} per day: readings received / expected (%)",
                  moment)
    first, today = _closed_days(run, moment)
    stations = REGISTRY.by_id
    readings: dict[tuple[str, int], int] = defaultdict(int)
    for station, times in _raw_times(simulated_day, kind.measurement, TimeRange(first, moment)).items():
        for t in times:
            if t < today:
                readings[(station, day_of(t))] += 1
    got = _cells(run)
    assert got == pytest.approx({(s, d): 100 * n / (kind.devices(stations[s]) * 60 / kind.interval_s * 1440)
                                 for (s, d), n in readings.items()})
    assert got, "the simulated day has readings of a closed day"
