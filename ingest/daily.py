"""Daily rollups: each series' figures of a Beijing day, computed from that day's hourly rollups.

A year of a station's completeness or temperature is 8,760 hourly points per device; its daily
points are 365. A panel over months reads these (``docs/rollups.md``), never the hours.

A daily point is stamped with its day's start (Beijing midnight, :func:`telemetry.storage.day_of`,
InfluxQL's ``GROUP BY time(1d, -8h)``), in the ``rollup`` tier, with the hourly series' tags. Its
fields are the hourly fields of the day's hours that hold a point: counts, sums, steps and minutes
summed (``expected`` too: the readings expected over those hours), maxima the maximum, minima the
minimum, ``seq_first`` the minimum and ``seq_last`` the maximum; a mean is the day's sum over its
readings. A day gets its points once it has ended (the grids read whole days; computing the day
under way after every hour would cost the keeper 40% more), and again whenever one of its hours is
recomputed after that (by the keeper after the hour's write, by the rebuild after its chunk's), from
what InfluxDB holds, so they are exact under late data as the hours are, and a second recompute
rewrites the same point.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Final

from ingest.influxql import InfluxQL, Table
from ingest.rollup import SPECS, RollupPoint, series_tags, station_clause
from telemetry.storage import DAY_MS, DAY_OF, HOUR_MS, STATION_1H, Tier, day_of, qualified


@dataclass(slots=True, frozen=True)
class _DaySpec:
    """How one hourly measurement rolls up into days."""

    hourly: str
    aggregates: tuple[tuple[str, str], ...]  # (function, field): the daily field has the hourly field's name
    means: tuple[tuple[str, str], ...]  # (mean, the sum it divides by readings)

    @property
    def daily(self) -> str:
        return DAY_OF[self.hourly]


def _function(field: str) -> str:
    if field.endswith("_max") or field in {"sockets_total", "seq_last"}:
        return "max"
    if field.endswith("_min") or field == "seq_first":
        return "min"
    return "sum"


def _spec(hourly: str, fields: Collection[str], means: tuple[tuple[str, str], ...]) -> _DaySpec:
    derived = {mean for mean, _ in means}
    return _DaySpec(hourly, tuple((_function(f), f) for f in sorted(fields) if f not in derived), means)


def _fields_of(spec_index: int) -> set[str]:
    spec = SPECS[spec_index]
    fields = {"readings", "minutes", "expected", *(alias for _, _, alias in spec.aggregates),
              *(mean for mean, _ in spec.means)}
    if spec.counter:
        fields.add(spec.steps)
    if spec.fault:
        fields.add("fault_minutes")
    return fields


DAY_SPECS: Final = (
    *(_spec(spec.rollup, _fields_of(i), spec.means) for i, spec in enumerate(SPECS)),
    _spec(STATION_1H, ("readings", "seq_count", "seq_first", "seq_last"), ()),
)


def days(start_ms: int, end_ms: int, ended_by_ms: int) -> tuple[int, int]:
    """The Beijing days ``[first day's start, last day's end)`` that hold the hours ``[start_ms, end_ms)``
    and have ended by ``ended_by_ms`` (none: an empty range)."""
    first, end = day_of(start_ms), day_of(end_ms - 1) + DAY_MS
    return first, max(first, min(end, day_of(ended_by_ms)))


def last_hour(ts_ms: int) -> int:
    """The last hour of the Beijing day holding ``ts_ms``: once it has closed, the day has ended."""
    return day_of(ts_ms) + DAY_MS - HOUR_MS


def statement(spec: _DaySpec, start_ms: int, end_ms: int, stations: Collection[str] | None = None) -> str:
    """The days ``[start_ms, end_ms)`` (Beijing midnights) of one hourly measurement."""
    selects = ", ".join(f'{fn}("{field}") AS "{field}"' for fn, field in spec.aggregates)
    return (f"SELECT {selects} FROM {qualified(Tier.ROLLUP, spec.hourly)} "
            f"WHERE time >= {start_ms}ms AND time < {end_ms}ms{station_clause(stations)} "
            "GROUP BY time(1d, -8h), * fill(none)")


def _points(spec: _DaySpec, results: list[Table]) -> Iterator[RollupPoint]:
    for table in results:
        tags, names = series_tags(table), table.columns[1:]
        for values in table.values:
            fields: dict[str, int | float] = {k: v for k, v in zip(names, values[1:], strict=True) if v is not None}
            if not fields.get("readings"):
                continue
            for mean, total in spec.means:
                if total in fields:
                    fields[mean] = float(fields[total]) / int(fields["readings"])
            yield RollupPoint(spec.daily, tags, int(values[0]), tuple(sorted(fields.items())))


async def compute(ql: InfluxQL, start_ms: int, end_ms: int, stations: Collection[str] | None = None, *,
                  ended_by_ms: int) -> list[RollupPoint]:
    """The daily points of the Beijing days holding the hours ``[start_ms, end_ms)`` that have ended by
    ``ended_by_ms``, of some stations (None: all), from the hourly rollups InfluxDB holds now."""
    first, end = days(start_ms, end_ms, ended_by_ms)
    if end <= first:
        return []
    results = await ql.tables([statement(spec, first, end, stations) for spec in DAY_SPECS])
    return [p for spec, part in zip(DAY_SPECS, results, strict=True) for p in _points(spec, part)]
