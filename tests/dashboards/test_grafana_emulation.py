"""The tests' stand-in for Grafana (``grafana.py``) does what Grafana does, on known inputs."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from dashboards.builder import sum_of
from tests.dashboards.grafana import (
    Frame,
    TimeRange,
    VariableValue,
    format_interval,
    interpolate,
    interval_ms,
    panel_range,
    transform,
)
from tests.dashboards.panels import find, just_started

SHANGHAI = ZoneInfo("Asia/Shanghai")
DASHBOARD = {"timezone": "Asia/Shanghai", "time": {"from": "now-24h", "to": "now"}}


def _ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).timestamp() * 1000)


@pytest.mark.parametrize(("time_from", "start"), [
    (None, (2026, 11, 28, 10, 30)), ("15m", (2026, 11, 29, 10, 15)), ("now/d", (2026, 11, 29, 0, 0)),
    ("now/M", (2026, 11, 1, 0, 0)), ("now-6d/d", (2026, 11, 23, 0, 0)),
])
def test_panel_range_follows_grafana_relative_time_in_beijing_time(time_from: str | None,
                                                                   start: tuple[int, int, int, int, int]) -> None:
    now = _ms(2026, 11, 29, 10, 30)
    panel = {"timeFrom": time_from} if time_from else {}
    assert panel_range(DASHBOARD, panel, now) == TimeRange(_ms(*start), now)


def test_interval_is_rounded_and_never_below_the_minimum() -> None:
    day = TimeRange(0, 86_400_000)
    assert format_interval(interval_ms(day, max_data_points=1000, min_interval="10s")) == "1m"
    assert format_interval(interval_ms(TimeRange(0, 3_600_000), max_data_points=1000, min_interval="10s")) == "10s"
    assert format_interval(interval_ms(day, max_data_points=1000, min_interval="1h")) == "1h"


def test_interpolation_writes_macros_and_variables_like_grafana() -> None:
    variables = {"district": VariableValue("district", ["a", "b"], all=True, all_value=".*", multi=True),
                 "station": VariableValue("station", ["PL-KT-001"]),
                 "sensor": VariableValue("sensor", ["in.door", "out"], multi=True)}
    query = ('SELECT x FROM m WHERE $timeFilter AND "d" =~ /^$district$/ AND "s" =~ /^$station$/ '
             'AND "n" =~ /^$sensor$/ GROUP BY time($__interval, ${__to}ms) LIMIT $__interval_ms')
    assert interpolate(query, TimeRange(1000, 2000), 60_000, variables) == (
        'SELECT x FROM m WHERE time >= 1000ms and time <= 2000ms AND "d" =~ /^.*$/ AND "s" =~ /^PL-KT-001$/ '
        'AND "n" =~ /^(in\\.door|out)$/ GROUP BY time(1m, 2000ms) LIMIT 60000')
    with pytest.raises(AssertionError, match=r"\$__timeFilter"):
        interpolate("SELECT x FROM m WHERE $__timeFilter", TimeRange(0, 1), 1000, {})


def test_merge_group_by_and_calculations_combine_frames_like_grafana() -> None:
    frames: list[Frame] = [{"station": ["A", "B"], "received": [3, 5], "first": [10, 1], "end": [20, 9]},
              {"station": ["A"], "received": [4], "first": [11], "end": [21]},
              {"station": ["A", "B"], "pct": [90.0, 100.0]}]
    out = transform(frames, [
        {"id": "merge", "options": {}},
        {"id": "groupBy", "options": {"fields": {
            "station": {"operation": "groupby"}, "received": {"operation": "aggregate", "aggregations": ["sum"]},
            "first": {"operation": "aggregate", "aggregations": ["min"]},
            "end": {"operation": "aggregate", "aggregations": ["max"]},
            "pct": {"operation": "aggregate", "aggregations": ["max"]}}}},
        {"id": "calculateField", "options": {"mode": "binary", "timeSeries": False, "alias": "gaps", "binary": {
            "left": {"matcher": {"id": "byName", "options": "end (max)"}}, "operator": "-",
            "right": {"matcher": {"id": "byName", "options": "first (min)"}}}}},
        {"id": "sortBy", "options": {"sort": [{"field": "gaps", "desc": True}]}},
    ])
    assert out == [{"station": ["A", "B"], "received (sum)": [7, 5], "first (min)": [10, 1], "end (max)": [21, 9],
                    "pct (max)": [90.0, 100.0], "gaps": [11, 8]}]


def test_row_sum_adds_the_fields_a_frame_has_skipping_nulls_as_grafana_reduce_row_does() -> None:
    """sum_of: a field no frame has (the closed hours' query returned nothing) and a null cell add 0;
    a binary + would leave its field out."""
    frames: list[Frame] = [{"station": ["A", "B"], "v_open (sum)": [2, None]}]
    out = transform(frames, [sum_of(("v (sum)", "v_open (sum)"), "v").to_json()])
    assert out == [{"station": ["A", "B"], "v_open (sum)": [2, None], "v": [2, 0]}]
    both = transform([{"v (sum)": [5, None], "v_open (sum)": [2, 3]}], [sum_of(("v (sum)", "v_open (sum)"), "v").to_json()])
    assert both[0]["v"] == [7, 3]


def test_checks_of_today_panels_wait_out_the_first_minutes_of_the_day() -> None:
    trust = find("yizhan-completeness", "今日可信度 Can today's numbers be trusted? One row per station")
    assert just_started(trust, _ms(2026, 11, 29, 0, 2)) is not None
    assert just_started(trust, _ms(2026, 11, 29, 0, 4)) is None
    assert just_started(find("yizhan-overview", "在线驿站 Stations online"), _ms(2026, 11, 29, 0, 0)) is None
