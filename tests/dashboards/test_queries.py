"""Every panel and alert query, run on a simulated day in a real InfluxDB 1.x as Grafana runs them.

Macros and variables are substituted as Grafana does (``grafana.py``); each query must return rows
with the columns its panel uses, each panel's transformations must leave the fields its config
names, and the numbers that matter are checked against the raw points of the same range.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from dashboards import alerts, rollups, seqgaps
from dashboards.completeness import CHARGERS, TEMPERATURE, TRUST_COLUMNS
from tests.dashboards.conftest import COLD, DARK, FAULTY, LOSSY, SKEWED, STATIONS, SimulatedDay
from tests.dashboards.grafana import Frame, TimeRange
from tests.dashboards.panels import (
    REGISTRY,
    PanelCase,
    PanelRun,
    columns,
    display_names,
    evaluate,
    find,
    just_started,
    panel_cases,
    referenced_fields,
    referenced_queries,
    run_all,
    run_panel,
    run_rule,
    target_ids,
)
from tests.rig import wait_for

CASES = panel_cases()
_RUNS: dict[str, list[PanelRun]] = {}


def runs(day: SimulatedDay, case: PanelCase) -> list[PanelRun]:
    """The panel run under every variable assignment, once per session.

    A "today" or "this month" panel in the first minutes of its day or month (Beijing time) has
    no readings yet: its checks are skipped then, and only then.
    """
    if reason := just_started(case):
        pytest.skip(reason)
    if case.id not in _RUNS:
        _RUNS[case.id] = run_all(day, case)
    return _RUNS[case.id]


def _targets() -> list[Any]:
    return [pytest.param(case, i, id=f"{case.id} / {ref}")
            for case in CASES for i, ref in enumerate(target_ids(case))]


@pytest.mark.parametrize(("case", "index"), _targets())
def test_panel_query_returns_rows_with_the_columns_its_panel_uses(simulated_day: SimulatedDay, case: PanelCase,
                                                                  index: int) -> None:
    query = case.panel.queries[index]
    if rollups.CLOSED in query.text and (reason := just_started(case, minutes=62)):
        pytest.skip(f"{reason}: no hour of it has closed and been rolled up yet")
    done = runs(simulated_day, case)
    with_rows = [run for run in done if run.results[index].rows]
    assert with_rows, f"{case.id}, query {target_ids(case)[index]} returned nothing: {done[0].texts[index]}"
    for run in with_rows:
        missing = set(query.columns) - columns(run.results[index])
        assert not missing, f"{case.id}: no {sorted(missing)} in {sorted(columns(run.results[index]))}"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_panel_fields_after_transformations_are_the_ones_its_config_names(simulated_day: SimulatedDay,
                                                                         case: PanelCase) -> None:
    assert referenced_queries(case.json) <= set(target_ids(case)), f"{case.id}: an override names a missing query"
    wanted = referenced_fields(case.json)
    seen: list[set[str]] = []
    for run in runs(simulated_day, case):
        frames = [f for f in run.frames() if any(f.values()) and len(next(iter(f.values())))]
        names = display_names(frames)
        seen.append(names)
        if frames and wanted <= names:
            return
    raise AssertionError(f"{case.id}: no run gives rows with the fields {sorted(wanted)}; fields seen: {seen}")


# --- what the numbers say, against the raw points -------------------------------------------------

def _one(case_key: tuple[str, str], day: SimulatedDay, **variables: str) -> PanelRun:
    """The panel's run for the given single values (station=...), or its only run."""
    chosen = [r for r in runs(day, find(*case_key)) if all(r.variable(k) == v for k, v in variables.items())]
    assert len(chosen) == 1, f"{case_key}: {len(chosen)} runs for {variables}"
    return chosen[0]


def _rows(frames: list[Frame]) -> list[dict[str, Any]]:
    return [dict(zip(f, values, strict=True)) for f in frames for values in zip(*f.values(), strict=True)]


def _value(run: PanelRun, index: int = 0) -> Any:
    series = run.results[index].series
    assert len(series) == 1, series
    assert len(series[0]["values"]) == 1, series
    return series[0]["values"][0][1]


def _raw(day: SimulatedDay, field: str, measurement: str, window: TimeRange, where: str = "") -> dict[str, list[Any]]:
    """Raw values per station over the window, oldest first."""
    extra = f" AND {where}" if where else ""
    series = day.influxd.query(f'SELECT "{field}" FROM "{measurement}" WHERE time >= {window.start_ms}ms AND '
                               f'time <= {window.end_ms}ms{extra} GROUP BY "station"', day.db)
    return {s["tags"]["station"]: [v[1] for v in s["values"] if v[1] is not None] for s in series}


def _latest_online(day: SimulatedDay, window: TimeRange) -> dict[str, bool]:
    last = {}
    for station, values in _raw(day, "online", "station_status", window).items():
        last[station] = bool(values[-1])
    return last


def test_overview_counts_stations_online_and_offline_by_their_latest_status(simulated_day: SimulatedDay) -> None:
    online = _one(("yizhan-overview", "在线驿站 Stations online"), simulated_day)
    offline = _one(("yizhan-overview", "离线驿站 Stations offline"), simulated_day)
    latest = _latest_online(simulated_day, online.time_range)
    assert _value(online) == sum(latest.values())
    assert latest[DARK] is False, "the station that lost its network for good shows offline"
    latest = _latest_online(simulated_day, offline.time_range)  # run a moment later: statuses may have come
    assert _value(offline) == len(latest) - sum(latest.values())


def test_overview_lists_exactly_the_silent_station_and_for_how_long(simulated_day: SimulatedDay) -> None:
    run = _one(("yizhan-overview", "超过10分钟无数据 Stations silent for more than 10 minutes"), simulated_day)
    rows = _rows(run.frames())
    assert [r["station"] for r in rows] == [DARK]
    last = max(int(str(r["time"])) for r in simulated_day.rows(
        f'SELECT "seq" FROM "occupancy" WHERE "station" = \'{DARK}\' AND time <= {run.time_range.end_ms}ms'))
    minutes = (run.time_range.end_ms - last) / 60_000
    assert minutes - 1.5 <= rows[0]["silent_minutes"] <= minutes + 1, (rows, minutes)


def test_overview_coldest_station_is_the_one_whose_heating_failed(simulated_day: SimulatedDay) -> None:
    rows = _rows(_one(("yizhan-overview", "最冷驿站 Coldest stations (indoor, now)"), simulated_day).frames())
    assert rows[0]["station"] == COLD, rows
    assert rows[0]["celsius"] < 10, rows
    assert [r["celsius"] for r in rows] == sorted(r["celsius"] for r in rows)


def test_overview_sockets_add_up_over_the_chargers_heard_from(simulated_day: SimulatedDay) -> None:
    run = _one(("yizhan-overview", "充电插座 Charger sockets in use / total"), simulated_day)
    in_use, total = run.results[0].series[0]["values"][0][1:]
    heard = {s.id for s in REGISTRY.reporting if s.id in STATIONS} - {DARK}
    assert total == sum(c.sockets for s in REGISTRY.reporting if s.id in heard for c in s.chargers)
    assert 0 <= in_use <= total


def test_overview_visits_are_the_door_counters_increments(simulated_day: SimulatedDay) -> None:
    run = _one(("yizhan-overview", "本月人次 Visits this month, per station"), simulated_day)
    visits = {r["station"]: r["visits"] for r in _rows(run.frames())}
    counters = _raw(simulated_day, "entries", "occupancy", run.time_range)
    # the step from the last reading before the month to its first belongs to the month (docs/rollups.md)
    before = simulated_day.influxd.query(f'SELECT last("entries") FROM "occupancy" WHERE time < '
                                         f'{run.time_range.start_ms}ms GROUP BY "station"', simulated_day.db)
    previous = {s["tags"]["station"]: [s["values"][0][1]] for s in before}
    expected = {s: sum(max(0, b - a) for a, b in itertools.pairwise(previous.get(s, []) + v))
                for s, v in counters.items()}
    assert visits == expected
    assert all(v > 0 for v in visits.values())


def test_station_seq_gaps_are_the_readings_lost_with_the_full_buffer(simulated_day: SimulatedDay) -> None:
    run = _one(("yizhan-station", "序号缺口 Open seq gaps"), simulated_day, station=LOSSY)
    gaps = _rows(run.frames())[0][seqgaps.GAPS]
    seqs = [v for m in seqgaps.MEASUREMENTS
            for v in _raw(simulated_day, "seq", m, run.time_range, f'"station" = \'{LOSSY}\'').get(LOSSY, [])]
    assert gaps == max(seqs) - min(seqs) + 1 - len(seqs)
    # The device counts as dropped what left its full buffer, including readings whose PUBACK the
    # network loss took but which had reached the broker: the gaps still open are at most that, and
    # short of it by those in flight when the loss began (about a keepalive's worth of readings: 6 of
    # 52 in one CI run, within 10% in earlier ones).
    dropped = _raw(simulated_day, "dropped", "station_status", run.time_range, f'"station" = \'{LOSSY}\'')[LOSSY]
    assert 0.8 * dropped[-1] <= gaps <= dropped[-1], "a 1 h network loss with a 200-reading buffer loses readings"
    others = _one(("yizhan-station", "序号缺口 Open seq gaps"), simulated_day, station=COLD)
    assert _rows(others.frames())[0][seqgaps.GAPS] == 0


def test_station_faults_show_only_the_faulted_charger(simulated_day: SimulatedDay) -> None:
    case = ("yizhan-station", "充电桩故障 Charger faults")
    faulted = _one(case, simulated_day, station=FAULTY[0])
    assert {name for f in faulted.frames() for name in f if name != "Time"} == {FAULTY[1]}
    assert not _one(case, simulated_day, station=COLD).results[0].rows


def _minutes(window: TimeRange) -> int:
    return window.end_ms // 60_000 - window.start_ms // 60_000 + 1


def test_completeness_table_matches_the_raw_readings_of_today(simulated_day: SimulatedDay) -> None:
    run = _one(("yizhan-completeness", "今日可信度 Can today's numbers be trusted? One row per station"),
               simulated_day)
    table = {r["驿站 station"]: r for r in _rows(run.frames())}
    assert list(next(iter(table.values()))) == list(TRUST_COLUMNS.values())
    minutes = _minutes(run.time_range)
    stations = {s.id: s for s in REGISTRY.reporting}
    received = {m: _raw(simulated_day, "seq", m, run.time_range) for m in seqgaps.MEASUREMENTS}
    for station, row in table.items():
        seqs = [v for m in seqgaps.MEASUREMENTS for v in received[m].get(station, [])]
        assert row["收到 received"] == len(seqs)
        assert row["序号缺口 open seq gaps"] == max(seqs) - min(seqs) + 1 - len(seqs)
        for kind, column in ((CHARGERS, "充电 chargers %"), (TEMPERATURE, "温度 temperature %")):
            expected = 100 * len(received[kind.measurement].get(station, [])) / (
                minutes * kind.devices(stations[station]) * 60 / kind.interval_s)
            assert row[column] == pytest.approx(expected), (station, column)
        assert 0 < row["人数 occupancy %"] <= 100


def test_completeness_hours_are_below_expected_while_a_sensor_dropped_out(simulated_day: SimulatedDay) -> None:
    run = _one(("yizhan-completeness", "温度 Temperature: readings received / expected (%)"), simulated_day)
    by_station = {next(n for n in f if n != "Time"): f for f in run.frames()}
    values = [v for v in by_station[COLD][COLD] if v is not None]
    assert min(values) <= 55, "two hours with only the indoor sensor of two answering"
    assert max(values) == pytest.approx(100)
    assert all(v <= 100 + 1e-9 for f in run.frames() for n, col in f.items() if n != "Time" for v in col if v)


def test_completeness_shows_the_clock_that_runs_ahead(simulated_day: SimulatedDay) -> None:
    """Live readings of the station whose clock is 2 minutes ahead arrive "before" they are taken."""
    case = find("yizhan-completeness", "时钟 Minimum lag per station (below 0: the clock runs ahead)")
    run = wait_for(lambda: _ahead(run_panel(simulated_day, case, runs(simulated_day, case)[0].variables)),
                   timeout=60, interval=1, what=f"a negative lag from {SKEWED}")
    assert run is not None  # for the type checker: wait_for returns only what is true
    lags = {next(n for n in f if n != "Time"): [v for v in f[next(n for n in f if n != "Time")] if v is not None]
            for f in run.frames()}
    assert min(lags[SKEWED]) < -60_000
    assert all(min(v) > 0 for s, v in lags.items() if s != SKEWED), lags


def _ahead(run: PanelRun) -> PanelRun | None:
    for frame in run.frames():
        name = next(n for n in frame if n != "Time")
        if name == SKEWED and any(v is not None and v < 0 for v in frame[name]):
            return run
    return None


# --- alert rules -----------------------------------------------------------------------------------

EXPECTED_FIRING: dict[str, set[tuple[str, ...]]] = {
    "yizhan-station-offline": {(DARK, "huating")},
    "yizhan-heating-failure": {(COLD, "kongtong")},
    "yizhan-charger-fault": {(FAULTY[1], "kongtong", FAULTY[0])},
    "yizhan-pipeline-down": set(),
    "yizhan-reject-rate": set(),
    "yizhan-ingest-away": set(),
}


@pytest.mark.parametrize("rule", alerts.RULES, ids=lambda r: r.uid)
def test_alert_rule_query_returns_series_and_fires_for_the_faults_simulated(simulated_day: SimulatedDay,
                                                                           rule: alerts.AlertRule) -> None:
    text, series = run_rule(simulated_day, rule)
    assert series, f"alert {rule.uid}: its query returned nothing: {text}"
    assert all(set(rule.query.columns) <= set(s["columns"]) for s in series)
    states = evaluate(rule, series)
    assert states, f"alert {rule.uid}: no series has a value: {series}"
    firing = {tuple(sorted(labels, key=str)) for labels, on in states.items() if on}
    assert firing == {tuple(sorted(k, key=str)) for k in EXPECTED_FIRING[rule.uid]}, states
