"""The report's figures, gathered from the hourly rollups (docs/rollups.md), never from raw points.

Every query reads the ``rollup`` tier over ``[start, end)`` of the period (Beijing months and
years, :mod:`.period`) and lets InfluxDB aggregate: per station (``GROUP BY "station"``), one
statement per measurement, or per hour for the whole scope (``GROUP BY time(1h)``, folded here
into Beijing days, months and hours of the day). The statements run concurrently and each
measurement is scanned once (the year before's visits aside): a year of 45 stations is 2 million
rollup points.

Definitions (also printed in the report's notes):

- visits: the sum of ``occupancy_1h.visits`` (entries counted by the door counter);
- mean occupancy: ``sum(people_sum) / sum(readings)``; peak: ``max(people_max)``; hours full: hours
  whose ``people_max`` reached the registry's capacity;
- cold hours: hours whose ``celsius_mean`` of the ``indoor`` sensor is below 16 °C;
- energy: ``sum(energy_wh)`` / 1000; socket-hours: ``sum(sockets_in_use_mean)``; fault minutes:
  ``sum(fault_minutes)``;
- availability: minutes with an occupancy reading / minutes in the period;
- completeness: minutes with a reading, summed over the station's devices (its occupancy counter,
  chargers and sensors), / (minutes in the period x devices).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from dashboards.exceptions import ReportError
from dashboards.influxql import one_of, select, tags, where
from dashboards.report.period import Period, local_hour
from gateway.exceptions import DependencyUnavailableError, InfluxQueryError
from gateway.influx import InfluxReader, Series
from telemetry.registry import Registry, Station
from telemetry.storage import CHARGER_1H, DAY_MS, OCCUPANCY_1H, TEMPERATURE_1H, Tier, qualified

logger = logging.getLogger(__name__)

COLD_C: Final = 16.0
"""An hour whose indoor mean is below this is a cold hour."""
INDOOR: Final = "indoor"


@dataclass(slots=True, frozen=True)
class StationFigures:
    """One station's figures over the period (None: no rollup at all for that figure)."""

    station: Station
    minutes_in_period: int
    visits: int | None = None
    visits_previous: int | None = None
    visits_year_before: int | None = None
    people_mean: float | None = None
    people_max: int | None = None
    hours_full: int = 0
    cold_hours: int = 0
    indoor_min: float | None = None
    energy_kwh: float = 0.0
    socket_hours: float = 0.0
    fault_minutes: int = 0
    occupancy_minutes: int = 0
    device_minutes: int = 0

    @property
    def devices(self) -> int:
        return 1 + len(self.station.chargers) + len(self.station.sensors)

    @property
    def availability_pct(self) -> float:
        return 100.0 * self.occupancy_minutes / self.minutes_in_period

    @property
    def completeness_pct(self) -> float:
        return 100.0 * self.device_minutes / (self.minutes_in_period * self.devices)

    @property
    def has_data(self) -> bool:
        return self.device_minutes > 0

    @property
    def trouble(self) -> float:
        """Points: each percentage point of availability or completeness missing, each cold hour and
        each hour of charger fault count one."""
        return ((100.0 - self.availability_pct) + (100.0 - self.completeness_pct) + self.cold_hours
                + self.fault_minutes / 60.0)


@dataclass(slots=True, frozen=True)
class Bar:
    """One bar of a chart: its label and value."""

    label: str
    value: int


@dataclass(slots=True, frozen=True)
class ReportData:
    """Everything the report shows, for one period and the whole city or one district."""

    period: Period
    district: str | None
    generated: datetime
    registry_stations: int
    """Stations in the registry (of the district), instrumented or not."""
    stations: tuple[StationFigures, ...]
    """The instrumented stations (of the district)."""
    by_day: tuple[Bar, ...]
    by_hour: tuple[Bar, ...]

    @property
    def has_data(self) -> bool:
        return any(s.has_data for s in self.stations)

    @property
    def open_stations(self) -> int:
        """Stations with at least one reading in the period."""
        return sum(s.has_data for s in self.stations)

    def troubled(self, limit: int = 10) -> list[StationFigures]:
        """The stations with the most trouble points, worst first (only those with any)."""
        ranked = sorted((s for s in self.stations if s.trouble > 0.05), key=lambda s: (-s.trouble, s.station.id))
        return ranked[:limit]


@dataclass(slots=True, frozen=True)
class _Span:
    start_ms: int
    end_ms: int

    @classmethod
    def of(cls, period: Period) -> _Span:
        return cls(period.start_ms, period.end_ms)

    @property
    def condition(self) -> str:
        return f"time >= {self.start_ms}ms AND time < {self.end_ms}ms"


async def gather(reader: InfluxReader, registry: Registry, period: Period, *, district: str | None = None,
                 now: datetime | None = None) -> ReportData:
    """Query the rollups for ``period`` (and the periods it is compared with) and assemble the figures.

    Raises:
        ReportError: InfluxDB could not be reached or refused a query.
    """
    now = now or datetime.now(UTC)
    stations = [s for s in registry.reporting if district is None or s.district == district]
    scope = [f'"district" = \'{district}\''] if district else []
    async with _translated():
        per_station, hourly = await asyncio.gather(_per_station(reader, stations, period, scope),
                                                   _rows(reader, _hourly(period, scope)))
    minutes = _minutes_until(period, now)
    figures = tuple(StationFigures(station=s, minutes_in_period=minutes, **per_station.get(s.id, {}))
                    for s in stations)
    in_scope = sum(district is None or s.district == district for s in registry.stations)
    return ReportData(period=period, district=district, generated=now, registry_stations=in_scope,
                      stations=figures, by_day=_day_bars(period, hourly), by_hour=_hour_bars(hourly))


@contextlib.asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """The reader's errors as :class:`ReportError`, the one seam where they are translated."""
    try:
        yield
    except (DependencyUnavailableError, InfluxQueryError) as exc:
        raise ReportError(f"cannot read the rollups: {exc}") from exc


async def _rows(reader: InfluxReader, q: str) -> list[Series]:
    logger.debug("report query: %s", q)
    try:
        return await reader.query(q)
    except InfluxQueryError as exc:
        if "retention policy not found" in exc.message:
            return []  # no rollup has been written to this database yet: no data
        raise


def _hourly(period: Period, scope: list[str]) -> str:
    """The city's (or district's) visits per hour: folded here into days, months and hours of the day."""
    return select('sum("visits") AS "visits"', qualified(Tier.ROLLUP, OCCUPANCY_1H),
                  conditions=where(_Span.of(period).condition, *scope), group="time(1h)", fill="none")


def _per_station_queries(stations: list[Station], period: Period, scope: list[str]) -> dict[str, str]:
    """The statements whose rows are per station, by the figure names they fill."""
    cond = where(_Span.of(period).condition, *scope)
    occupancy, charger = qualified(Tier.ROLLUP, OCCUPANCY_1H), qualified(Tier.ROLLUP, CHARGER_1H)
    temperature, station = qualified(Tier.ROLLUP, TEMPERATURE_1H), tags("station")
    queries = {
        "visits_previous": _visits(period.previous(), scope),
        "occupancy": select('sum("visits") AS "visits", sum("people_sum") AS "people_sum", '
                            'sum("readings") AS "readings", max("people_max") AS "people_max", '
                            'sum("minutes") AS "minutes"', occupancy, conditions=cond, group=station),
        "cold": select('count("celsius_mean") AS "cold_hours"', temperature, conditions=where(
            cond, f"\"sensor\" = '{INDOOR}'", f'"celsius_mean" < {COLD_C}'), group=station),
        "temperature": select('min("celsius_min") AS "celsius_min", sum("minutes") AS "minutes"', temperature,
                              conditions=cond, group=tags("station", "sensor")),
        "charger": select('sum("energy_wh") AS "energy_wh", sum("sockets_in_use_mean") AS "socket_hours", '
                          'sum("fault_minutes") AS "fault_minutes", sum("minutes") AS "minutes"', charger,
                          conditions=cond, group=station),
    }
    if not period.is_year:
        queries["visits_year_before"] = _visits(period.year_before(), scope)
    if full := _at_capacity(stations):
        queries["full"] = select('count("people_max") AS "hours_full"', occupancy, conditions=where(cond, full),
                                 group=station)
    return queries


def _visits(period: Period, scope: list[str]) -> str:
    cond = where(_Span.of(period).condition, *scope)
    return select('sum("visits") AS "visits"', qualified(Tier.ROLLUP, OCCUPANCY_1H), conditions=cond,
                  group=tags("station"))


def _at_capacity(stations: Iterable[Station]) -> str:
    """An hour at its station's capacity: InfluxQL has no per-series constant, so one condition per
    capacity, ORed (one scan; a statement per capacity took as many scans)."""
    groups: dict[int, list[str]] = defaultdict(list)
    for s in stations:
        if s.capacity > 0:
            groups[s.capacity].append(s.id)
    return " OR ".join(f'("station" =~ {one_of(ids)} AND "people_max" >= {capacity})'
                       for capacity, ids in sorted(groups.items()))


async def _per_station(reader: InfluxReader, stations: list[Station], period: Period,
                       scope: list[str]) -> dict[str, dict[str, Any]]:
    queries = _per_station_queries(stations, period, scope)
    answers = await asyncio.gather(*(_rows(reader, q) for q in queries.values()))
    figures: dict[str, dict[str, Any]] = defaultdict(dict)
    for name, series in zip(queries, answers, strict=True):
        for s in series:
            if "station" in s.tags and s.values:
                _fill(figures[s.tags["station"]], name, s.tags, s.rows()[0])
    return figures


def _fill(into: dict[str, Any], name: str, series_tags: dict[str, str], row: dict[str, Any]) -> None:
    """Put one statement's row for one station into that station's figures."""
    match name:
        case "visits_previous" | "visits_year_before":
            into[name] = int(row["visits"] or 0)
        case "occupancy":
            into["visits"] = int(row["visits"] or 0)
            readings = int(row["readings"] or 0)
            into["people_mean"] = (row["people_sum"] or 0) / readings if readings else None
            into["people_max"] = None if row["people_max"] is None else int(row["people_max"])
            into["occupancy_minutes"] = int(row["minutes"] or 0)
            into["device_minutes"] = into.get("device_minutes", 0) + into["occupancy_minutes"]
        case "cold" | "full":
            key = "cold_hours" if name == "cold" else "hours_full"
            into[key] = int(row[key] or 0)
        case "temperature":
            if series_tags.get("sensor") == INDOOR and row["celsius_min"] is not None:
                into["indoor_min"] = float(row["celsius_min"])
            into["device_minutes"] = into.get("device_minutes", 0) + int(row["minutes"] or 0)
        case "charger":
            into["energy_kwh"] = float(row["energy_wh"] or 0) / 1000.0
            into["socket_hours"] = float(row["socket_hours"] or 0)
            into["fault_minutes"] = int(row["fault_minutes"] or 0)
            into["device_minutes"] = into.get("device_minutes", 0) + int(row["minutes"] or 0)


def _values(series: list[Series]) -> dict[int, int]:
    """``{time: visits}`` of a statement grouped by time only."""
    return {int(t): int(v or 0) for s in series for t, v in s.values}


def _day_bars(period: Period, series: list[Series]) -> tuple[Bar, ...]:
    """Visits per Beijing day of a month, or per month of a year, summed from the hours."""
    days = period.days()
    totals = [0] * len(days)
    for t, v in _values(series).items():
        totals[(t - period.start_ms) // DAY_MS] += v
    if not period.is_year:
        return tuple(Bar(str(i + 1), v) for i, v in enumerate(totals))
    return tuple(Bar(f"{m.month}月", sum(v for day, v in zip(days, totals, strict=True)
                                         if m.start_ms <= day < m.end_ms)) for m in period.months())


def _hour_bars(series: list[Series]) -> tuple[Bar, ...]:
    """Visits per hour of the Beijing day, summed over the period's days."""
    hours = [0] * 24
    for t, v in _values(series).items():
        hours[local_hour(t)] += v
    return tuple(Bar(f"{h}", hours[h]) for h in range(24))


def _minutes_until(period: Period, now: datetime) -> int:
    """Minutes of the period up to ``now`` (all of them once it has ended; at least one)."""
    end_ms = min(period.end_ms, int(now.timestamp() * 1000))
    return max(1, (end_ms - period.start_ms) // 60_000)
