"""Alert rules (Grafana unified alerting) and the contact point they notify.

Every rule is the same three steps: an InfluxQL query ``A`` over the last ``window_s`` seconds
(``$timeFilter``), ``B`` reduces each series to one number, ``C`` compares it with a threshold.
Series carry their GROUP BY tags as labels, so one rule alerts per station (or charger).

    station-offline    no online status for 10 minutes (the newest online status of the last 6 h
                       is older than the newest 10 one-minute buckets)
    heating-failure    every indoor reading of the last 15 minutes below 10 °C
    charger-fault      a charger reported a fault code in the last 5 minutes
    pipeline-down      no occupancy reading from any station for 5 minutes (no data alerts too)
    reject-rate        more than 2 % of the messages of the last 10 minutes rejected
    ingest-away        no ingest connected to the broker for 15 minutes: the broker is queueing for
                       it, within max_queued_bytes (10 days at 45 stations, minutes at 100,000)

The rules route to one contact point, ``yizhan-operators``, a webhook whose URL comes from
``ALERT_WEBHOOK_URL`` (provisioning files read it from Grafana's environment; the push from ours).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from dashboards import station
from dashboards.builder import DATASOURCE_UID, JSON, Query
from dashboards.influxql import TIME, m, monitor, select, sub, tags, where

FOLDER_UID: Final = "yizhan"
FOLDER_TITLE: Final = "驿站 Yizhan"
GROUP: Final = "yizhan"
GROUP_INTERVAL_S: Final = 60
CONTACT_POINT: Final = "yizhan-operators"
CONTACT_POINT_UID: Final = "yizhan-operators-webhook"
WEBHOOK_VARIABLE: Final = "ALERT_WEBHOOK_URL"
PLACEHOLDER_WEBHOOK: Final = "http://alert-webhook.invalid/yizhan"
"""Where alerts go until ALERT_WEBHOOK_URL is set (``.invalid`` never resolves: nothing leaks)."""
EXPRESSION: Final[JSON] = {"type": "__expr__", "uid": "__expr__"}
REJECT_RATIO: Final = 0.02


@dataclass(slots=True, frozen=True)
class AlertRule:
    """One rule: query A over the last ``window_s`` s, reduce B, threshold C.

    Args:
        pending: how long C must hold before the alert fires (Grafana's ``for``).
        no_data: the state when A returns no series at all.
        panel: the title of the panel in ``dashboard`` that shows what the rule watches.
    """

    uid: str
    title: str
    query: Query
    window_s: int
    reducer: Literal["last", "max", "min", "mean"]
    operator: Literal["gt", "lt"]
    threshold: float
    summary: str
    description: str
    severity: Literal["critical", "warning"] = "warning"
    pending: str = "0s"
    no_data: Literal["OK", "NoData", "Alerting"] = "OK"
    exec_error: Literal["Error", "Alerting", "OK"] = "Error"
    dashboard: str = station.UID
    panel: str | None = None

    def data(self) -> list[JSON]:
        """A (InfluxQL), B (reduce A), C (threshold on B), as Grafana stores them."""
        query = {**self.query.target("A"), "intervalMs": 1000, "maxDataPoints": 43200}
        reduce = {"refId": "B", "type": "reduce", "expression": "A", "reducer": self.reducer,
                  "settings": {"mode": "dropNN"}, "datasource": EXPRESSION}
        threshold = {"refId": "C", "type": "threshold", "expression": "B", "datasource": EXPRESSION,
                     "conditions": [{"evaluator": {"type": self.operator, "params": [self.threshold]}}]}
        return [
            {"refId": "A", "relativeTimeRange": {"from": self.window_s, "to": 0}, "datasourceUid": DATASOURCE_UID,
             "model": query},
            {"refId": "B", "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": "__expr__", "model": reduce},
            {"refId": "C", "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": "__expr__", "model": threshold},
        ]

    def common(self) -> JSON:
        return {
            "uid": self.uid,
            "title": self.title,
            "condition": "C",
            "data": self.data(),
            "noDataState": self.no_data,
            "execErrState": self.exec_error,
            "for": self.pending,
            "labels": {"service": "yizhan", "severity": self.severity},
            "isPaused": False,
            "notification_settings": {"receiver": CONTACT_POINT},
        }

    def provisioning(self, panel_id: int | None) -> JSON:
        """The rule in Grafana's file provisioning format."""
        out = self.common()
        out["annotations"] = {"summary": self.summary, "description": self.description}
        out["dashboardUid"] = self.dashboard
        if panel_id is not None:
            out["panelId"] = panel_id
        return out

    def api(self, panel_id: int | None) -> JSON:
        """The rule as the alerting provisioning HTTP API takes it (inside a rule group)."""
        out = self.common()
        annotations = {"summary": self.summary, "description": self.description, "__dashboardUid__": self.dashboard}
        if panel_id is not None:
            annotations["__panelId__"] = str(panel_id)
        out.update(annotations=annotations, folderUID=FOLDER_UID, ruleGroup=GROUP, orgID=1)
        return out


OFFLINE_MINUTES: Final = 10
_BY_STATION: Final = tags("station", "district")


def _online_lately() -> Query:
    """Per station, 1 when its newest online status of the range lies in the newest :data:`OFFLINE_MINUTES`
    one-minute buckets (the newest is the minute so far), else 0: what the moving average of its online
    statuses per minute over the whole range said (5.9 s at 1,000 stations; this reads one status per
    station). The range (6 h) only says which stations are watched. The outer query takes no time
    filter: it does not group by time (:mod:`dashboards.influxql`)."""
    newest = select('"online"', m("station_status"), conditions=where(TIME, '"online" = true'), group=_BY_STATION,
                    newest_first=True, limit=1)
    minutes = select('count("online") AS "online"', sub(newest), group=f"time(1m), {_BY_STATION}", fill="0",
                     newest_first=True, limit=OFFLINE_MINUTES)
    return Query(select('sum("online") AS "online_lately"', sub(minutes), conditions=None, group=_BY_STATION,
                        newest_first=True), columns=("online_lately",))


RULES: Final = (
    AlertRule(
        "yizhan-station-offline", f"驿站离线 Station offline for {OFFLINE_MINUTES} minutes", _online_lately(),
        window_s=6 * 3600, reducer="last", operator="lt", threshold=1, severity="critical",
        panel="在线/离线 Online / offline",
        summary="驿站 {{ $labels.station }} 离线10分钟 offline for 10 minutes",
        description="No online status from {{ $labels.station }} ({{ $labels.district }}) for 10 minutes: the "
                    "device is off, its network is down or it said offline. Stations dark for more than 6 h "
                    "leave the query (the overview's silent table lists them for 30 days)."),
    AlertRule(
        "yizhan-heating-failure", "供暖故障 Indoor below 10 °C for 15 minutes",
        Query(select('max("celsius") AS "celsius"', m("temperature"), conditions=where(TIME, "\"sensor\" = 'indoor'"),
                     group=tags("station", "district")), columns=("celsius",)),
        window_s=15 * 60, reducer="last", operator="lt", threshold=station.COLD_CELSIUS, severity="critical",
        panel="温度 Indoor and outdoor temperature",
        summary="驿站 {{ $labels.station }} 室内低于10°C 15分钟 indoor below 10 °C for 15 minutes",
        description="Every indoor reading of {{ $labels.station }} in the last 15 minutes was below 10 °C "
                    "(warmest {{ $values.B }} °C): the heating has probably failed."),
    AlertRule(
        "yizhan-charger-fault", "充电桩故障 Charger reports a fault",
        Query(select('count("fault") AS "fault_reports"', m("charger"), group=tags("station", "district", "charger")),
              columns=("fault_reports",)),
        window_s=5 * 60, reducer="last", operator="gt", threshold=0, panel="充电桩故障 Charger faults",
        summary="驿站 {{ $labels.station }} 充电桩 {{ $labels.charger }} 故障 reports a fault",
        description="Charger {{ $labels.charger }} of {{ $labels.station }} reported a fault code in the last "
                    "5 minutes; the station dashboard shows which."),
    AlertRule(
        "yizhan-pipeline-down", "管道中断 No reading from any station for 5 minutes",
        Query(select('count("seq") AS "readings"', m("occupancy")), columns=("readings",)),
        window_s=5 * 60, reducer="last", operator="lt", threshold=1, severity="critical", no_data="Alerting",
        exec_error="Alerting", dashboard="yizhan-pipeline", panel="写入速率 Readings and points written per second",
        summary="5分钟没有任何读数 No reading from any station for 5 minutes",
        description="Nothing reached InfluxDB: check the broker, ingest (GET /healthz) and InfluxDB; "
                    "docs/operations.md."),
    AlertRule(
        "yizhan-reject-rate", "拒收率过高 More than 2 % of messages rejected",
        Query(select('sum("rejects") / sum("messages") AS "reject_ratio"', monitor("ingest_stats")),
              columns=("reject_ratio",)),
        window_s=10 * 60, reducer="last", operator="gt", threshold=REJECT_RATIO, dashboard="yizhan-pipeline",
        panel="拒收 Rejects by reason, per minute",
        summary="拒收率 reject rate above 2 %",
        description="More than 2 % of the MQTT messages of the last 10 minutes were rejected; the pipeline "
                    "dashboard lists them with their reasons."),
    AlertRule(
        "yizhan-ingest-away", "代理队列在涨 Ingest away from the broker for 15 minutes",
        Query(select('count("mqtt_connected") AS "connected_points"', monitor("ingest_stats"),
                     conditions=where(TIME, '"mqtt_connected" = true')), columns=("connected_points",)),
        window_s=15 * 60, reducer="last", operator="lt", threshold=1, no_data="Alerting",
        dashboard="yizhan-pipeline", panel="连接 Connections",
        summary="15分钟没有 ingest 连接代理 No ingest connected to the broker for 15 minutes",
        description="The broker is queueing every reading for ingest's session, up to its max_queued_bytes "
                    "(about 10 days at 45 stations, 6 minutes at 100,000), and drops the rest after that: bring "
                    "ingest back before (docs/operations.md, Ingest away)."),
)


def contact_point_provisioning() -> JSON:
    """The contact point in Grafana's file provisioning format, its URL from Grafana's environment."""
    return {"orgId": 1, "name": CONTACT_POINT, "receivers": [{
        "uid": CONTACT_POINT_UID, "type": "webhook", "disableResolveMessage": False,
        "settings": {"url": f"${{{WEBHOOK_VARIABLE}}}", "httpMethod": "POST"}}]}


def contact_point_api(url: str | None) -> JSON:
    """The contact point as the provisioning HTTP API takes it."""
    return {"uid": CONTACT_POINT_UID, "name": CONTACT_POINT, "type": "webhook", "disableResolveMessage": False,
            "settings": {"url": url or PLACEHOLDER_WEBHOOK, "httpMethod": "POST"}}
