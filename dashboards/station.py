"""驿站详情 Station detail, for ``$station`` (chosen within ``$district``).

Online/offline history and the device's state; people against capacity; indoor and outdoor
temperature; sockets in use and power per charger, energy per day, charger faults; readings the
device still buffers or dropped, and the ``seq`` gaps still open.
"""

from __future__ import annotations

from dashboards import rollups, seqgaps
from dashboards.builder import (
    LEGEND,
    ONLINE_MAPPING,
    Dashboard,
    Panel,
    Query,
    Row,
    Step,
    Variable,
    bars,
    lines,
    organize,
    override,
    override_query,
    thresholds,
)
from dashboards.influxql import DAY, IN_STATION, TIME, m, select, where
from dashboards.overview import DISTRICT
from telemetry.registry import Registry
from telemetry.storage import CHARGER_1H

UID = "yizhan-station"
COLD_CELSIUS = 10

STATION = Variable("station", "驿站 Station",
                   'SHOW TAG VALUES FROM "station_status" WITH KEY = "station" WHERE "district" =~ /^$district$/')

DEVICE_FIELDS = ("fw", "uptime_s", "driver_errors", "config_rev")
_LINES = lines(spanNulls=False)


def _by_time(fields: str, measurement: str, *, per: tuple[str, ...] = (), fill: str = "none") -> str:
    group = ", ".join(("time($__interval)", *(f'"{t}"' for t in per)))
    return select(fields, m(measurement), conditions=where(IN_STATION, TIME), group=group, fill=fill)


def status_row() -> Row:
    timeline = Panel(
        "state-timeline", "在线/离线 Online / offline", (
            Query(_by_time('last("online") AS "online"', "station_status", fill="previous"), columns=("online",)),),
        16, 5, mappings=(ONLINE_MAPPING,), custom={"fillOpacity": 80, "lineWidth": 0},
        options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8, "alignValue": "left",
                 "legend": {"showLegend": False}},
        description="The station's status: online every status interval, offline when it shuts down or "
                    "the broker publishes its last will.")
    device = Panel(
        "stat", "设备 Device", (
            Query(select(", ".join(f'last("{f}") AS "{f}"' for f in DEVICE_FIELDS), m("station_status"),
                         conditions=where(IN_STATION, TIME, '"online" = true')), columns=DEVICE_FIELDS, alias="$col"),),
        8, 5, options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "/.*/", "values": False},
                       "colorMode": "none", "graphMode": "none", "textMode": "value_and_name",
                       "justifyMode": "auto", "orientation": "auto"},
        overrides=(override("fw", displayName="固件 firmware"),
                   override("uptime_s", unit="s", displayName="运行 uptime"),
                   override("driver_errors", displayName="驱动错误 driver errors"),
                   override("config_rev", displayName="配置 config")),
        description="From the latest online status.")
    return Row("状态 Status", (timeline, device))


def people_row() -> Row:
    people = Panel(
        "timeseries", "人数与容量 People and capacity", (
            Query(_by_time('max("people") AS "people"', "occupancy"), columns=("people",), alias="$col"),
            Query(_by_time('last("capacity") AS "capacity"', "occupancy", fill="previous"), columns=("capacity",),
                  alias="$col"),
        ), 12, 9, unit="none", minimum=0, custom=_LINES, options=LEGEND,
        overrides=(override("people", displayName="人数 people"),
                   override("capacity", displayName="座位 capacity", color={"mode": "fixed", "fixedColor": "red"},
                            custom_lineStyle={"fill": "dash", "dash": [10, 10]}, custom_fillOpacity=0)),
        description="Most people present per interval, against the station's seats (capacity, from the registry).")
    temperature = Panel(
        "timeseries", "温度 Indoor and outdoor temperature", (
            Query(_by_time('mean("celsius") AS "celsius"', "temperature", per=("sensor",)), columns=("celsius",),
                  alias="$tag_sensor"),), 12, 9,
        unit="celsius", decimals=1, custom={**_LINES, "thresholdsStyle": {"mode": "line+area"}},
        thresholds=thresholds(Step("red"), Step("transparent", COLD_CELSIUS)),
        options=LEGEND,
        description=f"Below {COLD_CELSIUS} °C indoors the heating has failed (the red band); the alert fires "
                    "after 15 minutes.")
    return Row("人数与温度 People and temperature", (people, temperature))


def charging_row() -> Row:
    sockets = Panel(
        "timeseries", "在用插座 Sockets in use, per charger", (
            Query(_by_time('max("sockets_in_use") AS "sockets_in_use"', "charger", per=("charger",)),
                  columns=("sockets_in_use",), alias="$tag_charger"),
            Query(_by_time('last("sockets_total") AS "sockets_total"', "charger", per=("charger",), fill="previous"),
                  columns=("sockets_total",), alias="$tag_charger total"),
        ), 12, 8, unit="none", minimum=0, custom={**_LINES, "lineInterpolation": "stepAfter"}, options=LEGEND,
        overrides=(override_query("B", custom_lineStyle={"fill": "dash", "dash": [10, 10]}, custom_fillOpacity=0),))
    power = Panel(
        "timeseries", "充电功率 Power, per charger", (
            Query(_by_time('mean("power_w") AS "power_w"', "charger", per=("charger",)), columns=("power_w",),
                  alias="$tag_charger"),), 12, 8, unit="watt", minimum=0, custom=_LINES, options=LEGEND)
    energy = Panel(
        "barchart", "每日用电 Energy per day, per charger", (
            Query(rollups.closed('sum("energy_wh") AS "energy_wh"', CHARGER_1H, IN_STATION, group=f'{DAY}, "charger"'),
                  columns=("charger", "energy_wh"), table=True),
            Query(rollups.open_steps("energy_wh", "charger", "energy_wh", IN_STATION, per=("station", "charger")),
                  columns=("station", "charger", "energy_wh_open"), table=True),
        ), 12, 8, time_from="now-6d/d", unit="watth", decimals=1, options=bars(rollups.matrix_x("charger")),
        custom={"fillOpacity": 80, "lineWidth": 1}, transformations=rollups.per_day("charger", "energy_wh"),
        overrides=(override(rollups.matrix_x("charger"), unit="string", displayName="日 day"),),
        description="From each charger's cumulative meter, per day (Beijing time), the last 7 days: hourly "
                    "rollups and the open hour.")
    faults = Panel(
        "state-timeline", "充电桩故障 Charger faults", (
            Query(_by_time('last("fault") AS "fault"', "charger", per=("charger",), fill="null"),
                  columns=("fault",), alias="$tag_charger"),), 12, 8,
        no_value="无故障 no fault", color={"mode": "fixed", "fixedColor": "red"},
        custom={"fillOpacity": 80, "lineWidth": 0},
        options={"showValue": "auto", "mergeValues": True, "rowHeight": 0.8, "alignValue": "left",
                 "legend": {"showLegend": False}},
        description="The fault code a charger reports, while it reports one (the alert fires at once).")
    return Row("充电 Charging", (sockets, power, energy, faults))


def data_row() -> Row:
    buffered = Panel(
        "timeseries", "缓冲与丢弃 Readings buffered and dropped by the device", (
            Query(_by_time('max("buffered") AS "buffered", max("dropped") AS "dropped"', "station_status"),
                  columns=("buffered", "dropped"), alias="$col"),), 16, 8,
        unit="none", minimum=0, custom=_LINES, options=LEGEND,
        overrides=(override("buffered", displayName="缓冲 buffered"),
                   override("dropped", displayName="丢弃 dropped (lost for good)",
                            color={"mode": "fixed", "fixedColor": "red"})),
        description="From the status: readings waiting in the device's buffer (network down, replaying) and "
                    "readings it dropped because the buffer was full.")
    gaps = Panel(
        "stat", "序号缺口 Open seq gaps", seqgaps.queries(IN_STATION, ("station",)), 8, 8,
        transformations=(*seqgaps.transformations(("station",)),
                         organize(exclude=("station", *seqgaps.PARTS))),
        unit="none", thresholds=thresholds(Step("green"), Step("orange", 1)),
        overrides=(override(seqgaps.GAPS, displayName="缺口 missing"),
                   override(seqgaps.RECEIVED, displayName="收到 received"),
                   override(seqgaps.PRODUCED, displayName="产生 produced",
                            color={"mode": "fixed", "fixedColor": "text"})),
        options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "/.*/", "values": False},
                 "colorMode": "value", "graphMode": "none", "textMode": "value_and_name", "justifyMode": "auto",
                 "orientation": "vertical"},
        description="Readings the station produced in the range (by seq) against those stored: the missing "
                    "ones are lost or not replayed yet; a replay closes its gap.")
    return Row("数据 Data", (buffered, gaps))


def dashboard(_registry: Registry) -> Dashboard:
    return Dashboard(
        uid=UID, title="驿站详情 Station detail",
        description="One station: online history, people, temperature, chargers, readings buffered and missing.",
        rows=(status_row(), people_row(), charging_row(), data_row()),
        variables=(DISTRICT, STATION),
    )
