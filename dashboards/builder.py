"""Small typed builders for the Grafana JSON model (schemaVersion 39, Grafana 10.4 to 11).

Only what our dashboards use, each a frozen dataclass that renders itself to JSON: an InfluxQL
:class:`Query` (raw InfluxQL, so it runs on InfluxDB 1.x, 2.x through DBRP and 3.x), a
:class:`Panel`, a :class:`Row` of panels, a :class:`Variable` and a :class:`Dashboard`.

We write these instead of using grafana-foundation-sdk: the SDK has no InfluxDB query type, is
published as an alpha per Grafana version under epoch-numbered releases (a plain ``pip install``
picks the Grafana 10.1 build), and the JSON we need is small. Panel-type options stay plain dicts
in Grafana's own vocabulary, so Grafana's documentation reads straight onto them.

A :class:`Query` names the result ``columns`` its panel uses; the tests run every query against a
real InfluxDB and check those columns come back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

JSON = dict[str, Any]

DATASOURCE_UID: Final = "yizhan-influxdb"
DATASOURCE_TYPE: Final = "influxdb"
DATASOURCE: Final[JSON] = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
GRID_COLUMNS: Final = 24
SCHEMA_VERSION: Final = 39
TIMEZONE: Final = "Asia/Shanghai"
"""Pingliang keeps Beijing time: days, months and ``now/d`` are local days."""

Color = Literal["green", "red", "orange", "yellow", "blue", "purple", "text", "transparent"]


@dataclass(slots=True, frozen=True)
class Query:
    """One raw InfluxQL target.

    Args:
        text: InfluxQL with Grafana's macros: ``$timeFilter``, ``$__interval``, ``$__interval_ms``,
            ``${__to}`` and ``$variable`` (always inside ``/^$variable$/`` regexes).
        columns: the result columns the panel uses: value aliases and GROUP BY tags.
        table: result format ``table`` (one frame, tags as columns) instead of ``time_series``.
        alias: legend of time series, e.g. ``$tag_station``.
    """

    text: str
    columns: tuple[str, ...]
    table: bool = False
    alias: str | None = None

    def target(self, ref_id: str) -> JSON:
        out: JSON = {
            "datasource": DATASOURCE,
            "refId": ref_id,
            "rawQuery": True,
            "query": self.text,
            "resultFormat": "table" if self.table else "time_series",
        }
        if self.alias:
            out["alias"] = self.alias
        return out


@dataclass(slots=True, frozen=True)
class Step:
    """A threshold step: ``color`` from ``value`` up (None: the base)."""

    color: Color | str
    value: float | None = None

    def to_json(self) -> JSON:
        return {"color": self.color, "value": self.value}


def thresholds(*steps: Step) -> JSON:
    return {"mode": "absolute", "steps": [s.to_json() for s in steps]}


def value_map(mapping: dict[str, tuple[str, str]]) -> JSON:
    """A value mapping ``{"true": ("在线 online", "green")}``."""
    options = {key: {"text": text, "color": color, "index": i}
               for i, (key, (text, color)) in enumerate(mapping.items())}
    return {"type": "value", "options": options}


ONLINE_MAPPING: Final = value_map({"true": ("在线 online", "green"), "false": ("离线 offline", "red")})
UP_MAPPING: Final = value_map({"true": ("正常 up", "green"), "false": ("中断 down", "red")})


@dataclass(slots=True, frozen=True)
class Override:
    """Field config properties for the fields a matcher selects.

    ``byName`` matches a field's display name after transformations: a table column's name, or a
    time series' alias (``$col`` names it after its column); ``byFrameRefID`` every field of a query.
    """

    matcher: Literal["byName", "byFrameRefID"]
    target: str
    properties: tuple[tuple[str, Any], ...]

    def to_json(self) -> JSON:
        return {"matcher": {"id": self.matcher, "options": self.target},
                "properties": [{"id": key, "value": value} for key, value in self.properties]}


def _properties(properties: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((key.replace("custom_", "custom.", 1), value) for key, value in properties.items())


def override(field_name: str, **properties: Any) -> Override:
    """``override("online", mappings=[...], unit="none")``; ``custom_*`` keys become ``custom.*``."""
    return Override("byName", field_name, _properties(properties))


def override_query(ref: str, **properties: Any) -> Override:
    """Properties for every field of the query ``ref`` (A, B, ...)."""
    return Override("byFrameRefID", ref, _properties(properties))


@dataclass(slots=True, frozen=True)
class Transformation:
    """A Grafana transformation (``id`` and its options, in Grafana's vocabulary)."""

    id: str
    options: JSON

    def to_json(self) -> JSON:
        return {"id": self.id, "options": self.options}


def merge() -> Transformation:
    """Rows of every frame into one table; rows that agree on the shared columns become one."""
    return Transformation("merge", {})


def organize(*, exclude: tuple[str, ...] = (), rename: dict[str, str] | None = None,
             order: tuple[str, ...] = ()) -> Transformation:
    return Transformation("organize", {
        "excludeByName": dict.fromkeys(exclude, True),
        "renameByName": dict(rename or {}),
        "indexByName": {name: i for i, name in enumerate(order)},
    })


def group_by(group: tuple[str, ...], aggregate: dict[str, tuple[str, ...]]) -> Transformation:
    """Group rows by ``group`` fields; aggregated fields are named ``"<field> (<calc>)"``."""
    fields: JSON = {name: {"operation": "groupby", "aggregations": []} for name in group}
    fields.update({name: {"operation": "aggregate", "aggregations": list(calcs)} for name, calcs in aggregate.items()})
    return Transformation("groupBy", {"fields": fields})


def binary(left: str, operator: Literal["+", "-", "*", "/"], right: str | float, alias: str) -> Transformation:
    """A new field ``alias`` = ``left <operator> right`` (``right`` a field name or a number)."""
    right_value: JSON = {"fixed": str(right)} if isinstance(right, int | float) else {"matcher": {
        "id": "byName", "options": right}}
    return Transformation("calculateField", {
        "mode": "binary", "timeSeries": False, "alias": alias,
        "binary": {"left": {"matcher": {"id": "byName", "options": left}}, "operator": operator,
                   "right": right_value},
    })


def sum_of(fields: tuple[str, ...], alias: str) -> Transformation:
    """A new field ``alias`` = the row's sum of ``fields``, of those the frame has. A field no frame has
    (a query that returned nothing: the rollups of a day whose first hour is still open) and a null
    cell add 0: Grafana's reduceRow sum skips nulls, while a binary ``+`` missing an operand leaves the
    frame without its field (calculateField's ``getBinaryCreator``)."""
    return Transformation("calculateField", {"mode": "reduceRow", "timeSeries": False, "alias": alias,
                                             "reduce": {"reducer": "sum", "include": list(fields)}})


def grouping_to_matrix(column: str, row: str, value: str) -> Transformation:
    """Long rows to a matrix: one row per ``row`` value, one field per ``column`` value (the first
    field is named ``"<row>\\<column>"``). A missing cell is null: Grafana's default, an empty
    string in a number field, turns a legend's sum into text."""
    return Transformation("groupingToMatrix", {"columnField": column, "rowField": row, "valueField": value,
                                               "emptyValue": "null"})


def format_time(field_name: str, pattern: str) -> Transformation:
    """The time field as text in Beijing time (``YYYY-MM``: its month). Grafana 10.4 reads
    ``useTimezone`` (the dashboard's zone), 11 reads ``timezone``: both are set."""
    return Transformation("formatTime", {"timeField": field_name, "outputFormat": pattern, "useTimezone": True,
                                         "timezone": TIMEZONE})


def join_by(field_name: str, mode: Literal["outer", "inner"] = "outer") -> Transformation:
    return Transformation("joinByField", {"byField": field_name, "mode": mode})


def sort_by(field_name: str, *, desc: bool = False) -> Transformation:
    return Transformation("sortBy", {"fields": {}, "sort": [{"field": field_name, "desc": desc}]})


def limit(rows: int) -> Transformation:
    return Transformation("limit", {"limitField": rows})


@dataclass(slots=True, frozen=True)
class Link:
    """A data link or panel link (``url`` may use Grafana's ``${__data.fields.x}``)."""

    title: str
    url: str

    def to_json(self) -> JSON:
        return {"title": self.title, "url": self.url}


def station_link() -> Link:
    """Open the station dashboard for the row's station (its ``station`` field), keeping the time range."""
    return Link("驿站详情 Station detail",
                "/d/yizhan-station/station?var-station=${__data.fields.station}&${__url_time_range}")


@dataclass(slots=True, frozen=True)
class Panel:
    """A panel of ``width`` x ``height`` grid units; placed by its :class:`Row`.

    ``options`` and ``custom`` are Grafana's panel options and ``fieldConfig.defaults.custom``.
    ``time_from`` overrides the dashboard's range (``15m``: the last 15 minutes; ``now/d``: today).
    """

    type: str
    title: str
    queries: tuple[Query, ...]
    width: int
    height: int
    description: str = ""
    unit: str | None = None
    decimals: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    thresholds: JSON | None = None
    color: JSON | None = None
    mappings: tuple[JSON, ...] = ()
    no_value: str | None = None
    overrides: tuple[Override, ...] = ()
    transformations: tuple[Transformation, ...] = ()
    options: JSON = field(default_factory=dict)
    custom: JSON = field(default_factory=dict)
    links: tuple[Link, ...] = ()
    time_from: str | None = None
    interval: str | None = None

    def field_defaults(self) -> JSON:
        defaults: JSON = {}
        for key, value in (("unit", self.unit), ("decimals", self.decimals), ("min", self.minimum),
                           ("max", self.maximum), ("thresholds", self.thresholds), ("color", self.color),
                           ("noValue", self.no_value)):
            if value is not None:
                defaults[key] = value
        defaults["mappings"] = list(self.mappings)
        if self.custom:
            defaults["custom"] = self.custom
        if self.links:
            defaults["links"] = [link.to_json() for link in self.links]
        return defaults

    def to_json(self, panel_id: int, x: int, y: int) -> JSON:
        out: JSON = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "datasource": DATASOURCE,
            "targets": [q.target(ref_id(i)) for i, q in enumerate(self.queries)],
            "fieldConfig": {"defaults": self.field_defaults(), "overrides": [o.to_json() for o in self.overrides]},
            "options": self.options,
            "transformations": [t.to_json() for t in self.transformations],
        }
        if self.description:
            out["description"] = self.description
        if self.time_from:
            out["timeFrom"] = self.time_from
        if self.interval:
            out["interval"] = self.interval
        return out


LEGEND: Final[JSON] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                       "tooltip": {"mode": "multi", "sort": "none"}}
"""The options of a time series: its legend below it, a tooltip of every series."""


def bars(x_field: str) -> JSON:
    """The options of a bar chart of stacked bars along ``x_field``, with a table legend of sums."""
    return {"orientation": "vertical", "xField": x_field, "stacking": "normal", "showValue": "never",
            "groupWidth": 0.7, "barWidth": 0.9, "xTickLabelRotation": 0, "fullHighlight": False,
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["sum"], "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"}}


def lines(*, fill: int = 10, **extra: Any) -> JSON:
    """The ``custom`` field config of a time series drawn as thin lines."""
    return {"drawStyle": "line", "lineWidth": 1, "fillOpacity": fill, "showPoints": "never", **extra}


def stat(title: str, query: Query, width: int, *, graph: Literal["none", "area"] = "none", **kwargs: Any) -> Panel:
    """A stat panel of the last non-null value, coloured by its thresholds, 5 high."""
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "colorMode": "background", "graphMode": graph, "textMode": "auto",
               "justifyMode": "auto", "orientation": "auto"}
    return Panel("stat", title, (query,), width, 5, options=options, **kwargs)


def ref_id(index: int) -> str:
    """A, B, ..., Z, AA, AB, ... like Grafana."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


@dataclass(slots=True, frozen=True)
class Row:
    """A titled row; its panels flow left to right and wrap at the grid's 24 columns."""

    title: str
    panels: tuple[Panel, ...]


@dataclass(slots=True, frozen=True)
class Variable:
    """A query variable on InfluxDB (``SHOW TAG VALUES ...``), refreshed on dashboard load.

    ``all_value`` ``.*`` keeps "All" a short regex instead of every value joined.
    """

    name: str
    label: str
    query: str
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None

    def to_json(self) -> JSON:
        out: JSON = {
            "type": "query",
            "name": self.name,
            "label": self.label,
            "datasource": DATASOURCE,
            "query": self.query,
            "definition": self.query,
            "refresh": 1,
            "sort": 1,
            "multi": self.multi,
            "includeAll": self.include_all,
            "hide": 0,
            "options": [],
            "current": {},
            "regex": "",
        }
        if self.all_value is not None:
            out["allValue"] = self.all_value
        return out


@dataclass(slots=True, frozen=True)
class Dashboard:
    """A dashboard: rows of panels under a time range, in Beijing time."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = ("yizhan",)
    time_from: str = "now-24h"
    refresh: str = "1m"

    def panels(self) -> list[JSON]:
        """Row panels and their panels with ids and grid positions (rows never overlap)."""
        out: list[JSON] = []
        y = 0
        for row in self.rows:
            out.append({"id": len(out) + 1, "type": "row", "title": row.title, "collapsed": False, "panels": [],
                        "gridPos": {"x": 0, "y": y, "w": GRID_COLUMNS, "h": 1}})
            y += 1
            x, line_height = 0, 0
            for panel in row.panels:
                if x + panel.width > GRID_COLUMNS:
                    x, y, line_height = 0, y + line_height, 0
                out.append(panel.to_json(len(out) + 1, x, y))
                x += panel.width
                line_height = max(line_height, panel.height)
            y += line_height
        return out

    def to_json(self) -> JSON:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": TIMEZONE,
            "editable": True,
            "graphTooltip": 1,
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "monday",
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "links": [{"type": "dashboards", "tags": ["yizhan"], "asDropdown": True, "title": "驿站 Yizhan",
                       "includeVars": False, "keepTime": True, "icon": "external link", "targetBlank": False}],
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                "type": "dashboard"}]},
            "templating": {"list": [v.to_json() for v in self.variables]},
            "panels": self.panels(),
        }
