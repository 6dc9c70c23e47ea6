"""Figures over any range: closed hours from the hourly rollups, the open hour from raw points.

A panel that sums a counter (visits, energy) or counts readings over days, months or years reads
two queries and adds them in Grafana:

- **closed**: the rollup points (``docs/rollups.md``) of the hours ``H`` in the range with
  ``H + 1 h <= floor_hour(to)``, i.e. ``time <= ${__to}ms - 1h`` (rollup points are stamped on the
  hour, so this is exact without knowing where the hour starts);
- **open**: the raw points of the open hour ``[floor_hour(to), to]``. InfluxQL cannot floor a
  time, so the open hour is the newest bucket of ``GROUP BY time(1h) fill(0)`` over a window
  ending at ``${__to}`` (:func:`newest_hour`): for counts, minima and maxima the last hour
  (:data:`HOUR_WINDOW`, two buckets whatever the minute); for a counter's steps the last
  :data:`LOOKBACK_HOURS` (:data:`WINDOW`, :func:`open_steps`), so that the step across the hour
  boundary is counted in it, as in the rollups, because the reading before it lies in the same
  window. That bucket is the open part's one row per series (a counter's steps) or per group,
  stamped with the open hour's start; Grafana's groupBy sums the rows per key, a panel per day
  formats both parts' times as Beijing days before adding them (:func:`per_day`), a panel without
  days drops its time. No query regroups that bucket: on InfluxDB 1.6 a third level of subquery
  (per day) cost 0.65-0.9 s over 45 stations' six hours, ten times the rest, and regrouping 1,000
  stations' steps per district 64 s against 4.4 s a row per station.

Grafana's ``${__to:date:FORMAT}`` cannot name the open hour's start instead: a custom format may
not contain ``:`` and is rendered in the browser's time zone (Grafana's documentation of global
variables), so ``'${__to:date:YYYY-MM-DDTHH}:00:00${__to:date:Z}'`` is that hour only where the
browser's offset is whole hours, and alert rules and the gateway have no browser.

The two frames name their value differently (``visits`` and ``visits_open``) so Grafana's merge
never takes a closed row and an open row for one; a groupBy sums each per key and a calculation
adds them (:func:`combine`; a sum of the row's fields, so that in a period's first hour, when the
closed query has no row and its field is in no frame, the open part alone is the figure: a binary
``+`` would leave the field out). The hour just closed is read from its rollup, which ingest writes
within about a minute of the hour's end.

Every range a panel uses starts on an hour (days, months, years of Beijing time, whose hours are
UTC hours), so the two parts cover it exactly; a range starting mid-hour leaves that hour out.
"""

from __future__ import annotations

from typing import Final

from dashboards.builder import Transformation, format_time, group_by, grouping_to_matrix, merge, organize, sum_of
from dashboards.influxql import TIME, m, select, sub, tags, where
from telemetry.storage import Tier, qualified

CLOSED: Final = "time <= ${__to}ms - 1h"
"""Rollup hours that ended by the start of the open hour."""
LOOKBACK_HOURS: Final = 6
"""How far back the open hour's first step finds the reading before it."""


def _last_hours(hours: int) -> str:
    return f"time >= ${{__to}}ms - {hours}h AND time <= ${{__to}}ms"


WINDOW: Final = _last_hours(LOOKBACK_HOURS)
"""Where a counter's steps in the open hour are taken from (:func:`open_steps`)."""
HOUR_WINDOW: Final = _last_hours(1)
"""The open hour and part of the hour before it: all that counts, minima and maxima of the open
hour read (a sixth of :data:`WINDOW`'s raw points); as hourly buckets, exactly two."""
OPEN_SUFFIX: Final = "_open"


def rollup(measurement: str) -> str:
    """``"rollup"."<measurement>"`` for FROM."""
    return qualified(Tier.ROLLUP, measurement)


def closed(fields: str, measurement: str, *conditions: str, group: str, fill: str | None = None) -> str:
    """``fields`` over the rollup hours of the range that are closed."""
    return select(fields, rollup(measurement), conditions=where(TIME, CLOSED, *conditions), group=group, fill=fill)


def newest_hour(fields: str, source: str, *conditions: str, per: tuple[str, ...], hours: int = 1) -> str:
    """``fields`` in the open hour, per series: the last ``hours`` (:data:`HOUR_WINDOW`, or :data:`WINDOW`
    with ``LOOKBACK_HOURS``) are ``hours + 1`` hourly buckets, every one filled with 0, and the open hour
    is the last (``last()`` over filled buckets and an outer query without a time filter both return
    wrong results on InfluxDB 1.6, so it is taken by OFFSET)."""
    return select(fields, source, conditions=where(_last_hours(hours), *conditions), group=f"time(1h), {tags(*per)}",
                  fill="0", limit=1, offset=hours)


def open_steps(counter: str, measurement: str, name: str, *conditions: str, per: tuple[str, ...]) -> str:
    """The non-negative steps of ``counter`` in the open hour, a row per series ``per`` (stamped with the
    open hour's start), as ``<name>_open``: the panel's groupBy sums them per key. Regrouping them by
    fewer tags in InfluxQL costs 1.6 far more than the steps: 64 s against 4.4 s over 1,000 stations'
    six hours, 0.9 against 0.13 s over 45."""
    out = name + OPEN_SUFFIX
    steps = select(f'non_negative_difference("{counter}") AS "{out}"', m(measurement),
                   conditions=where(WINDOW, *conditions), group=tags(*per))
    return newest_hour(f'sum("{out}") AS "{out}"', sub(steps), per=per, hours=LOOKBACK_HOURS)


def combine(keys: tuple[str, ...], name: str) -> tuple[Transformation, ...]:
    """Closed and open frames to one row per ``keys`` with ``name`` = closed + open.

    Without a time key, each query's own Time goes first, so that rows merge on the keys alone.
    """
    closed_sum, open_sum = f"{name} (sum)", f"{name}{OPEN_SUFFIX} (sum)"
    return (
        *(() if "Time" in keys else (organize(exclude=("Time",)),)),
        merge(),
        group_by(keys, {name: ("sum",), name + OPEN_SUFFIX: ("sum",)}),
        sum_of((closed_sum, open_sum), name),  # a period's first hour has no closed row: open alone
        organize(exclude=(closed_sum, open_sum)),
    )


def matrix_x(column: str) -> str:
    """The first field of :func:`per_day`'s matrix (groupingToMatrix names it ``"<row>\\<column>"``)."""
    return f"Time\\{column}"


def days(pattern: str) -> Transformation:
    """Each frame's time as its Beijing day (``pattern``: ``YYYY-MM-DD``, ``MM-DD``), so that the open
    hour's row, stamped with its hour, adds to its day's closed rows."""
    return format_time("Time", pattern)


def per_day(column: str, name: str, pattern: str = "MM-DD") -> tuple[Transformation, ...]:
    """Closed and open frames per day and ``column`` to a matrix: a row per day (as text, ``pattern``),
    a field per ``column`` value (a bar chart's stacks)."""
    return (days(pattern), *combine(("Time", column), name), grouping_to_matrix(column, "Time", name))
