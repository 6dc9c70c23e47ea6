"""What Grafana does around a query, done here so the tests can run panels on a real InfluxDB.

- time: the dashboard's range, a panel's relative time override (``timeFrom``: ``15m``, ``now/d``,
  ``now/M``, ``now-6d/d``) in the dashboard's timezone, and ``$__interval`` from the range and the
  minimum interval (Grafana's ``calculateInterval`` and its rounding table);
- macros: ``$timeFilter`` as the InfluxDB backend writes it (``time >= Xms and time <= Yms``),
  ``$__interval``, ``$__interval_ms``, ``${__from}``, ``${__to}``;
- variables: each variable's query run in order, "All" as its ``allValue``, a multi value as
  ``(a|b)``, a single value regex-escaped, as the InfluxDB datasource's ``interpolateQueryExpr``;
- frames: InfluxQL results as Grafana's InfluxQL backend frames them (``table``: one frame, tags as
  columns; ``time_series``: a frame per series and column);
- transformations: the ones our panels use (organize, merge, groupBy, calculateField binary and sum,
  joinByField, sortBy, limit, formatTime, groupingToMatrix), after Grafana's
  ``packages/grafana-data`` transformers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

JSON = dict[str, Any]
Frame = dict[str, list[Any]]
"""A data frame: field name -> values (all the same length), in field order."""

_DURATION = re.compile(r"(\d+)([smhdwMy])")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Grafana's rangeutil.roundInterval: (upper bound ms, interval ms)
_ROUND = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
          (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
          (150000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
          (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
          (32400000, 21600000), (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000),
          (3628800000, 2592000000)]


@dataclass(slots=True, frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int


def _floor(moment: datetime, unit: str) -> datetime:
    if unit == "y":
        return moment.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "M":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"rounding to {unit} not supported here")


def date_math(expr: str, now: datetime) -> datetime:
    """Grafana's dateMath.parse for ``now``, ``now-15m``, ``now/d``, ``now-6d/d``, ``now-11M/M``, ``now/y``,
    ``now-10y`` (in ``now``'s zone)."""
    m = re.fullmatch(r"now(?:-(\d+)([smhdwMy]))?(?:/([dMy]))?", expr)
    if m is None:
        raise ValueError(f"date math {expr!r} not supported here")
    moment = now
    if m.group(1):
        amount, unit = int(m.group(1)), m.group(2)
        if unit == "y":
            moment = moment.replace(year=moment.year - amount)
        elif unit == "M":
            month = moment.month - amount
            moment = moment.replace(year=moment.year + (month - 1) // 12, month=(month - 1) % 12 + 1)
        else:
            moment -= timedelta(seconds=amount * _UNITS_S[unit])
    if m.group(3):
        moment = _floor(moment, m.group(3))
    return moment


def panel_range(dashboard: JSON, panel: JSON, now_ms: int) -> TimeRange:
    """The panel's range: its ``timeFrom`` (``15m`` is ``now-15m``; ``now/d`` is today so far) or the dashboard's."""
    now = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(dashboard.get("timezone") or "UTC"))
    time_from = panel.get("timeFrom")
    if time_from:
        start = date_math(time_from if time_from.startswith("now") else f"now-{time_from}", now)
    else:
        start = date_math(dashboard["time"]["from"], now)
    if dashboard["time"]["to"] != "now" and not time_from:
        raise ValueError("only ranges ending now are supported here")
    return TimeRange(int(start.timestamp() * 1000), now_ms)


def _parse_interval(text: str) -> int:
    m = _DURATION.fullmatch(text)
    if m is None:
        raise ValueError(f"interval {text!r}")
    return int(m.group(1)) * _UNITS_S[m.group(2)] * 1000


def format_interval(ms: int) -> str:
    """grafana-plugin-sdk-go's gtime.FormatInterval."""
    for unit, size in (("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def interval_ms(time_range: TimeRange, *, max_data_points: int, min_interval: str) -> int:
    """Grafana's calculateInterval: the range over the data points, rounded, at least the minimum."""
    raw = (time_range.end_ms - time_range.start_ms) / max_data_points
    rounded = next((ms for bound, ms in _ROUND if raw < bound), 31536000000)
    return max(rounded, _parse_interval(min_interval))


def escape_regex(value: str) -> str:
    """@grafana/data's escapeRegex."""
    return re.sub(r"[\\^$*+?.()|{}\[\]/]", lambda m: "\\" + m.group(0), value)


@dataclass(slots=True)
class VariableValue:
    """A variable's current value: ``values`` chosen, or All (its ``allValue``, or every option)."""

    name: str
    values: list[str]
    all: bool = False
    all_value: str | None = None
    multi: bool = False

    def render(self) -> str:
        if self.all and self.all_value is not None:
            return self.all_value
        escaped = [escape_regex(v) for v in self.values]
        if self.multi or self.all:
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        return escaped[0]


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: text


def _tag(tags: dict[str, str]) -> Callable[[re.Match[str]], str]:
    return lambda match: tags.get(match.group(1), "")


def interpolate(query: str, time_range: TimeRange, interval: int, variables: dict[str, VariableValue]) -> str:
    """The query InfluxDB receives from Grafana; fails on any ``$`` left unexplained."""
    out = query
    for name in sorted(variables, key=len, reverse=True):
        value = variables[name].render()
        out = out.replace("${" + name + "}", value)
        out = re.sub(r"\$" + re.escape(name) + r"(?![A-Za-z0-9_])", _constant(value), out)
    out = out.replace("${__from}", str(time_range.start_ms)).replace("${__to}", str(time_range.end_ms))
    out = out.replace("$timeFilter", f"time >= {time_range.start_ms}ms and time <= {time_range.end_ms}ms")
    out = out.replace("$__interval_ms", str(interval))
    out = out.replace("$__interval", format_interval(interval)).replace("$interval", format_interval(interval))
    if leftover := re.search(r"\$\{?[A-Za-z_]\w*", out):  # a regex's end anchor ($/ or $)) is not a macro
        raise AssertionError(f"unsubstituted {leftover.group(0)} in {out!r}")
    return out


# --- frames ------------------------------------------------------------------------------------

@dataclass(slots=True)
class Result:
    """One target's frames, and the raw InfluxDB series they came from."""

    frames: list[Frame]
    series: list[JSON] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(next(iter(f.values()), [])) for f in self.frames)


def table_frame(series: list[JSON]) -> Frame:
    """``resultFormat: table``: one frame; Time, the series' tags, then its columns."""
    frame: Frame = {}
    for s in series:
        tags = s.get("tags", {})
        n = len(s["values"])
        for name, values in [("Time", [v[0] for v in s["values"]]),
                             *((k, [tags[k]] * n) for k in tags),
                             *((c, [v[i] for v in s["values"]]) for i, c in enumerate(s["columns"]) if i > 0)]:
            frame.setdefault(name, []).extend(values)
    return frame


def series_frames(series: list[JSON], alias: str | None) -> list[Frame]:
    """``resultFormat: time_series``: one frame (Time, value) per series and column, named by the alias."""
    frames = []
    for s in series:
        tags = s.get("tags", {})
        for i, column in enumerate(s["columns"]):
            if i == 0:
                continue
            if alias:
                name = re.sub(r"\$tag_(\w+)", _tag(tags), alias)
                name = name.replace("$col", column).replace("$m", s["name"])
            else:
                name = f"{s['name']}.{column}" + (" {" + ", ".join(f"{k}: {v}" for k, v in tags.items()) + "}"
                                                   if tags else "")
            frames.append({"Time": [v[0] for v in s["values"]], name: [v[i] for v in s["values"]]})
    return frames


# --- transformations ----------------------------------------------------------------------------

def _length(frame: Frame) -> int:
    return len(next(iter(frame.values()), []))


def _organize(frames: list[Frame], options: JSON) -> list[Frame]:
    exclude = {k for k, v in options.get("excludeByName", {}).items() if v}
    rename: dict[str, str] = options.get("renameByName", {})
    order: dict[str, int] = options.get("indexByName", {})
    out = []
    for frame in frames:
        kept = [(name, values) for name, values in frame.items() if name not in exclude]
        if order:
            kept.sort(key=lambda item: order.get(item[0], len(order)))
        out.append({rename.get(name) or name: values for name, values in kept})
    return out


def _merge(frames: list[Frame], _options: JSON) -> list[Frame]:
    """Grafana's merge: rows keyed by the fields every frame has; a row joins the first compatible one."""
    data = [f for f in frames if f]
    if len(data) <= 1:
        return frames
    names = list(dict.fromkeys(n for f in data for n in f))
    keys = [n for n in data[-1] if all(n in f for f in data)]
    if not keys:
        return frames
    rows: dict[str, list[dict[str, Any]]] = {}
    order: list[tuple[str, int]] = []
    for frame in data:
        for i in range(_length(frame)):
            key = "".join(str(frame[k][i]) for k in keys)
            value = {n: frame[n][i] for n in frame}
            existing = rows.setdefault(key, [])
            target = next((r for r in existing if all(r.get(n) is None or r[n] == v for n, v in value.items())), None)
            if target is None:
                existing.append(value)
                order.append((key, len(existing) - 1))
            else:
                target.update(value)
    return [{n: [rows[k][i].get(n) for k, i in order] for n in names}]


def _reduce(values: list[Any], calc: str) -> Any:
    """A standard calculation; nulls are skipped (a sum of none is 0, as Grafana's doStandardCalcs starts it)."""
    present = [v for v in values if v is not None]
    reducers: dict[str, Callable[[list[Any]], Any]] = {
        "sum": sum, "min": min, "max": max, "mean": lambda v: sum(v) / len(v),
        "lastNotNull": lambda v: v[-1], "firstNotNull": lambda v: v[0], "count": len,
    }
    if calc == "count":
        return len(values)
    if calc == "sum":
        return sum(present)
    return reducers[calc](present) if present else None


def _group_by(frames: list[Frame], options: JSON) -> list[Frame]:
    fields: dict[str, JSON] = options["fields"]
    group = [n for n, o in fields.items() if o.get("operation") == "groupby"]
    out = []
    for frame in frames:
        by = [n for n in group if n in frame]
        if not by:
            continue
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i in range(_length(frame)):
            groups.setdefault(tuple(frame[n][i] for n in by), []).append(i)
        result: Frame = {n: [k[j] for k in groups] for j, n in enumerate(by)}
        for name, values in frame.items():
            opts = fields.get(name, {})
            if opts.get("operation") != "aggregate":
                continue
            for calc in opts.get("aggregations", []):
                result[f"{name} ({calc})"] = [_reduce([values[i] for i in idx], calc) for idx in groups.values()]
        out.append(result)
    return out


def _binary_operand(frame: Frame, operand: JSON) -> list[Any]:
    if "fixed" in operand:
        return [float(operand["fixed"])] * _length(frame)
    name = operand["matcher"]["options"]
    if name not in frame:
        raise AssertionError(f"calculateField: no field {name!r} among {list(frame)}")
    return frame[name]


def _reduce_row(frames: list[Frame], options: JSON) -> list[Frame]:
    """calculateField reduceRow with the sum reducer (``getReduceRowCreator``, ``doStandardCalcs``): over
    the included fields the frame has, nulls skipped; no value at all sums to 0."""
    if options["reduce"].get("reducer") != "sum" or not options["reduce"].get("include"):
        raise AssertionError(f"calculateField {options} not emulated here")
    out = []
    for frame in frames:
        columns = [frame[name] for name in options["reduce"]["include"] if name in frame]
        values = [sum(v for v in row if v is not None) for row in zip(*columns, strict=True)] if columns \
            else [0] * _length(frame)
        out.append({**frame, options["alias"]: values})
    return out


def _calculate(frames: list[Frame], options: JSON) -> list[Frame]:
    if options.get("timeSeries") is not False:
        raise AssertionError(f"calculateField {options} not emulated here")
    if options.get("mode") == "reduceRow":
        return _reduce_row(frames, options)
    if options.get("mode") != "binary":
        raise AssertionError(f"calculateField {options} not emulated here")
    ops: dict[str, Callable[[float, float], float]] = {
        "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
        "/": lambda a, b: a / b if b else math.nan}
    binary = options["binary"]
    out = []
    for frame in frames:
        left, right = _binary_operand(frame, binary["left"]), _binary_operand(frame, binary["right"])
        values = [None if a is None or b is None else ops[binary["operator"]](a, b)
                  for a, b in zip(left, right, strict=True)]
        out.append({**frame, options["alias"]: values})
    return out


def _join(frames: list[Frame], options: JSON) -> list[Frame]:
    """joinByField: rows matched on one field; other fields kept (a repeated name gets a number)."""
    key, mode = options["byField"], options.get("mode", "outer")
    data = [f for f in frames if key in f]
    values = list(dict.fromkeys(v for f in data for v in f[key]))
    if mode == "inner":
        values = [v for v in values if all(v in f[key] for f in data)]
    out: Frame = {key: values}
    for frame in data:
        index = {v: i for i, v in enumerate(frame[key])}
        for name, column in frame.items():
            if name == key:
                continue
            unique, n = name, 1
            while unique in out:
                n += 1
                unique = f"{name} {n}"
            out[unique] = [column[index[v]] if v in index else None for v in values]
    return [out]


def _sort(frames: list[Frame], options: JSON) -> list[Frame]:
    spec = options["sort"][0]
    out = []
    for frame in frames:
        if spec["field"] not in frame:
            raise AssertionError(f"sortBy: no field {spec['field']!r} among {list(frame)}")
        column = frame[spec["field"]]
        order = sorted(range(len(column)), key=lambda i: (column[i] is None, column[i]), reverse=spec.get("desc", False))
        out.append({n: [v[i] for i in order] for n, v in frame.items()})
    return out


def _limit(frames: list[Frame], options: JSON) -> list[Frame]:
    return [{n: v[: options["limitField"]] for n, v in f.items()} for f in frames]


def _format_time(frames: list[Frame], options: JSON) -> list[Frame]:
    """formatTime: the time field as moment-formatted text in the given zone (only the tokens we use)."""
    name, zone = options["timeField"], ZoneInfo(options["timezone"])
    pattern = options["outputFormat"].replace("YYYY", "%Y").replace("MM", "%m").replace("DD", "%d")
    return [{n: [datetime.fromtimestamp(v / 1000, zone).strftime(pattern) if n == name and v is not None else v
                 for v in values] for n, values in frame.items()} for frame in frames]


def _grouping_to_matrix(frames: list[Frame], options: JSON) -> list[Frame]:
    """groupingToMatrix: a row per rowField value, a field per columnField value, cells from valueField;
    a missing cell is ``emptyValue`` (by default an empty string, as Grafana's getSpecialValue)."""
    column, row, value = options["columnField"], options["rowField"], options["valueField"]
    empty = {"null": None, "true": True, "false": False}.get(options.get("emptyValue", "empty"), "")
    out = []
    for frame in frames:
        for name in (column, row, value):
            if name not in frame:
                raise AssertionError(f"groupingToMatrix: no field {name!r} among {list(frame)}")
        rows = list(dict.fromkeys(frame[row]))
        columns = list(dict.fromkeys(frame[column]))
        cells = {(r, c): v for r, c, v in zip(frame[row], frame[column], frame[value], strict=True)}
        matrix: Frame = {f"{row}\\{column}": rows}
        matrix.update({str(c): [cells.get((r, c), empty) for r in rows] for c in columns})
        out.append(matrix)
    return out


TRANSFORMS: dict[str, Callable[[list[Frame], JSON], list[Frame]]] = {
    "organize": _organize, "merge": _merge, "groupBy": _group_by, "calculateField": _calculate,
    "joinByField": _join, "sortBy": _sort, "limit": _limit, "formatTime": _format_time,
    "groupingToMatrix": _grouping_to_matrix,
}


def transform(frames: list[Frame], transformations: list[JSON]) -> list[Frame]:
    for t in transformations:
        if t["id"] not in TRANSFORMS:
            raise AssertionError(f"transformation {t['id']} is not emulated by the tests")
        frames = TRANSFORMS[t["id"]](frames, t.get("options", {}))
    return frames
