"""数据完整性 Data completeness: can today's numbers of each station be trusted?

- For every station and closed hour of yesterday and today (from the hourly rollups), and every
  closed day of the selected range (from the daily rollups: a year is 365 points a device, not
  8,760), readings received against readings expected from its reporting intervals (the contract's
  defaults: occupancy every 60 s, each charger every 30 s, each sensor every 60 s) and its devices
  in the registry. Occupancy also reports on change, so for it the measure is the share of
  minutes with at least one reading.
- The ``seq`` gaps still open (see :mod:`dashboards.seqgaps`): a replay that fills a gap closes it.
- The lag between a reading's device time and its arrival: p50/p99 per minute from
  ``ingest_stats``, and per station from ``ingest_station_lag``, where a persistently negative
  minimum lag is a clock running ahead and a large one while online a station whose readings come
  late.
- One table, one row per station, that an operator sorts to find the stations to distrust today:
  its percentages are the rollups' closed hours of today plus the raw open hour
  (:mod:`dashboards.rollups`), over the day's one-minute buckets so far (``_BUCKETS``), as the raw
  points give them (a station registered without devices of a kind shows 0 % for it).

Expected readings per minute are ``devices x 60 / interval``; stations are grouped by their number
of chargers or sensors, one query per group, because InfluxQL has no per-series constants.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from dashboards import rollups, seqgaps
from dashboards.builder import (
    LEGEND,
    Dashboard,
    Panel,
    Query,
    Row,
    Step,
    lines,
    organize,
    override,
    sort_by,
    station_link,
    sum_of,
    thresholds,
)
from dashboards.influxql import IN_DISTRICT, TIME, m, monitor, one_of, select, sub, tags, where
from dashboards.overview import DISTRICT
from telemetry.contract import AgentConfig
from telemetry.registry import Registry, Station
from telemetry.storage import CHARGER_1D, CHARGER_1H, OCCUPANCY_1D, OCCUPANCY_1H, TEMPERATURE_1D, TEMPERATURE_1H

UID = "yizhan-completeness"
TODAY = "now/d"
DEFAULTS: Final = AgentConfig()
PERCENT = thresholds(Step("red"), Step("orange", 90), Step("green", 99))


@dataclass(slots=True, frozen=True)
class Kind:
    """One kind of reading: its measurement, device tag, interval and devices per station."""

    name: str
    measurement: str
    label: str
    interval_s: int
    devices: Callable[[Station], int]
    rollup: str
    daily: str

    @property
    def column(self) -> str:
        return f"{self.name}_pct"


CHARGERS = Kind("chargers", "charger", "充电桩 Chargers", DEFAULTS.charger_interval_s, lambda s: len(s.chargers),
                CHARGER_1H, CHARGER_1D)
TEMPERATURE = Kind("temperature", "temperature", "温度 Temperature", DEFAULTS.temperature_interval_s,
                   lambda s: len(s.sensors), TEMPERATURE_1H, TEMPERATURE_1D)
OCCUPANCY_COLUMN = "occupancy_pct"


def _groups(registry: Registry, kind: Kind) -> dict[int, list[str]]:
    """Reporting stations by their number of devices of ``kind`` (stations without any left out)."""
    groups: dict[int, list[str]] = defaultdict(list)
    for station in registry.reporting:
        if n := kind.devices(station):
            groups[n].append(station.id)
    return dict(sorted(groups.items()))


_STATION: Final = ("station", "district")
_BUCKETS: Final = "(floor((${__to} - ${__from}) / 60000) + 1)"
"""The range's one-minute buckets, counted as ``GROUP BY time(1m)`` counts them over a range that starts
on a minute (today's starts at midnight) and ends at ``${__to}`` included."""
_HOURS: Final = 'time($__interval), "station"'
_MINUTES_PER_INTERVAL: Final = "($__interval_ms / 60000)"
OCCUPANCY_SHARE: Final = min(1.0, 60 / DEFAULTS.occupancy_interval_s)
"""Share of minutes with an occupancy reading when healthy."""


def _today(column: str, expected_per_minute: float, closed: tuple[str, str], raw: tuple[str, str],
           *conditions: str, raw_filtered: bool = False) -> tuple[Query, Query]:
    """A percentage of what was expected over the range, per station: ``closed`` = (rollup field summed,
    rollup measurement) over the closed hours, ``raw`` = (aggregate, raw measurement) in the open hour
    (as ``<column>_open``, ``conditions`` applied unless ``raw_filtered``: a subquery that applied them);
    both over the same expected total, so the panel adds them."""
    expected = f"({expected_per_minute:g} * {_BUCKETS})"
    field, rollup = closed
    aggregate, measurement = raw
    closed_text = rollups.closed(f'100 * sum("{field}") / {expected} AS "{column}"', rollup, *conditions,
                                 group=tags(*_STATION))
    open_name = column + rollups.OPEN_SUFFIX
    open_text = rollups.newest_hour(f'100 * {aggregate} / {expected} AS "{open_name}"', measurement,
                                    *(() if raw_filtered else conditions), per=_STATION)
    return (Query(closed_text, columns=(*_STATION, column), table=True),
            Query(open_text, columns=(*_STATION, open_name), table=True))


def occupancy_query() -> tuple[Query, Query]:
    """The range (today), per station: the share of its minutes with an occupancy reading, from the
    rollups' ``minutes`` of closed hours and the open hour's non-empty minutes."""
    minutes = select('count("seq") AS "c"', m("occupancy"), conditions=where(rollups.HOUR_WINDOW, IN_DISTRICT),
                     group=f"time(1m), {tags(*_STATION)}")
    return _today(OCCUPANCY_COLUMN, OCCUPANCY_SHARE, ("minutes", OCCUPANCY_1H), ('count("c")', sub(minutes)),
                  IN_DISTRICT, raw_filtered=True)


def device_queries(registry: Registry, kind: Kind) -> tuple[Query, ...]:
    """The range (today), per station: readings received over expected (devices x 60 / interval a
    minute), from the rollups' ``readings`` of closed hours and the open hour's raw count; a pair of
    queries per group of stations with as many devices."""
    out: list[Query] = []
    for devices, ids in _groups(registry, kind).items():
        out += _today(kind.column, devices * 60 / kind.interval_s, ("readings", kind.rollup),
                      ('count("seq")', m(kind.measurement)), IN_DISTRICT, f'"station" =~ {one_of(ids)}')
    return tuple(out)


HOURS_FROM: Final = "now-1d/d"
"""The per-hour grids show yesterday and today (Beijing), whatever the dashboard's range: a cell per
station and hour of a month of 1,000 stations is 720,000 rollup points; longer ranges read the
per-day grids."""
_DAYS: Final = 'time($__interval, -8h), "station"'
_CLOSED_DAYS: Final = where("time >= ${__from}ms - 1d", "time <= ${__to}ms - 1d")
"""Daily points of the days that ended by ``${__to}``, from the one holding ``${__from}`` (stamped at its
midnight, before ``${__from}``): each cell is a whole day's share (the day under way is in the
per-hour grid)."""


def _share(total: str, per_minute: float, column: str) -> str:
    return f'100 * sum("{total}") / ({per_minute:g} * {_MINUTES_PER_INTERVAL}) AS "{column}"'


def occupancy_hours() -> Query:
    """Per interval (an hour at least) and station, from the rollups of closed hours: minutes with a
    reading of the interval's minutes (an hour without any has no rollup point: fill(0) makes it
    0 %). The open hour shows once it closes."""
    text = rollups.closed(_share("minutes", OCCUPANCY_SHARE, OCCUPANCY_COLUMN), OCCUPANCY_1H, IN_DISTRICT,
                          group=_HOURS, fill="0")
    return Query(text, columns=(OCCUPANCY_COLUMN,), alias="$tag_station")


def occupancy_days() -> Query:
    """Per interval (a Beijing day at least) and station, from the daily rollups of closed days: minutes
    with a reading of the interval's minutes (a day without any: 0 %)."""
    text = select(_share("minutes", OCCUPANCY_SHARE, OCCUPANCY_COLUMN), rollups.rollup(OCCUPANCY_1D),
                  conditions=where(_CLOSED_DAYS, IN_DISTRICT), group=_DAYS, fill="0")
    return Query(text, columns=(OCCUPANCY_COLUMN,), alias="$tag_station")


def device_hours(registry: Registry, kind: Kind) -> tuple[Query, ...]:
    """Per interval (an hour at least) and station, from the rollups of closed hours: readings over
    expected (devices x 60 / interval a minute)."""
    out = []
    for devices, ids in _groups(registry, kind).items():
        text = rollups.closed(_share("readings", devices * 60 / kind.interval_s, kind.column), kind.rollup,
                              IN_DISTRICT, f'"station" =~ {one_of(ids)}', group=_HOURS, fill="0")
        out.append(Query(text, columns=(kind.column,), alias="$tag_station"))
    return tuple(out)


def device_days(registry: Registry, kind: Kind) -> tuple[Query, ...]:
    """Per interval (a Beijing day at least) and station, from the daily rollups of closed days:
    readings over expected."""
    out = []
    for devices, ids in _groups(registry, kind).items():
        text = select(_share("readings", devices * 60 / kind.interval_s, kind.column), rollups.rollup(kind.daily),
                      conditions=where(_CLOSED_DAYS, IN_DISTRICT, f'"station" =~ {one_of(ids)}'), group=_DAYS,
                      fill="0")
        out.append(Query(text, columns=(kind.column,), alias="$tag_station"))
    return tuple(out)


def _grid(title: str, queries: tuple[Query, ...], description: str, *, days: bool) -> Panel:
    return Panel("status-history", title, queries, 24, 12, unit="percent", decimals=0, thresholds=PERCENT,
                 minimum=0, maximum=100, interval="1d" if days else "1h", time_from=None if days else HOURS_FROM,
                 custom={"fillOpacity": 80, "lineWidth": 0},
                 options={"showValue": "auto", "rowHeight": 0.9, "colWidth": 0.9,
                          "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
                          "tooltip": {"mode": "single", "sort": "none"}},
                 description=description)


_OCCUPANCY_NOTE = (f"Occupancy is read every {DEFAULTS.occupancy_interval_s} s and on change: the share of minutes "
                   "that have a reading.")
_CHARGERS_NOTE = (f"Each charger reports every {CHARGERS.interval_s} s: expected = chargers x "
                  f"{60 // CHARGERS.interval_s} a minute.")
_TEMPERATURE_NOTE = f"Each sensor reports every {TEMPERATURE.interval_s} s: expected = sensors x 1 a minute."
_HOURS_NOTE = " Yesterday and today (Beijing), whatever the range; the hour under way shows once it closes."
_DAYS_NOTE = " The selected range, a cell per Beijing day; the day under way shows once it ends."


def hours_row(registry: Registry) -> Row:
    return Row("每站每小时 Per station and hour: received / expected (yesterday and today)", (
        _grid("人数 Occupancy: minutes with a reading (%)", (occupancy_hours(),), _OCCUPANCY_NOTE + _HOURS_NOTE,
              days=False),
        _grid(f"{CHARGERS.label}: readings received / expected (%)", device_hours(registry, CHARGERS),
              _CHARGERS_NOTE + _HOURS_NOTE, days=False),
        _grid(f"{TEMPERATURE.label}: readings received / expected (%)", device_hours(registry, TEMPERATURE),
              _TEMPERATURE_NOTE + _HOURS_NOTE, days=False),
    ))


def days_row(registry: Registry) -> Row:
    return Row("每站每天 Per station and day: received / expected", (
        _grid("人数 Occupancy per day: minutes with a reading (%)", (occupancy_days(),),
              _OCCUPANCY_NOTE + _DAYS_NOTE, days=True),
        _grid(f"{CHARGERS.label} per day: readings received / expected (%)", device_days(registry, CHARGERS),
              _CHARGERS_NOTE + _DAYS_NOTE, days=True),
        _grid(f"{TEMPERATURE.label} per day: readings received / expected (%)", device_days(registry, TEMPERATURE),
              _TEMPERATURE_NOTE + _DAYS_NOTE, days=True),
    ))


LAG_QUERY = Query(
    select('median("lag_p50_ms") AS "lag_p50_ms", max("lag_max_ms") AS "lag_max_ms", min("lag_min_ms") AS "lag_min_ms"',
           monitor("ingest_station_lag"), conditions=where(TIME, IN_DISTRICT), group=tags("station", "district")),
    columns=("station", "district", "lag_p50_ms", "lag_max_ms", "lag_min_ms"), table=True)

PERCENTAGES: Final = (OCCUPANCY_COLUMN, CHARGERS.column, TEMPERATURE.column)
_SUMMED: Final = {c: (c, c + rollups.OPEN_SUFFIX) for c in PERCENTAGES}
"""Each percentage's closed and open parts, summed per station by the groupBy."""
_PARTS: Final = tuple(f"{part} (sum)" for parts in _SUMMED.values() for part in parts)
_AGGREGATES: Final[dict[str, tuple[str, ...]]] = {
    **{part: ("sum",) for parts in _SUMMED.values() for part in parts},
    "lag_p50_ms": ("max",), "lag_max_ms": ("max",), "lag_min_ms": ("min",),
}
TRUST_COLUMNS: Final = {
    "station": "驿站 station", "district": "区县 district",
    OCCUPANCY_COLUMN: "人数 occupancy %", CHARGERS.column: "充电 chargers %",
    TEMPERATURE.column: "温度 temperature %", seqgaps.RECEIVED: "收到 received",
    seqgaps.GAPS: "序号缺口 open seq gaps", "lag_p50_ms (max)": "延迟中位 lag p50",
    "lag_max_ms (max)": "最大延迟 lag max", "lag_min_ms (min)": "最小延迟 lag min",
}
"""The trust table's columns after its transformations, and their titles."""


def trust_table(registry: Registry) -> Panel:
    queries = (*occupancy_query(), *device_queries(registry, CHARGERS),
               *device_queries(registry, TEMPERATURE),
               *seqgaps.queries(IN_DISTRICT, ("station", "district")), LAG_QUERY)
    color_cells: dict[str, Any] = {"custom.cellOptions": {"type": "color-background"}}
    percent = {"unit": "percent", "decimals": 1, "thresholds": PERCENT, **color_cells}
    lag = {"unit": "ms", "thresholds": thresholds(Step("green"), Step("orange", 60_000), Step("red", 600_000)),
           **color_cells}
    overrides = (
        *(override(name, **percent) for name in ("人数 occupancy %", "充电 chargers %", "温度 temperature %")),
        override("序号缺口 open seq gaps", thresholds=thresholds(Step("green"), Step("orange", 1), Step("red", 100)),
                 **color_cells),
        override("延迟中位 lag p50", **lag), override("最大延迟 lag max", **lag),
        override("最小延迟 lag min", unit="ms", thresholds=thresholds(Step("red"), Step("green", -5_000)),
                 **color_cells),
    )
    return Panel(
        "table", "今日可信度 Can today's numbers be trusted? One row per station", queries, 24, 14, time_from=TODAY,
        transformations=(*seqgaps.transformations(("station", "district"), _AGGREGATES),
                         *(sum_of(tuple(f"{p} (sum)" for p in parts), c) for c, parts in _SUMMED.items()),
                         organize(exclude=(*seqgaps.PARTS, seqgaps.PRODUCED, *_PARTS),
                                  rename=TRUST_COLUMNS, order=tuple(TRUST_COLUMNS)),
                         sort_by("人数 occupancy %")),
        overrides=overrides, links=(station_link(),),
        options={"showHeader": True, "cellHeight": "sm"},
        description="Today (Beijing time): completeness per kind (red below 90 %), seq gaps still open, lag from "
                    "device time to arrival (p50, max) and the minimum lag (negative: the clock runs ahead). "
                    "Sort by any column.")


def lag_row() -> Row:
    overall = Query(select('max("lag_p50_ms") AS "p50", max("lag_p99_ms") AS "p99"', monitor("ingest_stats"),
                           group="time($__interval)", fill="none"), columns=("p50", "p99"))
    per_station = Query(select('min("lag_min_ms") AS "lag_min_ms"', monitor("ingest_station_lag"),
                               conditions=where(TIME, IN_DISTRICT), group='time($__interval), "station"', fill="none"),
                        columns=("lag_min_ms",), alias="$tag_station")
    thin = lines(fill=0)
    return Row("延迟与时钟 Lag and clocks", (
        Panel("timeseries", "到达延迟 Lag from device time to arrival, p50 / p99 per minute", (overall,), 12, 9,
              unit="ms", interval="1m", custom=thin, options=LEGEND,
              description="arrival time - ts over the readings of each ingest_stats interval. Large while stations "
                          "are online: readings arrive late (buffered, replayed)."),
        Panel("timeseries", "时钟 Minimum lag per station (below 0: the clock runs ahead)", (per_station,), 12, 9,
              unit="ms", interval="1m", custom={**thin, "thresholdsStyle": {"mode": "line+area"}},
              thresholds=thresholds(Step("red"), Step("transparent", 0)), options=LEGEND,
              description="From ingest_station_lag (every 60 s per station heard from). A reading cannot arrive "
                          "before it is taken: a persistently negative minimum is a clock ahead of the server."),
    ))


def dashboard(registry: Registry) -> Dashboard:
    return Dashboard(
        uid=UID, title="数据完整性 Data completeness",
        description="Readings received against expected, seq gaps, lag and clocks: which stations' numbers "
                    "cannot be trusted.",
        rows=(Row("今天 Today", (trust_table(registry),)), hours_row(registry), days_row(registry), lag_row()),
        variables=(DISTRICT,),
    )
