"""``python -m dashboards push`` against a local server that answers as Grafana's HTTP API does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dashboards import alerts, provisioning
from dashboards.builder import DATASOURCE_UID
from dashboards.config import Settings
from dashboards.exceptions import (
    ConfigError,
    GrafanaAuthError,
    GrafanaConflictError,
    GrafanaNotFoundError,
    GrafanaUnreachableError,
)
from dashboards.push import contains, push
from telemetry.registry import load
from tests.dashboards.fake_grafana import FakeGrafana, GrafanaServer
from tests.rig import ROOT, child_env, free_port

REGISTRY = load()
UIDS = [d.uid for d in provisioning.dashboards(REGISTRY).values()]
GROUP_PATH = f"/api/v1/provisioning/folder/{alerts.FOLDER_UID}/rule-groups/{alerts.GROUP}"
CONTACT_POINTS = f"/api/v1/provisioning/contact-points?name={alerts.CONTACT_POINT}"
READS = [f"GET /api/datasources/uid/{DATASOURCE_UID}", f"GET /api/folders/{alerts.FOLDER_UID}",
         *(f"GET /api/dashboards/uid/{uid}" for uid in UIDS), f"GET {CONTACT_POINTS}", f"GET {GROUP_PATH}"]


@pytest.fixture
def grafana() -> Iterator[GrafanaServer]:
    server = GrafanaServer(FakeGrafana())
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("GRAFANA_", "INFLUX_", "ALERT_", "STATIONS_FILE")):
            monkeypatch.delenv(name)


def settings(server: GrafanaServer, **overrides: object) -> Settings:
    values: dict[str, object] = {"grafana_url": server.url, "grafana_token": server.grafana.token,
                                 "influx_url": "http://influxdb:8086", "influx_db": "yizhan",
                                 "influx_token": "influx-secret", "alert_webhook_url": "https://hooks.example/yizhan"}
    return Settings.model_validate(values | overrides)


def lines(server: GrafanaServer) -> list[str]:
    return [c.line for c in server.grafana.calls]


def test_push_creates_everything_then_a_second_push_changes_nothing(grafana: GrafanaServer) -> None:
    first = push(settings(grafana), REGISTRY)
    assert [c.action for c in first] == ["created"] * 8
    assert lines(grafana) == [
        f"GET /api/datasources/uid/{DATASOURCE_UID}", "POST /api/datasources",
        f"GET /api/folders/{alerts.FOLDER_UID}", "POST /api/folders",
        *(line for uid in UIDS for line in (f"GET /api/dashboards/uid/{uid}", "POST /api/dashboards/db")),
        f"GET {CONTACT_POINTS}", "POST /api/v1/provisioning/contact-points",
        f"GET {GROUP_PATH}", f"PUT {GROUP_PATH}",
    ]
    fake = grafana.grafana
    ds = fake.datasources[DATASOURCE_UID]
    assert (ds["url"], ds["jsonData"]["dbName"], ds["jsonData"]["httpHeaderName1"]) == (
        "http://influxdb:8086", "yizhan", "Authorization")
    assert ds["secureJsonData"] == {"httpHeaderValue1": "Token influx-secret"}
    assert {uid: d["folderUid"] for uid, d in fake.dashboards.items()} == dict.fromkeys(UIDS, alerts.FOLDER_UID)
    assert fake.contact_points[alerts.CONTACT_POINT_UID]["settings"]["url"] == "https://hooks.example/yizhan"
    group = fake.rule_groups[(alerts.FOLDER_UID, alerts.GROUP)]
    assert [r["uid"] for r in group["rules"]] == [r.uid for r in alerts.RULES]
    assert group["interval"] == alerts.GROUP_INTERVAL_S

    fake.calls.clear()
    second = push(settings(grafana), REGISTRY)
    assert [c.action for c in second] == ["unchanged"] * 8
    assert lines(grafana) == READS, "a second push only reads"


def test_push_updates_only_what_was_changed_in_grafana(grafana: GrafanaServer) -> None:
    push(settings(grafana), REGISTRY)
    fake = grafana.grafana
    fake.dashboards["yizhan-pipeline"]["dashboard"]["panels"].pop()  # someone deleted a panel in the UI
    fake.contact_points[alerts.CONTACT_POINT_UID]["settings"]["url"] = "https://elsewhere.example"
    fake.calls.clear()
    changes = {f"{c.kind} {c.name}": c.action for c in push(settings(grafana), REGISTRY)}
    assert changes.pop("dashboard yizhan-pipeline") == "updated"
    assert changes.pop(f"contact point {alerts.CONTACT_POINT_UID}") == "updated"
    assert set(changes.values()) == {"unchanged"}
    saved = next(c for c in fake.calls if c.line == "POST /api/dashboards/db")
    assert saved.body["dashboard"]["version"] == 1
    assert saved.body["overwrite"] is False
    stored = fake.dashboards["yizhan-pipeline"]["dashboard"]
    assert contains(stored, provisioning.dashboards(REGISTRY)["pipeline"].to_json())
    assert stored["version"] == 2


def test_push_updates_the_datasource_when_its_token_or_url_changes(grafana: GrafanaServer) -> None:
    push(settings(grafana), REGISTRY)
    grafana.grafana.calls.clear()
    changes = push(settings(grafana, influx_url="http://influx2:8086"), REGISTRY)
    assert changes[0].action == "updated"
    update = next(c for c in grafana.grafana.calls if c.method == "PUT")
    assert update.path == f"/api/datasources/uid/{DATASOURCE_UID}"
    assert update.body["version"] == 1
    assert grafana.grafana.datasources[DATASOURCE_UID]["url"] == "http://influx2:8086"


def test_push_with_influxdb_1_credentials_sets_user_and_password(grafana: GrafanaServer) -> None:
    push(settings(grafana, influx_token=None, influx_username="grafana", influx_password="pw"), REGISTRY)
    ds = grafana.grafana.datasources[DATASOURCE_UID]
    assert ds["user"] == "grafana"
    assert ds["secureJsonData"] == {"password": "pw"}
    assert "httpHeaderName1" not in ds["jsonData"]


def test_push_reports_a_version_conflict_with_what_to_do(grafana: GrafanaServer) -> None:
    push(settings(grafana), REGISTRY)
    fake = grafana.grafana
    fake.dashboards["yizhan-overview"]["dashboard"]["title"] = "edited in the UI"

    def someone_saves(path: str) -> None:  # between our read and our write
        if path == "/api/dashboards/uid/yizhan-overview":
            fake.dashboards["yizhan-overview"]["dashboard"]["version"] += 1

    fake.after_get = someone_saves
    with pytest.raises(GrafanaConflictError) as raised:
        push(settings(grafana), REGISTRY)
    assert raised.value.status == 412
    message = str(raised.value)
    assert "update dashboard yizhan-overview" in message
    assert "412" in message
    assert "version-mismatch" in message
    assert "push again" in message


def test_push_reports_a_refused_token(grafana: GrafanaServer) -> None:
    with pytest.raises(GrafanaAuthError) as raised:
        push(settings(grafana, grafana_token="wrong"), REGISTRY)
    assert raised.value.status == 401
    assert "GRAFANA_TOKEN" in str(raised.value)
    assert "invalid API key" in str(raised.value)
    assert lines(grafana) == [f"GET /api/datasources/uid/{DATASOURCE_UID}"], "stops at the first refusal"


def test_push_reports_a_grafana_without_the_alerting_provisioning_api(grafana: GrafanaServer) -> None:
    grafana.grafana.fail[f"PUT {GROUP_PATH}"] = 404
    with pytest.raises(GrafanaNotFoundError) as raised:
        push(settings(grafana), REGISTRY)
    assert raised.value.status == 404
    assert "put rule group yizhan" in str(raised.value)
    assert "GRAFANA_URL" in str(raised.value)


def test_push_reports_an_unreachable_grafana() -> None:
    closed = Settings.model_validate({"grafana_url": f"http://127.0.0.1:{free_port()}", "grafana_token": "t",
                                      "grafana_timeout": 2})
    with pytest.raises(GrafanaUnreachableError) as raised:
        push(closed, REGISTRY)
    assert raised.value.status == 0
    assert "GRAFANA_URL" in str(raised.value)


def test_push_needs_grafana_url_and_token() -> None:
    with pytest.raises(ConfigError) as raised:
        push(Settings.model_validate({}), REGISTRY)
    assert raised.value.variable == "GRAFANA_URL"
    with pytest.raises(ConfigError) as raised:
        push(Settings.model_validate({"grafana_url": "http://grafana:3000"}), REGISTRY)
    assert raised.value.variable == "GRAFANA_TOKEN"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dashboards", *args], cwd=ROOT, env=child_env(env), capture_output=True,
                          text=True, timeout=60, check=False)


def test_cli_push_prints_each_change_and_exits_nonzero_on_refusal(grafana: GrafanaServer) -> None:
    ok = _cli("push", GRAFANA_URL=grafana.url, GRAFANA_TOKEN=grafana.grafana.token, INFLUX_TOKEN="t")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0].split() == ["created", "datasource", DATASOURCE_UID]
    assert "ALERT_WEBHOOK_URL is not set" in ok.stderr
    refused = _cli("push", GRAFANA_URL=grafana.url, GRAFANA_TOKEN="nope")
    assert refused.returncode == 1
    assert refused.stderr.startswith("dashboards push: GET datasource yizhan-influxdb: Grafana answered HTTP 401")
    missing = _cli("push")
    assert missing.returncode == 2
    assert "GRAFANA_URL" in missing.stderr
    invalid = _cli("push", GRAFANA_URL="ftp://grafana")
    assert invalid.returncode == 2
    assert "GRAFANA_URL" in invalid.stderr
