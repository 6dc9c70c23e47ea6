"""管道健康 Pipeline health: ingest's own ``ingest_stats`` (every 10 s) and ``ingest_rejects``.

Everything here comes from InfluxDB itself, so no Prometheus is needed: whether ingest is connected
to the broker and writing to InfluxDB, readings and points written per second, rejects by reason,
the disk spool, write latency and points pending.
"""

from __future__ import annotations

from typing import Any

from dashboards.builder import (
    LEGEND,
    UP_MAPPING,
    Dashboard,
    Panel,
    Query,
    Row,
    Step,
    Variable,
    lines,
    organize,
    override,
    stat,
    thresholds,
)
from dashboards.influxql import TIME, monitor, rate, select, tags, where
from telemetry.registry import Registry

UID = "yizhan-pipeline"
IN_INSTANCE = '"instance" =~ /^$instance$/'
INSTANCE = Variable("instance", "实例 ingest instance", 'SHOW TAG VALUES FROM "ingest_stats" WITH KEY = "instance"',
                    multi=True, include_all=True, all_value=".*")
_STATS = where(IN_INSTANCE, TIME)
_LINES = lines()


def _stat(title: str, query: Query, width: int, **kwargs: Any) -> Panel:
    return stat(title, query, width, graph="area", **kwargs)


def _last_per_instance(field: str) -> Query:
    return Query(select(f'last("{field}") AS "{field}"', monitor("ingest_stats"), conditions=_STATS,
                        group=tags("instance")),
                 columns=(field,), alias="$tag_instance")


def now_row() -> Row:
    return Row("现在 Now", (
        _stat("MQTT 连接 Connected to the broker", _last_per_instance("mqtt_connected"), 5, time_from="5m",
              mappings=(UP_MAPPING,), no_value="无数据 no stats",
              description="ingest's latest ingest_stats point: connected to the broker."),
        _stat("InfluxDB 写入 Writes succeed", _last_per_instance("influx_up"), 5, time_from="5m",
              mappings=(UP_MAPPING,), no_value="无数据 no stats",
              description="ingest's latest ingest_stats point: its last write to InfluxDB succeeded."),
        _stat("读数/秒 Readings per second (last minute)",
              Query(select('sum("readings") / 60 AS "readings_per_s"', monitor("ingest_stats"), conditions=_STATS),
                    columns=("readings_per_s",)), 5,
              time_from="1m", unit="none", decimals=1, thresholds=thresholds(Step("blue"))),
        _stat("缓存 Spool", _last_per_instance("spool_bytes"), 5, time_from="5m", unit="bytes",
              thresholds=thresholds(Step("green"), Step("orange", 1)),
              description="Bytes waiting in the disk spool because InfluxDB did not take them (0 when healthy)."),
        _stat("待写 Points pending", _last_per_instance("pending_points"), 4, time_from="5m", unit="none",
              thresholds=thresholds(Step("green"), Step("orange", 20_000))),
    ))


def throughput_row() -> Row:
    per_second = ", ".join(f'{rate("sum", name, 1)} AS "{name}"' for name in ("readings", "points_written", "messages"))
    written = Query(select(per_second, monitor("ingest_stats"), conditions=_STATS, group="time($__interval)", fill="0"),
                    columns=("readings", "points_written", "messages"), alias="$col")
    per_minute = rate("count", "detail", 60)
    rejects = Query(select(f'{per_minute} AS "rejects"', monitor("ingest_rejects"), group='time($__interval), "reason"',
                           fill="0"), columns=("rejects",), alias="$tag_reason")
    return Row("吞吐 Throughput", (
        Panel("timeseries", "写入速率 Readings and points written per second", (written,), 12, 8,
              unit="suffix:/s", interval="10s", custom=_LINES, options=LEGEND,
              overrides=(override("readings", displayName="读数 readings received"),
                         override("points_written", displayName="写入点 points written"),
                         override("messages", displayName="消息 MQTT messages")),
              description="Per second over each interval: readings received, points InfluxDB took (readings, "
                          "status and reject points), MQTT messages."),
        Panel("timeseries", "拒收 Rejects by reason, per minute", (rejects,), 12, 8, unit="suffix:/min",
              interval="1m", custom={"drawStyle": "bars", "fillOpacity": 80, "showPoints": "never",
                                     "stacking": {"mode": "normal", "group": "A"}},
              options=LEGEND, description="Each reject is a point in ingest_rejects (docs/contract.md, Rejects)."),
    ))


def storage_row() -> Row:
    def per_instance(fields: str, fill: str | None = None) -> str:
        return select(fields, monitor("ingest_stats"), conditions=_STATS, group='time($__interval), "instance"',
                      fill=fill)

    spool = Query(per_instance('max("spool_bytes") AS "spool_bytes"'), columns=("spool_bytes",), alias="$tag_instance")
    latency = Query(per_instance('mean("write_ms_mean") AS "mean", max("write_ms_max") AS "max"'),
                    columns=("mean", "max"), alias="$tag_instance $col")
    pending = Query(per_instance('max("pending_points") AS "pending_points"'), columns=("pending_points",),
                    alias="$tag_instance")
    up = (Query(per_instance('last("mqtt_connected") AS "mqtt_connected"', "previous"), columns=("mqtt_connected",),
                alias="MQTT $tag_instance"),
          Query(per_instance('last("influx_up") AS "influx_up"', "previous"), columns=("influx_up",),
                alias="InfluxDB $tag_instance"))
    return Row("存储 Storage", (
        Panel("timeseries", "写入延迟 InfluxDB write latency", (latency,), 12, 8, unit="ms", interval="10s",
              custom=_LINES, options=LEGEND, description="Mean and slowest write per interval."),
        Panel("timeseries", "缓存 Spool size", (spool,), 12, 8, unit="bytes", minimum=0, interval="10s", custom=_LINES,
              options=LEGEND, description="Grows while InfluxDB is down; falls back to 0 as the spool replays."),
        Panel("timeseries", "待写 Points pending", (pending,), 12, 8, unit="none", minimum=0, interval="10s",
              custom=_LINES, options=LEGEND, description="Received but not yet written or spooled (bounded)."),
        Panel("state-timeline", "连接 Connections", up, 12, 8, mappings=(UP_MAPPING,), interval="10s",
              custom={"fillOpacity": 80, "lineWidth": 0},
              options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8, "legend": {"showLegend": False}}),
    ))


def rejects_row() -> Row:
    latest = Query(select('"reason", "station", "topic", "detail"', monitor("ingest_rejects"), newest_first=True,
                          limit=200),
                   columns=("reason", "station", "topic", "detail"), table=True)
    return Row("拒收明细 Latest rejects", (
        Panel("table", "最近拒收 The latest 200 rejects", (latest,), 24, 10,
              options={"showHeader": True, "cellHeight": "sm"},
              overrides=(override("Time", displayName="时间 time"), override("reason", displayName="原因 reason"),
                         override("station", displayName="驿站 station"), override("topic", displayName="主题 topic"),
                         override("detail", displayName="详情 detail")),
              transformations=(organize(order=("Time", "reason", "station", "topic", "detail")),),
              description="What was refused, from where, and why: docs/operations.md says what to do."),
    ))


def dashboard(_registry: Registry) -> Dashboard:
    return Dashboard(
        uid=UID, title="管道健康 Pipeline health",
        description="ingest's own statistics, written into InfluxDB every 10 s: no Prometheus needed.",
        rows=(now_row(), throughput_row(), storage_row(), rejects_row()),
        variables=(INSTANCE,), time_from="now-6h", refresh="30s",
    )
