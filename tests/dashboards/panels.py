"""Run the built dashboards' panels and alert rules on the simulated day, as Grafana would."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from dashboards import alerts, datasource, provisioning
from dashboards.builder import JSON, Dashboard, Panel, Query, ref_id
from telemetry.registry import Registry, load
from tests.dashboards.conftest import SimulatedDay
from tests.dashboards.grafana import (
    Frame,
    Result,
    TimeRange,
    VariableValue,
    interpolate,
    interval_ms,
    panel_range,
    series_frames,
    table_frame,
    transform,
)

REGISTRY: Registry = load()
DASHBOARDS: dict[str, Dashboard] = {d.uid: d for d in provisioning.dashboards(REGISTRY).values()}
MAX_DATA_POINTS = 1000


@dataclass(slots=True, frozen=True)
class PanelCase:
    dashboard: Dashboard
    panel: Panel
    json: JSON

    @property
    def id(self) -> str:
        return f"{self.dashboard.uid}: {self.panel.title}"


def panel_cases() -> list[PanelCase]:
    """Every panel (not rows) with its JSON, in dashboard order."""
    out = []
    for dashboard in DASHBOARDS.values():
        panels = [p for row in dashboard.rows for p in row.panels]
        built = [p for p in dashboard.to_json()["panels"] if p["type"] != "row"]
        out += [PanelCase(dashboard, p, j) for p, j in zip(panels, built, strict=True)]
    return out


def find(uid: str, title: str) -> PanelCase:
    return next(c for c in panel_cases() if c.dashboard.uid == uid and c.panel.title == title)


def assignments(day: SimulatedDay, dashboard: Dashboard) -> list[dict[str, VariableValue]]:
    """The variable values to run a dashboard with: "All" where a variable has it, else each value."""
    choices: list[dict[str, VariableValue]] = [{}]
    for variable in dashboard.variables:
        expanded = []
        for chosen in choices:
            query = interpolate(variable.query, TimeRange(0, 0), 1000, chosen)
            values = sorted(str(r["value"]) for r in day.rows(query))
            if not values:
                raise AssertionError(f"{dashboard.uid}: variable {variable.name} has no values ({query})")
            if variable.include_all:
                options = [VariableValue(variable.name, values, all=True, all_value=variable.all_value, multi=True)]
            else:
                options = [VariableValue(variable.name, [v], multi=variable.multi) for v in values]
            expanded += [{**chosen, variable.name: option} for option in options]
        choices = expanded
    return choices


def just_started(case: PanelCase, now_ms: int | None = None, *, minutes: int = 3) -> str | None:
    """Why a "today" or "this month" panel cannot have rows yet: its period began minutes ago."""
    time_from = case.json.get("timeFrom") or ""
    if time_from not in ("now/d", "now/M"):
        return None
    now_ms = now_ms or int(time.time() * 1000)
    start = panel_range(case.dashboard.to_json(), case.json, now_ms).start_ms
    if now_ms - start < minutes * 60_000:
        return f"{case.id}: its period ({time_from}) began {(now_ms - start) / 1000:.0f} s ago"
    return None


def run_query(day: SimulatedDay, query: Query, text: str) -> Result:
    series = day.influxd.query(text, day.db)
    frames = [table_frame(series)] if query.table and series else series_frames(series, query.alias)
    return Result(frames, series)


@dataclass(slots=True)
class PanelRun:
    """A panel's targets run once: the range, the queries sent and what came back."""

    case: PanelCase
    variables: dict[str, VariableValue]
    time_range: TimeRange
    texts: list[str]
    results: list[Result]

    def frames(self) -> list[Frame]:
        """The frames after the panel's transformations."""
        frames = [f for r in self.results for f in r.frames]
        return transform(frames, self.case.json.get("transformations", []))

    def variable(self, name: str) -> str:
        return self.variables[name].values[0]


def run_panel(day: SimulatedDay, case: PanelCase, variables: dict[str, VariableValue], *,
              now_ms: int | None = None, time_range: TimeRange | None = None) -> PanelRun:
    now_ms = now_ms or int(time.time() * 1000)
    time_range = time_range or panel_range(case.dashboard.to_json(), case.json, now_ms)
    interval = interval_ms(time_range, max_data_points=MAX_DATA_POINTS,
                           min_interval=case.panel.interval or datasource.MIN_INTERVAL)
    texts = [interpolate(q.text, time_range, interval, variables) for q in case.panel.queries]
    return PanelRun(case, variables, time_range, texts,
                    [run_query(day, q, t) for q, t in zip(case.panel.queries, texts, strict=True)])


def run_all(day: SimulatedDay, case: PanelCase) -> list[PanelRun]:
    """The panel under every variable assignment of its dashboard, on the rollups of every closed hour."""
    day.rollups()
    now_ms = int(time.time() * 1000)
    return [run_panel(day, case, chosen, now_ms=now_ms) for chosen in assignments(day, case.dashboard)]


def columns(result: Result) -> set[str]:
    """Columns and tags InfluxDB returned."""
    return set(itertools.chain.from_iterable([*s["columns"], *s.get("tags", {})] for s in result.series))


def display_names(frames: list[Frame]) -> set[str]:
    return {name for frame in frames for name in frame}


def referenced_fields(panel_json: JSON) -> set[str]:
    """Field names the panel's config refers to: byName overrides, geomap fields and lookup."""
    names = {o["matcher"]["options"] for o in panel_json["fieldConfig"]["overrides"] if o["matcher"]["id"] == "byName"}
    for layer in panel_json["options"].get("layers", []):
        style = layer["config"]["style"]
        names |= {style[k]["field"] for k in ("size", "color", "text") if style.get(k, {}).get("field")}
        names.add(layer["location"]["lookup"])
    return names


def referenced_queries(panel_json: JSON) -> set[str]:
    return {o["matcher"]["options"] for o in panel_json["fieldConfig"]["overrides"]
            if o["matcher"]["id"] == "byFrameRefID"}


def target_ids(case: PanelCase) -> list[str]:
    return [ref_id(i) for i in range(len(case.panel.queries))]


# --- alert rules ---------------------------------------------------------------------------------

def run_rule(day: SimulatedDay, rule: alerts.AlertRule) -> tuple[str, list[JSON]]:
    """A rule's query A over its window ending now, as Grafana's evaluation runs it."""
    now_ms = int(time.time() * 1000)
    window = TimeRange(now_ms - rule.window_s * 1000, now_ms)
    text = interpolate(rule.query.text, window, 1000, {})
    return text, day.influxd.query(text, day.db)


def evaluate(rule: alerts.AlertRule, series: list[JSON]) -> dict[tuple[str, ...], bool]:
    """B (reduce, dropping nulls) and C (threshold) per series, keyed by its tag values."""
    out = {}
    for s in series:
        values = [row[1] for row in s["values"] if row[1] is not None]
        if not values:
            continue
        reduced: dict[str, Any] = {"last": values[-1], "max": max(values), "min": min(values),
                                   "mean": sum(values) / len(values)}
        value = reduced[rule.reducer]
        firing = value > rule.threshold if rule.operator == "gt" else value < rule.threshold
        out[tuple(s.get("tags", {}).values())] = firing
    return out
