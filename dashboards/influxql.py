"""InfluxQL fragments shared by the dashboards and alert rules.

Plain InfluxQL (SELECT ... GROUP BY time(), tags): it runs on InfluxDB 1.x, on 2.x through the
DBRP mapping and on 3.x. The tests run every query on InfluxDB 1.6, whose subqueries have quirks
the queries here respect:

- a query with a subquery repeats ``$timeFilter`` in the outer WHERE when the outer groups by
  time (without it, 1.x iterates buckets from the year 1677);
- ``fill()`` goes in a subquery only when the outer query groups by the same tags (regrouping the
  filled points by fewer tags returns wrong sums on 1.6); and then the outer query takes no time
  filter unless it groups by time (1.6 returns nothing otherwise);
- measurements cannot be unioned: each query reads one measurement, panels combine frames;
- an outer query without a time filter over a subquery grouped by time, and ``last()`` over
  buckets that ``fill()`` made, can return values of the wrong bucket: take a bucket by
  ``LIMIT 1 OFFSET n`` and regroup it under a time filter (``dashboards/rollups.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from telemetry.storage import Tier, qualified

TIME: Final = "$timeFilter"
IN_DISTRICT: Final = '"district" =~ /^$district$/'
IN_STATION: Final = '"station" =~ /^$station$/'
DAY: Final = "time(1d, -8h)"
"""Days of Beijing time (UTC+8, no daylight saving): buckets start at 16:00 UTC."""
_STATION_ID: Final = re.compile(r"[A-Za-z0-9-]+")


def rate(aggregate: str, field: str, per_seconds: int) -> str:
    """``aggregate("field")`` over a ``$__interval`` bucket (a sum or count), as a rate per ``per_seconds``."""
    return f'{aggregate}("{field}") * {per_seconds * 1000} / $__interval_ms'


def one_of(ids: Iterable[str]) -> str:
    """A regex literal matching exactly these station ids."""
    ids = sorted(ids)
    if not ids or not all(_STATION_ID.fullmatch(i) for i in ids):
        raise ValueError(f"station ids must be non-empty and [A-Za-z0-9-]: {ids}")
    return "/^(" + "|".join(ids) + ")$/"


def where(*conditions: str) -> str:
    """Conditions joined with AND."""
    return " AND ".join(conditions)


def select(fields: str, source: str, *, conditions: str | None = TIME, group: str = "", fill: str | None = None,
           newest_first: bool = False, limit: int | None = None, offset: int | None = None) -> str:
    """``SELECT fields FROM source WHERE conditions GROUP BY group fill(x) ORDER BY time DESC LIMIT n OFFSET k``.

    ``source`` is a quoted measurement (:func:`m`) or a subquery in parentheses (:func:`sub`);
    ``conditions`` None leaves out WHERE (see the module docstring for when an outer query must).
    """
    parts = ["SELECT", fields, "FROM", source]
    if conditions:
        parts += ["WHERE", conditions]
    if group:
        parts += ["GROUP BY", group]
    if fill:
        parts.append(f"fill({fill})")
    if newest_first:
        parts.append("ORDER BY time DESC")
    if limit:
        parts.append(f"LIMIT {limit}")
    if offset:
        parts.append(f"OFFSET {offset}")
    return " ".join(parts)


def m(name: str) -> str:
    """A quoted measurement name."""
    return f'"{name}"'


def monitor(name: str) -> str:
    """One of ingest's own measurements, in the ``monitor`` retention policy (telemetry.storage)."""
    return qualified(Tier.MONITOR, name)


def sub(query: str) -> str:
    """A subquery as a source."""
    return f"({query})"


def tags(*names: str) -> str:
    """Quoted tag keys for GROUP BY."""
    return ", ".join(f'"{n}"' for n in names)
