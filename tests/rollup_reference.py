"""Hourly rollups computed in Python from the raw points, by the definition in ``docs/rollups.md``.

Two uses: the expected figures of the readers' tests (a panel or ``/v1/visits`` against the raw
points), and, until ingest's own rebuild lands on this branch, the rollups those readers read.
Only the fields the readers use are computed: visits and people (occupancy), energy (charger),
seq (station), readings and minutes.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from telemetry.storage import CHARGER_1H, OCCUPANCY_1H, STATION_1H, Tier, hour_of
from tests.rig import Influxd

RAW = (("occupancy", "entries", OCCUPANCY_1H, "visits", ()), ("charger", "energy_wh", CHARGER_1H, "energy_wh",
                                                                 ("charger",)))
SERIES_TAGS = ("station", "district", "kind")


@dataclass(slots=True)
class Hour:
    """One series' hour: the counter's steps, readings and the minutes holding one."""

    steps: float = 0
    readings: int = 0
    minutes: set[int] = field(default_factory=set)


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


def hours(readings: Iterable[Step]) -> dict[tuple[Any, ...], Hour]:
    """Per (series..., hour): the steps, readings and minutes with a reading."""
    out: dict[tuple[Any, ...], Hour] = defaultdict(Hour)
    for r in readings:
        hour = out[(*r.series, hour_of(r.time))]
        hour.steps += r.step
        hour.readings += 1
        hour.minutes.add(r.time // 60_000)
    return out


def _line(measurement: str, tags: dict[str, Any], fields: dict[str, int | float], ts_ms: int) -> str:
    tag_text = ",".join(f"{k}={v}" for k, v in tags.items())
    field_text = ",".join(f"{k}={v}i" if isinstance(v, int) else f"{k}={v}" for k, v in fields.items())
    return f"{measurement},{tag_text} {field_text} {ts_ms}"


def _seq_lines(influxd: Influxd, db: str, end_ms: int) -> Iterator[str]:
    seqs: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for measurement in ("occupancy", "charger", "temperature"):
        for row in points(influxd, db, measurement, '"seq"', end_ms):
            seqs[(*(row[k] for k in SERIES_TAGS), hour_of(row["time"]))].append(row["seq"])
    for (*tags, hour), values in seqs.items():
        yield _line(STATION_1H, dict(zip(SERIES_TAGS, tags, strict=True)),
                    {"seq_first": min(values), "seq_last": max(values), "seq_count": len(values),
                     "readings": len(values)}, hour)


def build(influxd: Influxd, db: str, now_ms: int) -> None:
    """Write the rollups of every closed hour before ``now_ms`` into the ``rollup`` retention policy."""
    influxd.query(f'CREATE RETENTION POLICY "{Tier.ROLLUP.value}" ON "{db}" DURATION 0s REPLICATION 1', db)
    end = hour_of(now_ms)
    lines = list(_seq_lines(influxd, db, end))
    for measurement, counter, rollup, name, per in RAW:
        for (*tags, hour), h in hours(steps(influxd, db, measurement, counter, per=per, end_ms=end)).items():
            value: int | float = int(h.steps) if name == "visits" else float(h.steps)
            lines.append(_line(rollup, dict(zip((*SERIES_TAGS, *per), tags, strict=True)),
                               {name: value, "readings": h.readings, "minutes": len(h.minutes)}, hour))
    for i in range(0, len(lines), 5000):
        influxd.write(db, "\n".join(lines[i:i + 5000]), rp=Tier.ROLLUP.value)
