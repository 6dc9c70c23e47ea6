"""Hourly rollups computed from the raw points of a window of hours (the definition: docs/rollups.md).

Everything is computed by InfluxDB and only the hourly results come back: plain aggregates
(``count``, ``sum``, ``max``, ``min`` with ``GROUP BY time(1h), *``) for the sums, extremes and seq
ranges; a count of one-minute buckets for the minutes with a reading; the counter steps (visits,
energy) as the hourly ``sum`` of ``non_negative_difference`` over the window and the hour before it.
A series whose first reading in the window has no reading in that hour before gets its first step
from its last reading up to ``MAX_AGE_MS`` before the window (one more, small, query). Reading the
raw points back instead would cost ingest about a microsecond of JSON decoding per point, a tenth
of what ingesting the point cost (``bench/rollup_cost.py`` measures both).

A window is ``[start, end)`` on hour boundaries, for all stations or some; every hour of it that
holds a reading of a series gets that series' rollup point (and the station's ``station_1h``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Final

from ingest.influxql import InfluxQL, Series
from ingest.lineprotocol import tag
from telemetry.contract import MAX_AGE_MS
from telemetry.storage import CHARGER_1H, HOUR_MS, OCCUPANCY_1H, STATION_1H, TEMPERATURE_1H, Tier, qualified

_LOOKBACK_MS: Final = HOUR_MS
"""The steps' subquery also reads this much before the window: most series' previous reading is there."""

_STATION_TAGS: Final = ("district", "kind", "station")


@dataclass(slots=True, frozen=True)
class _Spec:
    """How one raw measurement rolls up."""

    raw: str
    rollup: str
    aggregates: tuple[tuple[str, str, str], ...]  # (function, raw field, rollup field)
    means: tuple[tuple[str, str], ...]  # (rollup field, the sum it divides by readings)
    expected: int
    counter: str | None = None
    steps: str = ""  # the rollup field of the counter's steps
    fault: str | None = None  # a field whose minutes are counted as fault_minutes


SPECS: Final = (
    _Spec("occupancy", OCCUPANCY_1H, (("max", "people", "people_max"), ("sum", "people", "people_sum")),
          (("people_mean", "people_sum"),), 60, counter="entries", steps="visits"),
    _Spec("charger", CHARGER_1H,
          (("max", "sockets_in_use", "sockets_in_use_max"), ("sum", "sockets_in_use", "sockets_in_use_sum"),
           ("max", "sockets_total", "sockets_total"), ("max", "power_w", "power_w_max"),
           ("sum", "power_w", "power_w_sum")),
          (("sockets_in_use_mean", "sockets_in_use_sum"), ("power_w_mean", "power_w_sum")), 120,
          counter="energy_wh", steps="energy_wh", fault="fault"),
    _Spec("temperature", TEMPERATURE_1H,
          (("min", "celsius", "celsius_min"), ("max", "celsius", "celsius_max"), ("sum", "celsius", "celsius_sum")),
          (("celsius_mean", "celsius_sum"),), 60),
)

FLOAT_FIELDS: Final = frozenset({"energy_wh", "power_w_max", "power_w_sum", "power_w_mean", "sockets_in_use_mean",
                                 "people_mean", "celsius_min", "celsius_max", "celsius_sum", "celsius_mean"})
"""Rollup fields stored as floats; every other one is an integer."""


@dataclass(slots=True, frozen=True)
class Window:
    """The hours ``[start_ms, end_ms)`` of some stations (None: all)."""

    start_ms: int
    end_ms: int
    stations: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.start_ms % HOUR_MS or self.end_ms % HOUR_MS or self.end_ms <= self.start_ms:
            raise ValueError(f"a window is whole hours, start before end: {self.start_ms}..{self.end_ms}")

    def where(self, start_ms: int | None = None, end_ms: int | None = None,
              stations: Collection[str] | None = None) -> str:
        """The window's time range (or another one) and stations (or others)."""
        start = self.start_ms if start_ms is None else start_ms
        end = self.end_ms if end_ms is None else end_ms
        return f"time >= {start}ms AND time < {end}ms{station_clause(stations or self.stations)}"

    @property
    def hours(self) -> str:
        """Only the time range: for an outer query, whose subquery has selected the stations."""
        return f"time >= {self.start_ms}ms AND time < {self.end_ms}ms"


def station_clause(stations: Collection[str] | None) -> str:
    if not stations:
        return ""
    alternatives = "|".join(re.sub(r"([^A-Za-z0-9_])", r"\\\1", s) for s in sorted(stations))
    return f" AND station =~ /^(?:{alternatives})$/"


@dataclass(slots=True, frozen=True)
class RollupPoint:
    """One rollup point: a measurement of the ``rollup`` tier, a series' tags, an hour, its fields."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    hour_ms: int
    fields: tuple[tuple[str, int | float], ...]

    @property
    def station(self) -> str:
        return dict(self.tags)["station"]

    def line(self) -> str:
        tags = "".join(f",{k}={tag(v)}" for k, v in self.tags)
        fields = ",".join(f"{k}={float(v)!r}" if k in FLOAT_FIELDS else f"{k}={int(v)}i" for k, v in self.fields)
        return f"{self.measurement}{tags} {fields} {self.hour_ms}"


# --- the statements ---------------------------------------------------------------------------


def _aggregates(spec: _Spec, w: Window) -> str:
    selects = ", ".join(["count(seq) AS readings", "min(seq) AS seq_first", "max(seq) AS seq_last",
                         *(f'{fn}("{field}") AS {alias}' for fn, field, alias in spec.aggregates)])
    return f"SELECT {selects} FROM {qualified(Tier.RAW, spec.raw)} WHERE {w.where()} GROUP BY time(1h), * fill(none)"


def _minutes(spec: _Spec, field: str, alias: str, w: Window) -> str:
    inner = (f'SELECT count("{field}") AS c FROM {qualified(Tier.RAW, spec.raw)} WHERE {w.where()} '
             f"GROUP BY time(1m), * fill(none)")
    return f"SELECT count(c) AS {alias} FROM ({inner}) WHERE {w.hours} GROUP BY time(1h), * fill(none)"


def _steps(spec: _Spec, w: Window) -> str:
    inner = (f'SELECT non_negative_difference("{spec.counter}") AS d FROM {qualified(Tier.RAW, spec.raw)} '
             f"WHERE {w.where(start_ms=w.start_ms - _LOOKBACK_MS)} GROUP BY *")
    # No time range outside: InfluxDB 1.x would narrow the subquery's to it, and lose the steps from
    # the hour before the window. The steps of that hour come back too; they are not in the window.
    return f"SELECT sum(d) AS steps FROM ({inner}) GROUP BY time(1h), * fill(none)"


def _first(spec: _Spec, w: Window) -> str:
    return f'SELECT first("{spec.counter}") AS v FROM {qualified(Tier.RAW, spec.raw)} WHERE {w.where()} GROUP BY *'


def _last(spec: _Spec, w: Window, start_ms: int, end_ms: int, stations: Collection[str] | None = None) -> str:
    return (f'SELECT last("{spec.counter}") AS v FROM {qualified(Tier.RAW, spec.raw)} '
            f"WHERE {w.where(start_ms, end_ms, stations)} GROUP BY *")


def first_counter_readings(w: Window) -> list[str]:
    """Each counter series' first reading in the window: whose step a late reading before it changes."""
    return [_first(spec, w) for spec in SPECS if spec.counter]


def _statements(spec: _Spec, w: Window) -> list[str]:
    out = [_aggregates(spec, w), _minutes(spec, "seq", "minutes", w)]
    if spec.fault:
        out.append(_minutes(spec, spec.fault, "fault_minutes", w))
    if spec.counter:
        out += [_steps(spec, w), _first(spec, w), _last(spec, w, w.start_ms - _LOOKBACK_MS, w.start_ms)]
    return out


# --- from the results to points ---------------------------------------------------------------

_Key = tuple[tuple[tuple[str, str], ...], int]  # (tags, hour)


def _tags(series: Series) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in series.tags.items() if v))


def _hourly(results: list[Series], column: str) -> Iterator[tuple[_Key, Any]]:
    for series in results:
        tags = _tags(series)
        for row in series.rows:
            if row.get(column) is not None:
                yield (tags, int(row["time"])), row[column]


def _selected(results: list[Series]) -> dict[tuple[tuple[str, str], ...], tuple[int, Any]]:
    """A selector's one row per series: tags -> (time, value)."""
    return {_tags(s): (int(s.rows[0]["time"]), s.rows[0]["v"]) for s in results if s.rows}


class _Measurement:
    """The rows of one spec's statements merged into one field dict per series and hour."""

    def __init__(self, spec: _Spec, results: list[list[Series]]) -> None:
        self.spec = spec
        self.rows: dict[_Key, dict[str, Any]] = {}
        aggregates, minutes, *rest = results
        for series in aggregates:
            tags = _tags(series)
            for row in series.rows:
                if row.get("readings"):
                    self.rows[tags, int(row["time"])] = {k: v for k, v in row.items() if k != "time"}
        self._merge(minutes, "minutes", "minutes")
        if spec.fault:
            self._merge(rest.pop(0), "fault_minutes", "fault_minutes")
        if spec.counter:
            self._merge(rest[0], "steps", spec.steps)
            self.first, self.before = _selected(rest[1]), _selected(rest[2])

    def _merge(self, results: list[Series], column: str, name: str) -> None:
        for key, value in _hourly(results, column):
            if key in self.rows:
                self.rows[key][name] = value

    def without_previous(self) -> dict[tuple[tuple[str, str], ...], tuple[int, Any]]:
        """Series whose first reading of the window has no reading in the lookback before it."""
        if not self.spec.counter:
            return {}
        return {tags: first for tags, first in self.first.items() if tags not in self.before}

    def add_first_steps(self, previous: dict[tuple[tuple[str, str], ...], tuple[int, Any]]) -> None:
        """The first step of the series :meth:`without_previous`, from their last reading further back."""
        for tags, (first_ts, first_value) in self.without_previous().items():
            if tags not in previous:
                continue
            prev_ts, prev_value = previous[tags]
            hour = first_ts - first_ts % HOUR_MS
            row = self.rows.get((tags, hour))
            if row is not None and prev_ts >= hour - MAX_AGE_MS and first_value > prev_value:
                row[self.spec.steps] = row.get(self.spec.steps, 0) + (first_value - prev_value)

    def points(self) -> Iterator[RollupPoint]:
        spec = self.spec
        for (tags, hour), row in sorted(self.rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            readings = int(row["readings"])
            fields: dict[str, int | float] = {"readings": readings, "minutes": int(row.get("minutes") or 0),
                                              "expected": spec.expected}
            for _, _, alias in spec.aggregates:
                fields[alias] = row[alias]
            for mean, total in spec.means:
                fields[mean] = float(row[total]) / readings
            if spec.counter:
                fields[spec.steps] = row.get(spec.steps) or 0
            if spec.fault:
                fields["fault_minutes"] = int(row.get("fault_minutes") or 0)
            yield RollupPoint(spec.rollup, tags, hour, tuple(sorted(fields.items())))


def _station_points(measurements: list[_Measurement]) -> Iterator[RollupPoint]:
    stations: dict[_Key, list[int]] = {}
    for m in measurements:
        for (tags, hour), row in m.rows.items():
            key = (tuple((k, v) for k, v in tags if k in _STATION_TAGS), hour)
            acc = stations.setdefault(key, [row["seq_first"], row["seq_last"], 0])
            acc[0], acc[1] = min(acc[0], row["seq_first"]), max(acc[1], row["seq_last"])
            acc[2] += int(row["readings"])
    for (tags, hour), (first, last, count) in sorted(stations.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        fields = (("readings", count), ("seq_count", count), ("seq_first", first), ("seq_last", last))
        yield RollupPoint(STATION_1H, tags, hour, fields)


async def compute(ql: InfluxQL, window: Window) -> list[RollupPoint]:
    """The rollup points of every series and hour of ``window`` that holds a reading."""
    statements = [_statements(spec, window) for spec in SPECS]
    flat = await ql.query([s for group in statements for s in group])
    measurements, at = [], 0
    for spec, group in zip(SPECS, statements, strict=True):
        measurements.append(_Measurement(spec, flat[at:at + len(group)]))
        at += len(group)
    await _first_steps(ql, window, measurements)
    points = [p for m in measurements for p in m.points()]
    return points + list(_station_points(measurements))


async def _first_steps(ql: InfluxQL, window: Window, measurements: list[_Measurement]) -> None:
    """Look further back (up to ``MAX_AGE_MS``) for series with no reading just before the window."""
    wanted = [(m, m.without_previous()) for m in measurements]
    wanted = [(m, series) for m, series in wanted if series]
    if not wanted:
        return
    start, end = window.start_ms - MAX_AGE_MS, window.start_ms - _LOOKBACK_MS
    statements = [_last(m.spec, window, start, end, {dict(tags)["station"] for tags in series})
                  for m, series in wanted]
    for (m, _), results in zip(wanted, await ql.query(statements), strict=True):
        m.add_first_steps(_selected(results))
