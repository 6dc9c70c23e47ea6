"""Hourly rollups computed from the raw points of a window of hours (the definition: docs/rollups.md).

Everything is computed by InfluxDB and only the hourly results come back: plain aggregates
(``count``, ``sum``, ``max``, ``min`` with ``GROUP BY time(1h), *``) for the sums, extremes and seq
ranges; a count of one-minute buckets for the minutes with a reading; the counter steps (visits,
energy) as the hourly ``sum`` of ``non_negative_difference`` over the window and the hour before it.
A series whose first reading in the window has no reading in that hour before gets its first step
from its last reading up to ``MAX_AGE_MS`` before the window (one more, small, query). Reading the
raw points back instead would cost ingest about a microsecond of decoding per point, a tenth of
what ingesting the point cost (``bench/rollup_cost.py`` measures both). The rebuild, where the
server's CPU is the limit, does just that (``compute(..., columns=True)``): the ``seq``, counter and
fault columns read back as MessagePack, and the readings, seq range, minutes and steps counted by
:func:`hourly_columns` with the same rules.

A window is ``[start, end)`` on hour boundaries, for all stations or some; every hour of it that
holds a reading of a series gets that series' rollup point (and the station's ``station_1h``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ingest.influxql import InfluxQL, Table
from ingest.lineprotocol import tag
from telemetry.contract import MAX_AGE_MS
from telemetry.storage import CHARGER_1H, HOUR_MS, OCCUPANCY_1H, STATION_1H, TEMPERATURE_1H, Tier, qualified

_LOOKBACK_MS: Final = HOUR_MS
"""The steps' subquery also reads this much before the window: most series' previous reading is there."""

_T = TypeVar("_T")
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
    return _station_regex(stations if isinstance(stations, frozenset) else frozenset(stations))


@functools.lru_cache(maxsize=64)
def _station_regex(stations: frozenset[str]) -> str:
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


def _aggregates(spec: _Spec, w: Window, *, seq: bool = True) -> str:
    seqs = ["count(seq) AS readings", "min(seq) AS seq_first", "max(seq) AS seq_last"] if seq else []
    selects = ", ".join([*seqs, *(f'{fn}("{field}") AS {alias}' for fn, field, alias in spec.aggregates)])
    return f"SELECT {selects} FROM {qualified(Tier.RAW, spec.raw)} WHERE {w.where()} GROUP BY time(1h), * fill(none)"


def _minutes(spec: _Spec, field: str, alias: str, w: Window) -> str:
    inner = (f'SELECT count("{field}") AS c FROM {qualified(Tier.RAW, spec.raw)} WHERE {w.where()} '
             f"GROUP BY time(1m), * fill(none)")
    return f"SELECT count(c) AS {alias} FROM ({inner}) WHERE {w.hours} GROUP BY time(1h), * fill(none)"


def _steps(spec: _Spec, w: Window) -> str:
    inner = (f'SELECT non_negative_difference("{spec.counter}") AS d FROM {qualified(Tier.RAW, spec.raw)} '
             f"WHERE {w.where(start_ms=w.start_ms - _LOOKBACK_MS)} GROUP BY *")
    # The outer range is the subquery's, hour before the window included: InfluxDB 1.x narrows the
    # subquery's range to the outer one (a window-only outer range loses the step across the window's
    # start), and without any outer range it iterates hour buckets from the year 1677. The hour
    # before the window comes back too; it is not in the window, so it is dropped.
    lookback = f"time >= {w.start_ms - _LOOKBACK_MS}ms AND time < {w.end_ms}ms"
    return f"SELECT sum(d) AS steps FROM ({inner}) WHERE {lookback} GROUP BY time(1h), * fill(none)"


def _first(spec: _Spec, w: Window, stations: Collection[str] | None = None) -> str:
    return (f'SELECT first("{spec.counter}") AS v FROM {qualified(Tier.RAW, spec.raw)} '
            f"WHERE {w.where(stations=stations)} GROUP BY *")


def _last(spec: _Spec, w: Window, start_ms: int, end_ms: int, stations: Collection[str] | None = None) -> str:
    return (f'SELECT last("{spec.counter}") AS v FROM {qualified(Tier.RAW, spec.raw)} '
            f"WHERE {w.where(start_ms, end_ms, stations)} GROUP BY *")


def first_counter_readings(w: Window) -> list[str]:
    """Each counter series' first reading in the window: whose step a late reading before it changes."""
    return [_first(spec, w) for spec in SPECS if spec.counter]


def _columns(spec: _Spec, w: Window) -> str:
    names = ", ".join(f'"{name}"' for name in ("seq", spec.counter, spec.fault) if name)
    return f"SELECT {names} FROM {qualified(Tier.RAW, spec.raw)} WHERE {w.where()} GROUP BY *"


def _column_statements(spec: _Spec, w: Window) -> list[str]:
    """The aggregates but seq's, the raw columns the rest is counted from, the counter before."""
    out = [_aggregates(spec, w, seq=False), _columns(spec, w)]
    if spec.counter:
        out.append(_last(spec, w, w.start_ms - _LOOKBACK_MS, w.start_ms))
    return out


def _statements(spec: _Spec, w: Window) -> list[str]:
    out = [_aggregates(spec, w), _minutes(spec, "seq", "minutes", w)]
    if spec.fault:
        out.append(_minutes(spec, spec.fault, "fault_minutes", w))
    if spec.counter:
        out += [_steps(spec, w), _last(spec, w, w.start_ms - _LOOKBACK_MS, w.start_ms)]
    return out


# --- from the results to points ---------------------------------------------------------------

_Key = tuple[tuple[tuple[str, str], ...], int]  # (tags, hour)


def series_tags(table: Table) -> tuple[tuple[str, str], ...]:
    """The series' tags sorted by key, without empty ones (a rollup point's tags)."""
    return tuple((k, v) for k, v in table.tags.items() if v)


def _hourly(results: list[Table], column: str) -> Iterator[tuple[_Key, Any]]:
    for table in results:
        tags, at = series_tags(table), table.columns.index(column)
        for values in table.values:
            if values[at] is not None:
                yield (tags, int(values[0])), values[at]


def _selected(results: list[Table]) -> dict[tuple[tuple[str, str], ...], tuple[int, Any]]:
    """A selector's one row per series: tags -> (time, value)."""
    return {series_tags(t): (int(t.values[0][0]), t.values[0][t.columns.index("v")]) for t in results if t.values}


class _Measurement:
    """The rows of one spec's statements merged into one field dict per series and hour."""

    def __init__(self, spec: _Spec, aggregates: list[Table]) -> None:
        self.spec = spec
        self.rows: dict[_Key, dict[str, Any]] = {}
        self.before: dict[tuple[tuple[str, str], ...], tuple[int, Any]] = {}
        for table in aggregates:
            tags, names, readings = series_tags(table), table.columns[1:], table.columns.index("readings")
            for values in table.values:
                if values[readings]:
                    self.rows[tags, int(values[0])] = dict(zip(names, values[1:], strict=True))

    @classmethod
    def from_influxdb(cls, spec: _Spec, results: list[list[Table]]) -> _Measurement:
        """Minutes and steps computed by InfluxDB (:func:`_statements`)."""
        aggregates, minutes, *rest = results
        m = cls(spec, aggregates)
        m._merge(minutes, "minutes", "minutes")
        if spec.fault:
            m._merge(rest.pop(0), "fault_minutes", "fault_minutes")
        if spec.counter:
            m._merge(rest[0], "steps", spec.steps)
            m.before = _selected(rest[1])
        return m

    @classmethod
    def from_columns(cls, spec: _Spec, results: list[list[Table]]) -> _Measurement:
        """Readings, seq range, minutes and steps counted here from the raw columns read back
        (:func:`_column_statements`), the other aggregates by InfluxDB."""
        aggregates, columns, *before = results
        m = cls(spec, [])
        if spec.counter:
            m.before = _selected(before[0])
        for table in columns:
            m._count(table)
        for table in aggregates:
            tags, names = series_tags(table), table.columns[1:]
            for values in table.values:
                if (mine := m.rows.get((tags, int(values[0])))) is not None:
                    mine.update(zip(names, values[1:], strict=True))
        return m

    def _count(self, table: Table) -> None:
        tags = series_tags(table)
        spec, at = self.spec, table.columns.index
        previous = self.before.get(tags, (0, None))[1]
        hourly = hourly_columns(table.values, at(spec.counter) if spec.counter else 0,
                                at(spec.fault) if spec.fault else 0, previous)
        for hour, (minutes, fault_minutes, steps, readings, seq_first, seq_last) in hourly.items():
            row = self.rows[tags, hour] = {"readings": readings, "seq_first": seq_first, "seq_last": seq_last,
                                           "minutes": minutes}
            if spec.fault:
                row["fault_minutes"] = fault_minutes
            if spec.counter:
                row[spec.steps] = steps

    def _merge(self, results: list[Table], column: str, name: str) -> None:
        for key, value in _hourly(results, column):
            if key in self.rows:
                self.rows[key][name] = value

    def without_previous(self) -> set[tuple[tuple[str, str], ...]]:
        """Series of the window with no reading of the counter in the lookback before it."""
        if not self.spec.counter:
            return set()
        return {tags for tags, _ in self.rows} - self.before.keys()

    def add_first_steps(self, first: dict[tuple[tuple[str, str], ...], tuple[int, Any]],
                        previous: dict[tuple[tuple[str, str], ...], tuple[int, Any]]) -> None:
        """The first step of the series :meth:`without_previous`: their first counter reading of the
        window against their last one further back."""
        for tags, (first_ts, first_value) in first.items():
            if tags not in previous or tags in self.before:
                continue
            prev_ts, prev_value = previous[tags]
            hour = first_ts - first_ts % HOUR_MS
            row = self.rows.get((tags, hour))
            if row is not None and prev_ts >= hour - MAX_AGE_MS and first_value > prev_value:
                row[self.spec.steps] = row.get(self.spec.steps, 0) + (first_value - prev_value)

    def points(self) -> Iterator[RollupPoint]:
        spec = self.spec
        for (tags, hour), row in self.rows.items():
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


def hourly_columns(values: list[list[Any]], counter: int, fault: int, previous: float | None) -> \
        dict[int, list[Any]]:
    """Per hour ``[minutes, fault minutes, counter steps, readings, min seq, max seq]`` from one
    series' raw rows in time order (``[time, seq, ...]``; ``counter``, ``fault``: their columns, 0 for
    none), ``previous`` the counter's reading before the first row (or None). The definition, as
    InfluxDB computes it in :func:`_aggregates`, :func:`_minutes` and :func:`_steps`: a minute counts
    once, a step is ``max(0, value - previous value)``. Every raw point has a seq (the contract's)."""
    out: dict[int, list[Any]] = {}
    acc: list[Any] = []
    minute = fault_minute = -1
    for row in values:
        t, seq = row[0], row[1]
        if (m := t // 60_000) != minute:
            minute = m
            if (hour := t - t % HOUR_MS) not in out:
                acc = out[hour] = [0, 0, 0, 0, seq, seq]
            acc[0] += 1
        acc[3] += 1
        if seq < acc[4]:
            acc[4] = seq
        elif seq > acc[5]:
            acc[5] = seq
        if fault and row[fault] is not None and m != fault_minute:
            fault_minute = m
            acc[1] += 1
        if counter and (value := row[counter]) is not None:
            if previous is not None and value > previous:
                acc[2] += value - previous
            previous = value
    return out


def _station_points(measurements: list[_Measurement]) -> Iterator[RollupPoint]:
    stations: dict[_Key, list[int]] = {}
    for m in measurements:
        for (tags, hour), row in m.rows.items():
            key = (tuple((k, v) for k, v in tags if k in _STATION_TAGS), hour)
            acc = stations.setdefault(key, [row["seq_first"], row["seq_last"], 0])
            acc[0], acc[1] = min(acc[0], row["seq_first"]), max(acc[1], row["seq_last"])
            acc[2] += int(row["readings"])
    for (tags, hour), (first, last, count) in stations.items():
        fields = (("readings", count), ("seq_count", count), ("seq_first", first), ("seq_last", last))
        yield RollupPoint(STATION_1H, tags, hour, fields)


async def compute(ql: InfluxQL, window: Window, *, columns: bool = False) -> list[RollupPoint]:
    """The rollup points of every series and hour of ``window`` that holds a reading.

    Args:
        columns: count the minutes and steps here from the raw columns read back (MessagePack), not
            in InfluxDB: less of the server's CPU per point, more of this process's (the rebuild's way).
    """
    measurements = await (_by_columns(ql, window) if columns else _by_influxdb(ql, window))
    await _first_steps(ql, window, measurements)
    points = [p for m in measurements for p in m.points()]
    return points + list(_station_points(measurements))


async def _by_influxdb(ql: InfluxQL, window: Window) -> list[_Measurement]:
    statements = [_statements(spec, window) for spec in SPECS]
    flat = await ql.tables([s for group in statements for s in group])
    return [_Measurement.from_influxdb(spec, part) for spec, part in zip(SPECS, _split(flat, statements), strict=True)]


async def _by_columns(ql: InfluxQL, window: Window) -> list[_Measurement]:
    statements = [_column_statements(spec, window) for spec in SPECS]
    flat = await ql.tables([s for group in statements for s in group])
    return [_Measurement.from_columns(spec, part) for spec, part in zip(SPECS, _split(flat, statements), strict=True)]


def _split(flat: list[_T], groups: list[list[str]]) -> Iterator[list[_T]]:
    at = 0
    for group in groups:
        yield flat[at:at + len(group)]
        at += len(group)


async def _first_steps(ql: InfluxQL, window: Window, measurements: list[_Measurement]) -> None:
    """Look further back (up to ``MAX_AGE_MS``) for series with no reading just before the window."""
    wanted = [(m, m.without_previous()) for m in measurements]
    wanted = [(m, series) for m, series in wanted if series]
    if not wanted:
        return
    start, end = window.start_ms - MAX_AGE_MS, window.start_ms - _LOOKBACK_MS
    statements = []
    for m, series in wanted:
        stations = {dict(tags)["station"] for tags in series}
        statements += [_first(m.spec, window, stations), _last(m.spec, window, start, end, stations)]
    results = await ql.tables(statements)
    for i, (m, _) in enumerate(wanted):
        m.add_first_steps(_selected(results[2 * i]), _selected(results[2 * i + 1]))
