"""The gateway's endpoints against a real broker, ingest and InfluxDB."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.credentials import TokenStore
from telemetry import registry
from tests.gateway.conftest import PASSWORDS, Stack, start_stack
from tests.mqtt import Collector, publish
from tests.payloads import charger, now_ms, occupancy, t, temperature
from tests.rig import ROOT, Influxd, wait_for

REG = registry.load()
S, S2 = "PL-KT-001", "PL-KT-002"  # smart, in kongtong, ~500 m apart
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def populated(stack: Stack) -> Stack:
    """Two stations online with readings (one an hour back too), one offline; all through ingest."""
    hour_ago = now_ms() - 3_600_000
    now = now_ms()
    publish(stack.broker.port, [
        (t(S, "status"), {"state": "online", "fw": "1.2.0", "uptime_s": 100, "buffered": 0, "config_rev": "default"}),
        (t(S2, "status"), {"state": "online", "fw": "1.2.0"}),
        ("stations/v1/PL-HT-001/status", {"state": "offline"}),
        (t(S, "occupancy"), [occupancy(1, 12, ts=hour_ago, entries=100, exits=88), occupancy(2, 5, ts=now - 2000,
                                                                                            entries=120, exits=115)]),
        (t(S, "charger"), [charger(3, "C1", 4, ts=hour_ago), charger(4, "C1", 3, ts=now - 2000, power_w=300.0),
                           charger(5, "C2", 10, ts=now - 2000, fault="E07")]),
        (t(S, "temperature"), [temperature(6, "indoor", 15.0, ts=hour_ago), temperature(7, "indoor", 18.5,
                                                                                          ts=now - 2000),
                               temperature(8, "outdoor", -9.5, ts=now - 2000)]),
        (t(S2, "occupancy"), occupancy(1, 30, ts=now - 1000)),  # PL-KT-002 has 30 seats: full
        (t(S2, "temperature"), temperature(2, "indoor", 12.0, ts=now - 1000)),
    ], retain=False)
    publish(stack.broker.port, [(t(S, "status"), {"state": "online", "fw": "1.2.0", "config_rev": "default"})],
            retain=True)
    wait_for(lambda: stack.viewer.get(f"/v1/stations/{S2}").json()["people"] == 30, what="live state")
    wait_for(lambda: stack.influxd.count("temperature", "celsius", stack.db) == 4, what="ingest wrote the readings")
    return stack


def assert_problem(response: httpx.Response, status: int, detail: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert detail in body["detail"]
    return body


def test_gateway_authentication_and_roles(populated: Stack) -> None:
    response = populated.anonymous.get("/v1/stations")
    assert_problem(response, 401, "send an API token")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_problem(populated.anonymous.get("/v1/summary", headers={"Authorization": "Bearer nope"}), 401,
                   "the API token is not valid")
    assert_problem(populated.viewer.put(f"/v1/stations/{S}/config", json={}), 403,
                   "this needs the operator role; token 'dispatch' is a viewer")
    assert populated.viewer.get("/v1/summary").status_code == 200


def test_gateway_errors_404_and_422_are_problems(populated: Stack) -> None:
    assert_problem(populated.viewer.get("/v1/stations/PL-KT-999"), 404, "no station 'PL-KT-999' in the registry")
    assert_problem(populated.viewer.get("/v1/stations", params={"limit": 0}), 422, "limit")
    assert_problem(populated.viewer.get("/v1/stations", params={"district": "xian"}), 422, "district")
    assert_problem(populated.viewer.get(f"/v1/stations/{S}/readings", params={"kind": "pressure"}), 422, "kind")
    assert_problem(populated.viewer.get(f"/v1/stations/{S}/readings",
                                        params={"kind": "occupancy", "start": "2026-11-29T08:00:00"}), 422,
                   "start needs a time zone offset")
    end = datetime.now(UTC)
    assert_problem(populated.viewer.get(f"/v1/stations/{S}/readings", params={
        "kind": "occupancy", "start": end.isoformat(), "end": (end - timedelta(hours=1)).isoformat()}), 422,
        "start must be before end")


def test_gateway_list_filters_and_pagination(populated: Stack) -> None:
    everything = populated.viewer.get("/v1/stations", params={"limit": 1000}).json()
    assert everything["total"] == 142
    assert len(everything["items"]) == 142
    kongtong = populated.viewer.get("/v1/stations", params={"district": "kongtong", "kind": "smart"}).json()
    assert kongtong["total"] == sum(1 for s in REG.stations if s.district == "kongtong" and s.kind == "smart")
    online = populated.viewer.get("/v1/stations", params={"online": True}).json()
    assert sorted(s["id"] for s in online["items"]) == [S, S2]
    offline = populated.viewer.get("/v1/stations", params={"online": False}).json()
    assert [s["id"] for s in offline["items"]] == ["PL-HT-001"]
    page = populated.viewer.get("/v1/stations", params={"limit": 10, "offset": 140}).json()
    assert (page["total"], len(page["items"]), page["offset"]) == (142, 2, 140)
    assert [s["id"] for s in page["items"]] == [s.id for s in REG.stations[140:]]


def test_gateway_station_detail_has_live_state_of_every_charger_and_sensor(populated: Stack) -> None:
    body = populated.viewer.get(f"/v1/stations/{S}").json()
    assert (body["online"], body["people"], body["free_seats"], body["entries"]) == (True, 5, 15, 120)
    assert (body["sockets_total"], body["sockets_in_use"], body["sockets_free"]) == (20, 13, 7)
    assert body["indoor_celsius"] == 18.5
    assert [(c["id"], c["sockets_in_use"], c["fault"]) for c in body["chargers"]] == [("C1", 3, None),
                                                                                     ("C2", 10, "E07")]
    assert [(s["name"], s["celsius"]) for s in body["sensors"]] == [("indoor", 18.5), ("outdoor", -9.5)]
    assert body["status"]["fw"] == "1.2.0"
    basic = populated.viewer.get("/v1/stations/PL-KT-042").json()
    assert (basic["reports"], basic["online"], basic["people"], basic["chargers"]) == (False, None, None, [])


def test_gateway_readings_are_downsampled_from_influxdb(populated: Stack) -> None:
    start = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    body = populated.viewer.get(f"/v1/stations/{S}/readings",
                                params={"kind": "temperature", "start": start, "every": "1h"}).json()
    assert body["every_s"] == 3600
    by_sensor = {s["tags"]["sensor"]: s["points"] for s in body["series"]}
    assert set(by_sensor) == {"indoor", "outdoor"}
    assert sorted(p["celsius_max"] for p in by_sensor["indoor"]) == [15.0, 18.5]
    chargers = populated.viewer.get(f"/v1/stations/{S}/readings", params={"kind": "charger", "start": start}).json()
    assert {s["tags"]["charger"] for s in chargers["series"]} == {"C1", "C2"}
    assert chargers["every_s"] == 4  # 2 h / 2000 points, rounded up to whole seconds: the bound on points
    year = populated.viewer.get(f"/v1/stations/{S}/readings", params={
        "kind": "occupancy", "start": (datetime.now(UTC) - timedelta(days=365)).isoformat(), "every": "1s"}).json()
    assert year["every_s"] >= 365 * 86400 / 2000
    assert sum(len(s["points"]) for s in year["series"]) <= 2000


def test_gateway_summary_totals_per_district_and_city(populated: Stack) -> None:
    body = populated.viewer.get("/v1/summary").json()
    city = body["city"]
    assert (city["stations"], city["reporting"], city["online"], city["offline"]) == (142, 45, 2, 1)
    assert city["people"] == 35
    assert city["coldest"] == {"station": S2, "celsius": 12.0}
    kongtong = next(d for d in body["districts"] if d["district"] == "kongtong")
    assert (kongtong["online"], kongtong["people"], kongtong["sockets_in_use"]) == (2, 35, 13)
    assert sum(d["stations"] for d in body["districts"]) == 142


def test_gateway_nearest_open_stations_with_seats(populated: Stack) -> None:
    here = {"lat": 35.5435, "lon": 106.6655}
    found = populated.viewer.get("/v1/stations/nearest", params=here).json()
    assert [s["id"] for s in found] == [S]  # PL-KT-002 is full, the others are not online
    assert 0 < found[0]["distance_m"] < 100
    charge = populated.viewer.get("/v1/stations/nearest", params={**here, "charge": True}).json()
    assert [s["id"] for s in charge] == [S]
    assert_problem(populated.viewer.get("/v1/stations/nearest", params={"lat": 91, "lon": 0}), 422, "lat")


def test_gateway_config_is_validated_and_published_retained(populated: Stack) -> None:
    collector = Collector(populated.broker.port, f"stations/v1/{S2}/config")
    try:
        response = populated.operator.put(f"/v1/stations/{S2}/config", json={"occupancy_interval_s": 15})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["config"]["occupancy_interval_s"] == 15
        assert body["config"]["rev"].startswith("r-")
        assert body["acknowledged"] is False
        wait_for(lambda: collector.messages, what="the config on the broker")
        message = collector.messages[0]
        assert json.loads(message.payload) == body["config"]
    finally:
        collector.close()
    late = Collector(populated.broker.port, f"stations/v1/{S2}/config")  # retained: a late subscriber gets it
    try:
        wait_for(lambda: late.messages, what="the retained config")
        assert late.messages[0].retain
    finally:
        late.close()
    assert populated.viewer.get(f"/v1/stations/{S2}/config").json()["config"] == body["config"]
    assert_problem(populated.operator.put(f"/v1/stations/{S2}/config", json={"occupancy_interval_s": 0}), 422,
                   "occupancy_interval_s")
    assert_problem(populated.operator.put(f"/v1/stations/{S2}/config", json={"colour": "red"}), 422, "colour")
    assert_problem(populated.operator.put("/v1/stations/PL-KT-042/config", json={}), 409, "basic station")


def test_gateway_http_ingress_reaches_influxdb_through_ingest(populated: Stack) -> None:
    url = f"/v1/stations/{S2}/telemetry"
    auth = (S2, PASSWORDS[S2])
    ts = now_ms() - 500
    body = [occupancy(50, 7, ts=ts), occupancy(51, 8, ts=ts + 1)]
    response = populated.anonymous.post(url, params={"kind": "occupancy"}, json=body, auth=auth)
    assert response.status_code == 202, response.text
    assert response.json() == {"station": S2, "kind": "occupancy", "readings": 2, "published": True}
    wait_for(lambda: populated.influxd.count("occupancy", "people", populated.db, f"WHERE station = '{S2}'") == 3,
             what="the ingress readings in InfluxDB")
    assert_problem(populated.anonymous.post(url, params={"kind": "occupancy"}, json=body), 401,
                   "send the station's credentials")
    assert_problem(populated.anonymous.post(url, params={"kind": "occupancy"}, json=body, auth=(S2, "wrong")), 401,
                   "wrong station password")
    assert_problem(populated.anonymous.post(url, params={"kind": "occupancy"}, json=body,
                                            auth=(S, PASSWORDS[S])), 403, "cannot send for PL-KT-002")
    rejected = assert_problem(populated.anonymous.post(url, params={"kind": "occupancy"},
                                                       json=occupancy(52, 1001), auth=auth), 422, "people")
    assert rejected["reason"] == "schema"
    future = assert_problem(populated.anonymous.post(url, params={"kind": "temperature"}, auth=auth,
                                                     json=temperature(53, "indoor", 20, ts=now_ms() + 3_600_000)),
                            422, "ahead of the server clock")
    assert future["reason"] == "ts_out_of_range"
    bad_json = assert_problem(populated.anonymous.post(url, params={"kind": "occupancy"}, content=b"{nope",
                                                       auth=auth), 422, "Expecting property name")
    assert bad_json["reason"] == "bad_json"
    big = assert_problem(populated.anonymous.post(url, params={"kind": "occupancy"}, content=b" " * 70_000,
                                                  auth=auth), 422, "over 65536 bytes")
    assert big["reason"] == "too_large"


def test_gateway_docs_work_offline(populated: Stack) -> None:
    html = populated.anonymous.get("/docs").text
    assert "cdn" not in html.lower()
    assets = [part.split('"')[0] for part in html.split('src="')[1:] + html.split('href="')[1:]]
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert not asset.startswith("http"), asset
        assert populated.anonymous.get(asset).status_code == 200, asset
    schema = populated.anonymous.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.1")


def test_gateway_health_and_metrics(populated: Stack) -> None:
    assert populated.anonymous.get("/healthz").json() == {"status": "ok"}
    assert populated.anonymous.get("/readyz").json() == {"mqtt": True, "influxdb": True}
    text = populated.anonymous.get("/metrics").text
    assert 'gateway_requests_total{method="GET",route="/v1/summary",status="200"}' in text
    assert "gateway_mqtt_connected 1.0" in text


def test_gateway_token_command_prints_the_token_once_and_stores_its_hash(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    env = {"GATEWAY_TOKENS_FILE": str(tokens), "PATH": os.environ["PATH"]}
    proc = subprocess.run([sys.executable, "-m", "gateway", "token", "add", "--role", "viewer", "union-app"],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=30)
    token = proc.stdout.strip()
    assert len(token) >= 40
    assert token not in tokens.read_text()
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    found = TokenStore(tokens).verify(token)
    assert found is not None
    assert (found.name, found.role.value) == ("union-app", "viewer")
    again = subprocess.run([sys.executable, "-m", "gateway", "token", "add", "--role", "viewer", "union-app"],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=30)
    assert again.returncode != 0
    assert "exists already" in again.stderr


def test_gateway_readyz_follows_influxdb_and_restart_seeds_live_state(tmp_path: Path, own_influxd: Influxd) -> None:
    influxd = own_influxd
    stack = start_stack(tmp_path, influxd)
    try:
        ts = now_ms() - 1000
        publish(stack.broker.port, [
            (t(S, "occupancy"), occupancy(1, 9, ts=ts)),
            (t(S, "charger"), charger(2, "C2", 7, ts=ts, fault="E07")),
            (t(S, "temperature"), temperature(3, "indoor", 16.5, ts=ts)),
            (t(S, "status"), {"ts": ts, "state": "online", "fw": "2.0.1", "buffered": 4}),
        ])
        wait_for(lambda: influxd.count("station_status", "online", stack.db) == 1, what="the readings in InfluxDB")
        influxd.stop()
        readyz = stack.anonymous.get("/readyz")
        assert_problem(readyz, 503, "not ready: influxdb down")
        assert readyz.json()["mqtt"] is True
        assert_problem(stack.viewer.get(f"/v1/stations/{S}/readings", params={"kind": "occupancy"}), 503,
                       "influxdb unavailable")
        influxd.start()
        wait_for(lambda: stack.anonymous.get("/readyz").status_code == 200, what="ready again")
        stack.gateway.stop()
        stack.gateway.start()  # nothing was retained: only InfluxDB can tell the new process
        body = stack.viewer.get(f"/v1/stations/{S}").json()
        assert body["people"] == 9
        assert [(c["id"], c["sockets_in_use"], c["fault"]) for c in body["chargers"] if c["id"] == "C2"] == [
            ("C2", 7, "E07")]
        assert body["indoor_celsius"] == 16.5
        assert (body["online"], body["status"]["fw"], body["status"]["buffered"]) == (True, "2.0.1", 4)
    finally:
        stack.close()
