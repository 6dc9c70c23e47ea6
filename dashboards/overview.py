"""城市总览 City overview: every instrumented station on a map, what is happening now, visits (人次).

Panels, top to bottom: stations online and offline, people in stations, charger sockets and power
now; the map (coloured by online/offline, sized by people) and the coldest stations; stations
silent for more than 10 minutes and the pipeline's readings and rejects per minute; visits
(人次) this year, since the start, per month, per day, by district and by station, from the door
counters' hourly rollups plus the open hour (:mod:`dashboards.rollups`).
"""

from __future__ import annotations

from statistics import fmean

from dashboards import rollups
from dashboards.builder import (
    LEGEND,
    ONLINE_MAPPING,
    Dashboard,
    Panel,
    Query,
    Row,
    Step,
    Transformation,
    Variable,
    bars,
    format_time,
    group_by,
    grouping_to_matrix,
    join_by,
    limit,
    lines,
    organize,
    override,
    sort_by,
    stat,
    station_link,
    thresholds,
)
from dashboards.influxql import DAY, IN_DISTRICT, TIME, m, monitor, rate, select, sub, tags, where
from telemetry.registry import Registry
from telemetry.storage import OCCUPANCY_1H

UID = "yizhan-overview"
GAZETTEER = "public/gazetteer/yizhan-stations.json"
"""Station locations for the map, generated from the registry (``dashboards/provisioning/gazetteer``)."""
NOW = "15m"
"""Panels about "now" look at the last 15 minutes: a station silent longer counts as absent."""
SILENT_MINUTES = 10
SILENT_DAYS = 30
SILENT_WINDOW = f"{SILENT_DAYS}d"
"""The silent-stations panel's range: a station silent longer has left it (its cost hardly grows with it)."""

DISTRICT = Variable("district", "区县 District", 'SHOW TAG VALUES FROM "station_status" WITH KEY = "district"',
                    multi=True, include_all=True, all_value=".*")


def _stations_in_state(online: bool) -> Query:
    latest = select('last("online") AS "online"', m("station_status"), conditions=where(TIME, IN_DISTRICT),
                    group=tags("station"))
    return Query(select('count("online") AS "stations"', sub(latest),
                        conditions=where(TIME, f'"online" = {str(online).lower()}')), columns=("stations",))


def _last_summed(measurement: str, fields: tuple[str, ...], per: tuple[str, ...]) -> Query:
    inner = ", ".join(f'last("{f}") AS "{f}"' for f in fields)
    outer = ", ".join(f'sum("{f}") AS "{f}"' for f in fields)
    latest = select(inner, m(measurement), conditions=where(TIME, IN_DISTRICT), group=tags(*per))
    return Query(select(outer, sub(latest)), columns=fields, alias="$col")


def now_row(registry: Registry) -> Row:
    total = len(registry.reporting)
    return Row("现在 Now", (
        stat("在线驿站 Stations online", _stations_in_state(True), 4, no_value="0", unit="none",
              description=f"Stations whose latest status in the range says online ({total} are instrumented).",
              thresholds=thresholds(Step("green"))),
        stat("离线驿站 Stations offline", _stations_in_state(False), 4, no_value="0", unit="none",
              description="Stations whose latest status says offline (shut down, or the broker's last will).",
              thresholds=thresholds(Step("green"), Step("red", 1))),
        stat("站内人数 People in stations now", _last_summed("occupancy", ("people",), ("station",)), 4,
              time_from=NOW, unit="none", thresholds=thresholds(Step("blue")),
              description="Sum of each station's latest people count in the last 15 minutes."),
        stat("充电插座 Charger sockets in use / total",
              _last_summed("charger", ("sockets_in_use", "sockets_total"), ("station", "charger")), 6,
              time_from=NOW, unit="none", thresholds=thresholds(Step("purple")),
              overrides=(override("sockets_in_use", displayName="在用 in use"),
                         override("sockets_total", displayName="总数 total"))),
        stat("充电功率 Charging power now", _last_summed("charger", ("power_w",), ("station", "charger")), 6,
              time_from=NOW, unit="watt", decimals=1, thresholds=thresholds(Step("orange"))),
    ))


def _map(registry: Registry) -> Panel:
    people = Query(select('last("people") AS "people"', m("occupancy"), conditions=where(TIME, IN_DISTRICT),
                          group=tags("station")), columns=("station", "people"), table=True)
    online = Query(select('last("online") AS "online"', m("station_status"), conditions=where(TIME, IN_DISTRICT),
                          group=tags("station")), columns=("station", "online"), table=True)
    stations = registry.reporting
    layer = {
        "type": "markers", "name": "驿站 Stations", "tooltip": True,
        "location": {"mode": "lookup", "lookup": "station", "gazetteer": GAZETTEER},
        "config": {
            "showLegend": True,
            "style": {
                "size": {"field": "people", "fixed": 6, "min": 6, "max": 24},
                "color": {"field": "online", "fixed": "green"},
                "opacity": 0.8,
                "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                "text": {"mode": "field", "field": "station", "fixed": ""},
                "textConfig": {"fontSize": 10, "offsetY": -14, "textAlign": "center", "textBaseline": "middle"},
            },
        },
    }
    options = {
        "view": {"id": "coords", "lat": round(fmean(s.location.lat for s in stations), 3),
                 "lon": round(fmean(s.location.lon for s in stations), 3), "zoom": 8, "allLayers": True},
        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
        "basemap": {"type": "default", "name": "Basemap", "config": {}},
        "layers": [layer],
        "tooltip": {"mode": "details"},
    }
    return Panel("geomap", "驿站地图 Stations: online (green) / offline (red), size = people", (people, online),
                 14, 14, options=options, transformations=(join_by("station"),),
                 overrides=(override("online", mappings=[ONLINE_MAPPING]),),
                 description="Each instrumented station at its registry location: colour from its latest "
                             "status, size from its latest people count in the range.")


def _coldest() -> Panel:
    indoor = "\"sensor\" = 'indoor'"
    query = Query(select('last("celsius") AS "celsius"', m("temperature"), conditions=where(TIME, indoor, IN_DISTRICT),
                         group=tags("station", "district")),
                  columns=("station", "district", "celsius"), table=True)
    return Panel("table", "最冷驿站 Coldest stations (indoor, now)", (query,), 10, 14, time_from=NOW, unit="celsius",
                 decimals=1, thresholds=thresholds(Step("red"), Step("orange", 10), Step("green", 16)),
                 custom={"cellOptions": {"type": "auto"}, "align": "auto"},
                 overrides=(override("celsius", custom_cellOptions={"type": "color-background"},
                                     displayName="室内 indoor °C"),),
                 links=(station_link(),),
                 transformations=(organize(exclude=("Time",)), sort_by("celsius"), limit(10)),
                 options={"showHeader": True, "cellHeight": "sm"},
                 description="Latest indoor temperature per station, coldest first: below 10 °C the heating "
                             "has failed (alert after 15 minutes).")


def map_row(registry: Registry) -> Row:
    return Row("地图 Map", (_map(registry), _coldest()))


def _silent() -> Panel:
    by = tags("station", "district")
    # Each station's newest reading in the range (raw, at its own time) and a point at ${__to}: the
    # newest of the range's buckets aligned on ${__to}, which fill(0) makes for every station of the
    # first query. The two sources merge per series, and elapsed() between its two points is how long
    # the station has been silent (1.6 does not merge them in time order: either sign, hence abs()).
    # Two points per station, where one-minute buckets of every station over 6 h took 2-12 s at
    # 1,000 stations. The two outer queries take no time filter: they do not group by time.
    newest = select('"seq"', m("occupancy"), conditions=where(TIME, IN_DISTRICT), group=by, newest_first=True,
                    limit=1)
    at_end = select('count("seq") AS "seq"', sub(newest), group=f"time({SILENT_WINDOW}, ${{__to}}ms), {by}",
                    fill="0", newest_first=True, limit=1)
    gap = select('elapsed("seq", 1ms) AS "silent_ms"', f"{sub(newest)}, {sub(at_end)}", conditions=None, group=by,
                 newest_first=True)
    limit_ms = SILENT_MINUTES * 60_000
    longer = f'("silent_ms" > {limit_ms} OR "silent_ms" < -{limit_ms})'
    query = Query(select('abs("silent_ms") / 60000 AS "silent_minutes"', sub(gap), conditions=longer, group=by,
                         newest_first=True),
                  columns=("station", "district", "silent_minutes"), table=True)
    return Panel("table", f"超过{SILENT_MINUTES}分钟无数据 Stations silent for more than {SILENT_MINUTES} minutes",
                 (query,), 12, 8, time_from=SILENT_WINDOW, unit="m", no_value="无 none",
                 thresholds=thresholds(Step("orange"), Step("red", 60)),
                 overrides=(override("silent_minutes", displayName="无数据 silent for",
                                     custom_cellOptions={"type": "color-background"}),),
                 links=(station_link(),),
                 transformations=(organize(exclude=("Time",)), sort_by("silent_minutes", desc=True)),
                 options={"showHeader": True, "cellHeight": "sm"},
                 description="Stations whose newest occupancy reading (one a minute when healthy) is more than "
                             f"{SILENT_MINUTES} minutes old, and how long ago it came, among the stations heard "
                             f"from in the last {SILENT_DAYS} days (the panel's range: a station silent for longer "
                             "has left the table).")


def _throughput() -> Panel:
    readings, rejects = rate("sum", "readings", 60), rate("sum", "rejects", 60)
    query = Query(select(f'{readings} AS "readings", {rejects} AS "rejects"', monitor("ingest_stats"),
                         group="time($__interval)", fill="0"), columns=("readings", "rejects"), alias="$col")
    return Panel("timeseries", "读数与拒收 Readings and rejects per minute", (query,), 12, 8, unit="suffix:/min",
                 interval="1m", custom=lines(axisSoftMin=0),
                 overrides=(override("readings", displayName="读数 readings"),
                            override("rejects", displayName="拒收 rejects", custom_axisPlacement="right",
                                     color={"mode": "fixed", "fixedColor": "red"})),
                 options=LEGEND,
                 description="From ingest's own ingest_stats points (every 10 s): readings received and "
                             "messages rejected, per minute.")


def attention_row() -> Row:
    return Row("注意 Attention", (_silent(), _throughput()))


VISITS_COLUMN = "visits"
MATRIX_X = rollups.matrix_x("district")


def visits_queries(by: tuple[str, ...], *, per_day: bool, table: bool = True) -> tuple[Query, Query]:
    """人次 by ``by`` (and per Beijing day): the closed hours' rollups, then the open hour's raw steps of
    the door counter (``docs/rollups.md``); :func:`dashboards.rollups.combine` adds them."""
    group = f"{DAY}, {tags(*by)}" if per_day else tags(*by)
    closed = rollups.closed(f'sum("visits") AS "{VISITS_COLUMN}"', OCCUPANCY_1H, IN_DISTRICT, group=group)
    per = ("station", "district")
    open_hour = rollups.open_steps("entries", "occupancy", VISITS_COLUMN, IN_DISTRICT, per=per)
    return (Query(closed, columns=(*by, VISITS_COLUMN), table=table),
            Query(open_hour, columns=(*per, VISITS_COLUMN + rollups.OPEN_SUFFIX), table=table))


def _visits_stat(title: str, time_from: str, description: str) -> Panel:
    options = {"reduceOptions": {"calcs": ["sum"], "fields": f"/^{VISITS_COLUMN}$/", "values": False},
               "colorMode": "value", "graphMode": "none", "textMode": "value", "justifyMode": "auto",
               "orientation": "auto"}
    return Panel("stat", title, visits_queries(("district",), per_day=False), 6, 5, time_from=time_from,
                 unit="none", no_value="0", thresholds=thresholds(Step("blue")), options=options,
                 transformations=rollups.combine(("district",), VISITS_COLUMN), description=description)


def _by_district_bars(title: str, time_from: str, transformations: tuple[Transformation, ...], *,
                      x_unit: str, description: str) -> Panel:
    return Panel("barchart", title, visits_queries(("district",), per_day=True), 12, 9, time_from=time_from,
                 unit="none", options=bars(MATRIX_X), custom={"fillOpacity": 80, "lineWidth": 1},
                 overrides=(override(MATRIX_X, unit=x_unit, displayName="日 day"),),
                 transformations=transformations, description=description)


def visits_row() -> Row:
    table_options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": True, "reducer": ["sum"],
                                                                         "fields": [VISITS_COLUMN]}}
    per_month = (*rollups.combine(("Time", "district"), VISITS_COLUMN), format_time("Time", "YYYY-MM"),
                 group_by(("Time", "district"), {VISITS_COLUMN: ("sum",)}),
                 grouping_to_matrix("district", "Time", f"{VISITS_COLUMN} (sum)"))
    return Row("人次 Visits (from the door counters)", (
        _visits_stat("本年人次 Visits this year", "now/y",
                     "Entries counted by the stations' doors since 1 January (Beijing time)."),
        _visits_stat("累计人次 Visits since the system started", "now-10y",
                     "Every entry counted since the first reading (rollups are kept 10 years)."),
        _by_district_bars("近12个月人次 Visits per month, by district (the last 12 months)", "now-11M/M",
                          per_month, x_unit="string",
                          description="Calendar months of Beijing time; this month so far."),
        _by_district_bars("每日人次 Visits per day, by district", "now-6d/d",
                          rollups.per_day("district", VISITS_COLUMN), x_unit="string",
                          description="Entries counted by the stations' doors per day (Beijing time), the last 7 "
                                      "days."),
        Panel("bargauge", "本月人次 Visits this month, by district", visits_queries(("district",), per_day=False),
              12, 9, time_from="now/M", unit="none", thresholds=thresholds(Step("blue")),
              transformations=rollups.combine(("district",), VISITS_COLUMN),
              options={"reduceOptions": {"calcs": [], "fields": f"/^{VISITS_COLUMN}$/", "values": True},
                       "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True},
              description="The 人次 figure reported upwards: entries this month so far. For a past month, "
                          "pick it in the time picker and read the table below."),
        Panel("table", "本月人次 Visits this month, per station",
              visits_queries(("station", "district"), per_day=False), 12, 10, time_from="now/M", unit="none",
              links=(station_link(),), options=table_options,
              transformations=(*rollups.combine(("station", "district"), VISITS_COLUMN),
                               sort_by(VISITS_COLUMN, desc=True)),
              overrides=(override(VISITS_COLUMN, displayName="人次 visits"),)),
        Panel("table", "每日人次 Visits per station and day (selected range)",
              visits_queries(("station", "district"), per_day=True), 12, 10,
              unit="none", links=(station_link(),), options=table_options,
              transformations=(rollups.days("YYYY-MM-DD"),
                               *rollups.combine(("Time", "station", "district"), VISITS_COLUMN)),
              overrides=(override(VISITS_COLUMN, displayName="人次 visits"), override("Time", displayName="日 day",
                                                                                     unit="string")),
              description="One row per station and Beijing day in the dashboard's range (whole hours): export it "
                          "as CSV for a monthly report (pick the month in the time picker)."),
    ))


def dashboard(registry: Registry) -> Dashboard:
    return Dashboard(
        uid=UID, title="驿站总览 City overview",
        description="Pingliang's instrumented rest stations: online state, people, chargers, temperature, "
                    "visits (人次).",
        rows=(now_row(registry), map_row(registry), attention_row(), visits_row()),
        variables=(DISTRICT,),
    )
