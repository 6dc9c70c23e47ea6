"""The built dashboards and rules hold together: uids, datasources, layout, variables, rule references."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from dashboards import alerts, provisioning
from dashboards.builder import DATASOURCE_UID, GRID_COLUMNS, JSON
from telemetry.registry import load

REGISTRY = load()
FILES = provisioning.render(REGISTRY)
BUILT: dict[str, JSON] = {name: d.to_json() for name, d in provisioning.dashboards(REGISTRY).items()}
ALERTING = yaml.safe_load(FILES["alerting/yizhan.yaml"])
DATASOURCES = yaml.safe_load(FILES["datasources/yizhan.yaml"])["datasources"]
MACROS = {"timeFilter", "__interval", "__interval_ms", "interval", "__to", "__from", "__url_time_range", "__data",
          "tag_station", "tag_sensor", "tag_charger", "tag_district", "tag_instance", "tag_reason", "col"}
_VARIABLE = re.compile(r"\$\{?([A-Za-z_]\w*)")


def overlaps(panels: list[JSON]) -> list[tuple[str, str]]:
    """Pairs of panels whose grid rectangles intersect."""
    out = []
    for i, a in enumerate(panels):
        for b in panels[i + 1:]:
            pa, pb = a["gridPos"], b["gridPos"]
            if pa["x"] < pb["x"] + pb["w"] and pb["x"] < pa["x"] + pa["w"] and \
                    pa["y"] < pb["y"] + pb["h"] and pb["y"] < pa["y"] + pa["h"]:
                out.append((a["title"], b["title"]))
    return out


def used_before_defined(dashboard: JSON) -> list[str]:
    """Variables a query uses that are not defined (for a variable's own query: defined before it)."""
    problems = []
    defined: list[str] = []
    for variable in dashboard["templating"]["list"]:
        problems += [f"variable {variable['name']} uses ${name}" for name in _VARIABLE.findall(variable["query"])
                     if name not in defined]
        defined.append(variable["name"])
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            problems += [f"{panel['title']} uses ${name}" for name in _VARIABLE.findall(target["query"])
                         if name not in defined and name not in MACROS]
    return problems


def datasource_uids(doc: Any) -> set[str]:
    """Every ``datasource: {uid}`` anywhere in a document."""
    if isinstance(doc, dict):
        found = {doc["datasource"]["uid"]} if isinstance(doc.get("datasource"), dict) else set()
        return found.union(*(datasource_uids(v) for v in doc.values()))
    if isinstance(doc, list):
        return set().union(*(datasource_uids(v) for v in doc))
    return set()


def test_uids_are_unique_and_panel_ids_unique_per_dashboard() -> None:
    uids = [d["uid"] for d in BUILT.values()]
    assert len(set(uids)) == len(uids) == 4
    for doc in BUILT.values():
        ids = [p["id"] for p in doc["panels"]]
        assert len(set(ids)) == len(ids), doc["uid"]
    rules = [r["uid"] for g in ALERTING["groups"] for r in g["rules"]]
    assert len(set(rules)) == len(rules) == len(alerts.RULES)


def test_every_datasource_reference_resolves_to_the_provisioned_one() -> None:
    provisioned = {d["uid"] for d in DATASOURCES}
    assert provisioned == {DATASOURCE_UID}
    for doc in BUILT.values():
        assert datasource_uids(doc) <= provisioned | {"-- Grafana --"}, doc["uid"]
    for group in ALERTING["groups"]:
        for rule in group["rules"]:
            assert {q["datasourceUid"] for q in rule["data"]} <= provisioned | {"__expr__"}
            assert datasource_uids(rule["data"]) <= provisioned | {"__expr__"}


@pytest.mark.parametrize("name", BUILT)
def test_panels_do_not_overlap_and_fit_the_grid(name: str) -> None:
    panels = BUILT[name]["panels"]
    assert not overlaps(panels)
    assert all(p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= GRID_COLUMNS for p in panels)


def test_overlap_check_finds_overlapping_panels() -> None:
    a = {"title": "a", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8}}
    b = {"title": "b", "gridPos": {"x": 11, "y": 7, "w": 4, "h": 4}}
    c = {"title": "c", "gridPos": {"x": 12, "y": 0, "w": 12, "h": 8}}
    assert overlaps([a, b, c]) == [("a", "b"), ("b", "c")]


@pytest.mark.parametrize("name", BUILT)
def test_variables_are_defined_before_use(name: str) -> None:
    assert used_before_defined(BUILT[name]) == []


def test_variable_check_finds_a_variable_used_before_its_definition() -> None:
    doc = {"templating": {"list": [{"name": "station", "query": 'SHOW TAG VALUES WHERE "d" =~ /^$district$/'},
                                   {"name": "district", "query": "SHOW TAG VALUES"}]},
           "panels": [{"title": "p", "targets": [{"query": "SELECT x FROM y WHERE $timeFilter AND $sensor"}]}]}
    assert used_before_defined(doc) == ["variable station uses $district", "p uses $sensor"]


def test_alert_rules_reference_existing_queries_dashboards_panels_and_contact_point() -> None:
    panels = {d["uid"]: {p["id"] for p in d["panels"]} for d in BUILT.values()}
    contact_points = {c["name"] for c in ALERTING["contactPoints"]}
    for group in ALERTING["groups"]:
        assert group["folder"] == alerts.FOLDER_TITLE
        for rule in group["rules"]:
            refs: list[str] = []
            for query in rule["data"]:
                model = query["model"]
                assert model["refId"] == query["refId"]
                if model.get("type") in ("reduce", "threshold"):
                    assert model["expression"] in refs, f"{rule['uid']}: {query['refId']} reads a later or no query"
                refs.append(query["refId"])
            assert rule["condition"] in refs
            assert rule["panelId"] in panels[rule["dashboardUid"]], rule["uid"]
            assert rule["notification_settings"]["receiver"] in contact_points


def test_every_panel_has_queries_and_names_the_columns_it_uses() -> None:
    for dashboard in provisioning.dashboards(REGISTRY).values():
        for panel in (p for row in dashboard.rows for p in row.panels):
            assert panel.queries, panel.title
            assert all(q.columns for q in panel.queries), panel.title


def test_gazetteer_places_every_instrumented_station_where_the_registry_has_it() -> None:
    gazetteer = {g["key"]: g for g in provisioning.gazetteer(REGISTRY)}
    assert gazetteer.keys() == {s.id for s in REGISTRY.reporting}
    for station in REGISTRY.reporting:
        assert (gazetteer[station.id]["latitude"], gazetteer[station.id]["longitude"]) == (
            station.location.lat, station.location.lon)
