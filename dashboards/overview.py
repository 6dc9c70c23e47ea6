"""城市总览 City overview: every instrumented station on a map, what is happening now, visits (人次).

Panels, top to bottom: stations online and offline, people in stations, charger sockets and power
now; the map (coloured by online/offline, sized by people) and the coldest stations; stations
silent for more than 10 minutes and the pipeline's readings and rejects per minute; visits
(人次) per day and per month, by district and by station, computed from the door counters.
"""

from __future__ import annotations

from statistics import fmean

from dashboards.builder import (
    LEGEND,
    ONLINE_MAPPING,
    Dashboard,
    Panel,
    Query,
    Row,
    Step,
    Variable,
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

UID = "yizhan-overview"
GAZETTEER = "public/gazetteer/yizhan-stations.json"
"""Station locations for the map, generated from the registry (``dashboards/provisioning/gazetteer``)."""
NOW = "15m"
"""Panels about "now" look at the last 15 minutes: a station silent longer counts as absent."""
SILENT_MINUTES = 10

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
    # Minutes aligned on the end of the range (${__to}), newest first: counting backwards, a
    # cumulative sum stays 0 over the trailing minutes without a reading, and their number is how
    # long the station has been silent.
    minutes = select('count("seq") AS "n"', m("occupancy"), conditions=where(TIME, IN_DISTRICT),
                     group=f"time(1m, ${{__to}}ms), {by}", fill="0", newest_first=True)
    backwards = select('cumulative_sum("n") AS "c"', sub(minutes), group=by, newest_first=True)
    silent = select('count("c") AS "silent_minutes"', sub(backwards), conditions=where(TIME, '"c" = 0'), group=by,
                    newest_first=True)
    longer = f'"silent_minutes" > {SILENT_MINUTES}'
    query = Query(select('"silent_minutes"', sub(silent), conditions=where(TIME, longer), group=by, newest_first=True),
                  columns=("station", "district", "silent_minutes"), table=True)
    return Panel("table", f"超过{SILENT_MINUTES}分钟无数据 Stations silent for more than {SILENT_MINUTES} minutes",
                 (query,), 12, 8, unit="m", no_value="无 none",
                 thresholds=thresholds(Step("orange"), Step("red", 60)),
                 overrides=(override("silent_minutes", displayName="无数据 silent for",
                                     custom_cellOptions={"type": "color-background"}),),
                 links=(station_link(),),
                 transformations=(organize(exclude=("Time",)), sort_by("silent_minutes", desc=True)),
                 options={"showHeader": True, "cellHeight": "sm"},
                 description="Stations with no occupancy reading (one a minute when healthy) in the last "
                             f"{SILENT_MINUTES}+ minutes of the range, and for how long.")


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


_VISITS = select('non_negative_difference("entries") AS "visits"', m("occupancy"), conditions=where(TIME, IN_DISTRICT),
                 group=tags("station", "district"))
"""Visits between consecutive readings, from the cumulative door counter (a counter reset only loses
the visits of that one interval)."""


def _visits(group: str, *, per_day: bool) -> str:
    by = f"{DAY}, {group}" if per_day else group
    return select('sum("visits") AS "visits"', sub(_VISITS), group=by)


def visits_row() -> Row:
    bars = {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1, "stacking": {"mode": "normal", "group": "A"},
            "showPoints": "never"}
    table_options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": True, "reducer": ["sum"],
                                                                         "fields": ["visits"]}}
    return Row("人次 Visits (from the door counters)", (
        Panel("timeseries", "每日人次 Visits per day, by district", (
            Query(_visits('"district"', per_day=True), columns=("visits",), alias="$tag_district"),), 12, 9,
            time_from="now-6d/d", unit="none", custom=bars,
            options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["sum"], "showLegend": True},
                     "tooltip": {"mode": "multi", "sort": "desc"}},
            description="Entries counted by the stations' doors per day (Beijing time), the last 7 days."),
        Panel("bargauge", "本月人次 Visits this month, by district", (
            Query(_visits('"district"', per_day=False), columns=("visits",), alias="$tag_district"),), 12, 9,
            time_from="now/M", unit="none", thresholds=thresholds(Step("blue")),
            options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True},
            description="The 人次 figure reported upwards: entries this month so far. For a past month, "
                        "pick it in the time picker and read the table below."),
        Panel("table", "本月人次 Visits this month, per station", (
            Query(_visits('"station", "district"', per_day=False), columns=("station", "district", "visits"),
                  table=True),), 12, 10,
            time_from="now/M", unit="none", links=(station_link(),), options=table_options,
            transformations=(organize(exclude=("Time",)), sort_by("visits", desc=True)),
            overrides=(override("visits", displayName="人次 visits"),)),
        Panel("table", "每日人次 Visits per station and day (selected range)", (
            Query(_visits('"station", "district"', per_day=True), columns=("station", "district", "visits"),
                  table=True),), 12, 10,
            unit="none", links=(station_link(),), options=table_options,
            overrides=(override("visits", displayName="人次 visits"), override("Time", displayName="日 day",
                                                                               unit="time:YYYY-MM-DD")),
            description="One row per station and Beijing day in the dashboard's range: export it as CSV for "
                        "a monthly report (pick the month in the time picker)."),
    ))


def dashboard(registry: Registry) -> Dashboard:
    return Dashboard(
        uid=UID, title="驿站总览 City overview",
        description="Pingliang's instrumented rest stations: online state, people, chargers, temperature, "
                    "visits (人次).",
        rows=(now_row(registry), map_row(registry), attention_row(), visits_row()),
        variables=(DISTRICT,),
    )
