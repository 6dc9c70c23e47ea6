"""Visits (人次) over any range: the hourly rollups for closed hours, the raw door counters for the rest.

The rollups (``docs/rollups.md``) hold each station's visits per hour. Ingest rolls an hour up
within about a minute of its end, so the hour just closed and the open hour are read raw: their
readings' non-negative steps of ``entries``, each counted in its reading's hour, the first from the
station's last reading before them. Days are Beijing days (``GROUP BY time(1d, -8h)``); months are
calendar months in Asia/Shanghai, summed here from days (InfluxQL has no months).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from gateway.influx import InfluxReader, Series
from telemetry.contract import MAX_AGE_MS
from telemetry.storage import BEIJING, DAY_MS, HOUR_MS, OCCUPANCY_1H, Tier, day_of, hour_of, qualified

MAX_BUCKETS: Final = 10_000
"""At most this many time buckets per request (hours: about 416 days)."""
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""No range starts before this (InfluxDB's times end in 1677; no station reported before 2000)."""
RAW_HOURS: Final = 2
"""The open hour and the one before it are read raw."""


class By(StrEnum):
    CITY = "city"
    DISTRICT = "district"
    STATION = "station"


class Every(StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


@dataclass(slots=True, frozen=True)
class Window:
    """Whole hours ``[start_ms, end_ms)``, ``start_ms`` on a bucket's start; ``now_ms`` splits closed from raw."""

    start_ms: int
    end_ms: int
    now_ms: int

    @property
    def raw_from_ms(self) -> int:
        return max(self.start_ms, hour_of(self.now_ms) - (RAW_HOURS - 1) * HOUR_MS)


def beijing_month(ms: int) -> int:
    moment = datetime.fromtimestamp(ms / 1000, BEIJING)
    return int(moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def bucket(ms: int, every: Every) -> int:
    """The start of the bucket holding ``ms``."""
    match every:
        case Every.HOUR:
            return hour_of(ms)
        case Every.DAY:
            return day_of(ms)
        case Every.MONTH:
            return beijing_month(ms)


def buckets(start_ms: int, end_ms: int, every: Every) -> int:
    """How many buckets ``[start_ms, end_ms)`` touches."""
    if every is Every.MONTH:
        first, last = (datetime.fromtimestamp(ms / 1000, BEIJING) for ms in (start_ms, end_ms - 1))
        return (last.year - first.year) * 12 + last.month - first.month + 1
    size = HOUR_MS if every is Every.HOUR else DAY_MS
    return (bucket(end_ms - 1, every) - bucket(start_ms, every)) // size + 1


def window(start: datetime, end: datetime, every: Every, now: datetime) -> Window:
    """The request's range as whole hours: start at its bucket's start, end at its hour's start, or
    now when it reaches the open hour."""
    now_ms = int(now.timestamp() * 1000)
    start_ms = bucket(int(start.timestamp() * 1000), every)
    end_ms = min(int(end.timestamp() * 1000), now_ms)
    end_ms = end_ms if end_ms >= hour_of(now_ms) else hour_of(end_ms)
    return Window(start_ms, max(end_ms, start_ms), now_ms)


def _group(by: By) -> tuple[str, ...]:
    return {By.CITY: (), By.DISTRICT: ("district",), By.STATION: ("station",)}[by]


def closed_query(w: Window, by: By, every: Every) -> str:
    """The rollups' visits of the hours before the raw ones, per hour or Beijing day and group."""
    interval = "time(1h)" if every is Every.HOUR else "time(1d, -8h)"
    group = ", ".join((interval, *(f'"{t}"' for t in _group(by))))
    end = min(w.end_ms, w.raw_from_ms)
    return (f'SELECT sum("visits") AS "visits" FROM {qualified(Tier.ROLLUP, OCCUPANCY_1H)} '
            f"WHERE time >= {w.start_ms}ms AND time < {end}ms GROUP BY {group}")


def raw_queries(w: Window) -> tuple[str, str]:
    """Each station's last ``entries`` before the raw hours, and its readings in them."""
    before = (f'SELECT last("entries") AS "entries" FROM "occupancy" WHERE time < {w.raw_from_ms}ms '
              f'AND time >= {w.raw_from_ms - MAX_AGE_MS}ms GROUP BY "station", "district"')
    readings = (f'SELECT "entries" FROM "occupancy" WHERE time >= {w.raw_from_ms}ms AND time < {w.end_ms}ms '
                'GROUP BY "station", "district"')
    return before, readings


Totals = dict[str, dict[int, int]]
"""Visits by group key, then by bucket start."""


def _key(tags: dict[str, str], by: By) -> str:
    return tags.get(by.value, "") if by is not By.CITY else "city"


def add_closed(totals: Totals, series: Iterable[Series], by: By, every: Every) -> None:
    for s in series:
        for time_ms, visits in s.values:
            if visits is not None:
                totals[_key(s.tags, by)][bucket(int(time_ms), every)] += int(visits)


def add_raw(totals: Totals, before: Iterable[Series], readings: Iterable[Series], by: By, every: Every) -> None:
    """The non-negative steps of ``entries``, each in its reading's bucket."""
    last = {s.tags["station"]: s.values[0][1] for s in before if s.values}
    for s in readings:
        previous = last.get(s.tags["station"])
        key = _key(s.tags, by)
        for time_ms, entries in s.values:
            if entries is None:
                continue
            step = max(0, int(entries) - int(previous)) if previous is not None else 0
            totals[key][bucket(int(time_ms), every)] += step
            previous = entries


async def visits(influx: InfluxReader, w: Window, by: By, every: Every) -> Totals:
    """Visits of ``w`` per group and bucket: rollups before the raw hours, raw steps in them."""
    totals: Totals = defaultdict(lambda: defaultdict(int))
    if w.start_ms < min(w.end_ms, w.raw_from_ms):
        add_closed(totals, await influx.query(closed_query(w, by, every)), by, every)
    if w.raw_from_ms < w.end_ms:
        before, readings = raw_queries(w)
        add_raw(totals, await influx.query(before), await influx.query(readings), by, every)
    return totals


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
