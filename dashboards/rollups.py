"""Figures over any range: closed hours from the hourly rollups, the open hour from raw points.

A panel that sums a counter (visits, energy) or counts readings over days, months or years reads
two queries and adds them in Grafana:

- **closed**: the rollup points (``docs/rollups.md``) of the hours ``H`` in the range with
  ``H + 1 h <= floor_hour(to)``, i.e. ``time <= ${__to}ms - 1h`` (rollup points are stamped on the
  hour, so this is exact without knowing where the hour starts);
- **open**: the raw points of the open hour ``[floor_hour(to), to]``. InfluxQL cannot floor a
  time, so the open hour is the newest bucket of ``GROUP BY time(1h) fill(0)`` over the last
  :data:`LOOKBACK_HOURS` (:func:`newest_hour`): the step across the hour boundary is counted in
  it, as in the rollups, because the reading before it lies in the same window. The open part is
  always summed per Beijing day (:func:`daily`); a panel without days drops its time.

The two frames name their value differently (``visits`` and ``visits_open``) so Grafana's merge
never takes a closed row and an open row for one; a groupBy sums each per key and a calculation
adds them (:func:`combine`). The hour just closed is read from its rollup, which ingest writes
within about a minute of the hour's end.

Every range a panel uses starts on an hour (days, months, years of Beijing time, whose hours are
UTC hours), so the two parts cover it exactly; a range starting mid-hour leaves that hour out.
"""

from __future__ import annotations

from typing import Final

from dashboards.builder import Transformation, binary, group_by, grouping_to_matrix, merge, organize
from dashboards.influxql import DAY, TIME, m, select, sub, tags, where
from telemetry.storage import Tier, qualified

CLOSED: Final = "time <= ${__to}ms - 1h"
"""Rollup hours that ended by the start of the open hour."""
LOOKBACK_HOURS: Final = 6
"""How far back the open hour's first step finds the reading before it."""
WINDOW: Final = f"time >= ${{__to}}ms - {LOOKBACK_HOURS}h AND time <= ${{__to}}ms"
OPEN_SUFFIX: Final = "_open"


def rollup(measurement: str) -> str:
    """``"rollup"."<measurement>"`` for FROM."""
    return qualified(Tier.ROLLUP, measurement)


def closed(fields: str, measurement: str, *conditions: str, group: str) -> str:
    """``fields`` over the rollup hours of the range that are closed."""
    return select(fields, rollup(measurement), conditions=where(TIME, CLOSED, *conditions), group=group)


def newest_hour(fields: str, source: str, *conditions: str, per: tuple[str, ...]) -> str:
    """``fields`` in the open hour, per series: :data:`WINDOW` has ``LOOKBACK_HOURS + 1`` hourly buckets,
    every one filled with 0, and the open hour is the last (``last()`` over filled buckets and an outer
    query without a time filter both return wrong results on InfluxDB 1.6, so it is taken by OFFSET)."""
    return select(fields, source, conditions=where(WINDOW, *conditions), group=f"time(1h), {tags(*per)}", fill="0",
                  limit=1, offset=LOOKBACK_HOURS)


def daily(fields: str, source: str, by: tuple[str, ...]) -> str:
    """``fields`` over ``source`` per Beijing day and ``by`` (the outer query that 1.6 answers right)."""
    return select(fields, sub(source), conditions=WINDOW, group=f"{DAY}, {tags(*by)}")


def open_steps(counter: str, measurement: str, name: str, *conditions: str, per: tuple[str, ...],
               by: tuple[str, ...]) -> str:
    """The non-negative steps of ``counter`` in the open hour per series ``per``, summed per Beijing day
    and ``by``, as ``<name>_open``."""
    out = name + OPEN_SUFFIX
    steps = select(f'non_negative_difference("{counter}") AS "{out}"', m(measurement),
                   conditions=where(WINDOW, *conditions), group=tags(*per))
    return daily(f'sum("{out}") AS "{out}"', newest_hour(f'sum("{out}") AS "{out}"', sub(steps), per=per), by)


def combine(keys: tuple[str, ...], name: str) -> tuple[Transformation, ...]:
    """Closed and open frames to one row per ``keys`` with ``name`` = closed + open.

    Without a time key, each query's own Time goes first, so that rows merge on the keys alone.
    """
    closed_sum, open_sum = f"{name} (sum)", f"{name}{OPEN_SUFFIX} (sum)"
    return (
        *(() if "Time" in keys else (organize(exclude=("Time",)),)),
        merge(),
        group_by(keys, {name: ("sum",), name + OPEN_SUFFIX: ("sum",)}),
        binary(closed_sum, "+", open_sum, name),
        organize(exclude=(closed_sum, open_sum)),
    )


def matrix_x(column: str) -> str:
    """The first field of :func:`per_day`'s matrix (groupingToMatrix names it ``"<row>\\<column>"``)."""
    return f"Time\\{column}"


def per_day(column: str, name: str) -> tuple[Transformation, ...]:
    """Closed and open frames per day and ``column`` to a matrix: a row per day, a field per ``column``
    value (a bar chart's stacks)."""
    return (*combine(("Time", column), name), grouping_to_matrix(column, "Time", name))
