"""数据完整性 Data completeness: can today's numbers of each station be trusted?

- For every station and hour, readings received against readings expected from its reporting
  intervals (the contract's defaults: occupancy every 60 s, each charger every 30 s, each sensor
  every 60 s) and its devices in the registry. Occupancy also reports on change, so for it the
  measure is the share of minutes with at least one reading.
- The ``seq`` gaps still open (see :mod:`dashboards.seqgaps`): a replay that fills a gap closes it.
- The lag between a reading's device time and its arrival: p50/p99 per minute from
  ``ingest_stats``, and per station from ``ingest_station_lag``, where a persistently negative
  minimum lag is a clock running ahead and a large one while online a station whose readings come
  late.
- One table, one row per station, that an operator sorts to find the stations to distrust today.

Expected readings per minute are ``devices x 60 / interval``; stations are grouped by their number
of chargers or sensors, one query per group, because InfluxQL has no per-series constants.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from dashboards import seqgaps
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
    thresholds,
)
from dashboards.influxql import IN_DISTRICT, TIME, m, monitor, one_of, select, sub, tags, where
from dashboards.overview import DISTRICT
from telemetry.contract import AgentConfig
from telemetry.registry import Registry, Station

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

    @property
    def column(self) -> str:
        return f"{self.name}_pct"


CHARGERS = Kind("chargers", "charger", "充电桩 Chargers", DEFAULTS.charger_interval_s, lambda s: len(s.chargers))
TEMPERATURE = Kind("temperature", "temperature", "温度 Temperature", DEFAULTS.temperature_interval_s,
                   lambda s: len(s.sensors))
OCCUPANCY_COLUMN = "occupancy_pct"


def _groups(registry: Registry, kind: Kind) -> dict[int, list[str]]:
    """Reporting stations by their number of devices of ``kind`` (stations without any left out)."""
    groups: dict[int, list[str]] = defaultdict(list)
    for station in registry.reporting:
        if n := kind.devices(station):
            groups[n].append(station.id)
    return dict(sorted(groups.items()))


def _outer(fields: str, inner: str, *, hourly: bool) -> str:
    # Outer grouped by time: it repeats $timeFilter. Not grouped by time: it must not (InfluxDB 1.6
    # returns nothing for that over a filled subquery).
    if hourly:
        return select(fields, sub(inner), group='time(1h), "station"')
    return select(fields, sub(inner), conditions=None, group=tags("station", "district"))


def _minutes(*, hourly: bool) -> str:
    return "time(1m), " + (tags("station") if hourly else tags("station", "district"))


def occupancy_query(*, hourly: bool) -> Query:
    """Share of minutes with an occupancy reading: count/count is 1 for such a minute, fill(0) 0 otherwise."""
    expected = min(1.0, 60 / DEFAULTS.occupancy_interval_s)  # share of minutes with a reading when healthy
    inner = select('count("seq") / count("seq") AS "ok"', m("occupancy"), conditions=where(TIME, IN_DISTRICT),
                   group=_minutes(hourly=hourly), fill="0")
    text = _outer(f'100 * mean("ok") / {expected:g} AS "{OCCUPANCY_COLUMN}"', inner, hourly=hourly)
    if hourly:
        return Query(text, columns=(OCCUPANCY_COLUMN,), alias="$tag_station")
    return Query(text, columns=("station", "district", OCCUPANCY_COLUMN), table=True)


def device_queries(registry: Registry, kind: Kind, *, hourly: bool) -> tuple[Query, ...]:
    """Readings per minute over expected per minute (devices x 60 / interval), one query per group."""
    out = []
    for devices, ids in _groups(registry, kind).items():
        expected = devices * 60 / kind.interval_s
        inner = select('count("seq") AS "n"', m(kind.measurement),
                       conditions=where(TIME, IN_DISTRICT, f'"station" =~ {one_of(ids)}'),
                       group=_minutes(hourly=hourly), fill="0")
        fields = f'100 * mean("n") / {expected:g} AS "{kind.column}"'
        out.append(Query(_outer(fields, inner, hourly=hourly),
                         columns=(kind.column,) if hourly else ("station", "district", kind.column),
                         table=not hourly, alias="$tag_station" if hourly else None))
    return tuple(out)


def _hours(title: str, queries: tuple[Query, ...], description: str) -> Panel:
    return Panel("status-history", title, queries, 24, 12, unit="percent", decimals=0, thresholds=PERCENT,
                 minimum=0, maximum=100, interval="1h", custom={"fillOpacity": 80, "lineWidth": 0},
                 options={"showValue": "auto", "rowHeight": 0.9, "colWidth": 0.9,
                          "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
                          "tooltip": {"mode": "single", "sort": "none"}},
                 description=description)


def hours_row(registry: Registry) -> Row:
    return Row("每站每小时 Per station and hour: received / expected", (
        _hours("人数 Occupancy: minutes with a reading (%)", (occupancy_query(hourly=True),),
               f"Occupancy is read every {DEFAULTS.occupancy_interval_s} s and on change: the share of minutes "
               "that have a reading."),
        _hours(f"{CHARGERS.label}: readings received / expected (%)", device_queries(registry, CHARGERS, hourly=True),
               f"Each charger reports every {CHARGERS.interval_s} s: expected = chargers x {60 // CHARGERS.interval_s} "
               "a minute."),
        _hours(f"{TEMPERATURE.label}: readings received / expected (%)",
               device_queries(registry, TEMPERATURE, hourly=True),
               f"Each sensor reports every {TEMPERATURE.interval_s} s: expected = sensors x 1 a minute."),
    ))


LAG_QUERY = Query(
    select('median("lag_p50_ms") AS "lag_p50_ms", max("lag_max_ms") AS "lag_max_ms", min("lag_min_ms") AS "lag_min_ms"',
           monitor("ingest_station_lag"), conditions=where(TIME, IN_DISTRICT), group=tags("station", "district")),
    columns=("station", "district", "lag_p50_ms", "lag_max_ms", "lag_min_ms"), table=True)

_AGGREGATES: Final[dict[str, tuple[str, ...]]] = {
    OCCUPANCY_COLUMN: ("max",), CHARGERS.column: ("max",), TEMPERATURE.column: ("max",),
    "lag_p50_ms": ("max",), "lag_max_ms": ("max",), "lag_min_ms": ("min",),
}
TRUST_COLUMNS: Final = {
    "station": "驿站 station", "district": "区县 district",
    f"{OCCUPANCY_COLUMN} (max)": "人数 occupancy %", f"{CHARGERS.column} (max)": "充电 chargers %",
    f"{TEMPERATURE.column} (max)": "温度 temperature %", seqgaps.RECEIVED: "收到 received",
    seqgaps.GAPS: "序号缺口 open seq gaps", "lag_p50_ms (max)": "延迟中位 lag p50",
    "lag_max_ms (max)": "最大延迟 lag max", "lag_min_ms (min)": "最小延迟 lag min",
}
"""The trust table's columns after its transformations, and their titles."""


def trust_table(registry: Registry) -> Panel:
    queries = (occupancy_query(hourly=False), *device_queries(registry, CHARGERS, hourly=False),
               *device_queries(registry, TEMPERATURE, hourly=False),
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
                         organize(exclude=(seqgaps.FIRST, seqgaps.END, seqgaps.SPAN, seqgaps.PRODUCED),
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
        rows=(Row("今天 Today", (trust_table(registry),)), hours_row(registry), lag_row()),
        variables=(DISTRICT,),
    )
