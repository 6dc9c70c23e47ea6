"""Counter steps computed in Python from the raw points, by the definition in ``docs/rollups.md``:
the expected figures of the readers' tests (a panel or ``/v1/visits`` against the raw points)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.rig import Influxd

SERIES_TAGS = ("station", "district", "kind")


def points(influxd: Influxd, db: str, measurement: str, fields: str, end_ms: int) -> Iterator[dict[str, Any]]:
    """Every raw point before ``end_ms``, oldest first per series, with its tags."""
    query = f'SELECT {fields} FROM "{measurement}" WHERE time < {end_ms}ms GROUP BY *'
    for series in influxd.query(query, db):
        for values in series["values"]:
            yield {**series.get("tags", {}), **dict(zip(series["columns"], values, strict=True))}


@dataclass(slots=True, frozen=True)
class Step:
    """One reading of a series and the counter's step into it (0 without a previous value or on a reset)."""

    series: tuple[Any, ...]
    time: int
    step: float


def counter_steps(rows: Iterable[dict[str, Any]], counter: str, keys: tuple[str, ...]) -> Iterator[Step]:
    """Each reading's non-negative step of ``counter`` from the series' previous reading."""
    for series, readings in itertools.groupby(rows, key=lambda r: tuple(r.get(k) for k in keys)):
        previous = None
        for row in readings:
            value = row.get(counter)
            step = max(0, value - previous) if value is not None and previous is not None else 0
            previous = value if value is not None else previous
            yield Step(series, row["time"], step)


def steps(influxd: Influxd, db: str, measurement: str, counter: str, *, per: tuple[str, ...] = (),
          end_ms: int) -> list[Step]:
    """Every reading before ``end_ms`` with its step, series keyed by station, district, kind and ``per``."""
    rows = points(influxd, db, measurement, f'"{counter}"', end_ms)
    return list(counter_steps(rows, counter, (*SERIES_TAGS, *per)))
