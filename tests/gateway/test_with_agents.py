"""The gateway with real agents: the simulator's stations and data, and a config round trip."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry import registry
from tests.gateway.conftest import Stack, start_stack
from tests.mqtt import Collector
from tests.rig import ROOT, Influxd, child_env, wait_for

S = "PL-KT-003"


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory, influxd: Influxd) -> Iterator[Stack]:
    """The 45 stations: the last hour backfilled through ingest, then live on the broker."""
    directory = tmp_path_factory.mktemp("city")
    stack = start_stack(directory, influxd)
    env = child_env()
    with (directory / "simulator.log").open("wb") as log:
        simulator = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--backfill", "1h", "--seed", "5", "--progress-interval", "0",
             "--drain-timeout", "2"], cwd=ROOT, env={**env, "MQTT_URL": stack.broker.url}, stdout=log, stderr=log)
    try:
        wait_for(lambda: stack.viewer.get("/v1/summary").json()["city"]["online"] == 45, timeout=60,
                 what="the 45 simulated stations online in the gateway")
        wait_for(lambda: stack.influxd.count("occupancy", "people", stack.db) >= 45 * 60, timeout=90,
                 what="the simulated hour in InfluxDB")
        # the total is reached early by on-change and live readings while S's backfill still drains
        # (oldest first): wait until S's readings fill every five minutes of the hour
        buckets = (f"SELECT count(people) FROM occupancy WHERE station = '{S}' AND time > now() - 65m "
                   "GROUP BY time(5m) fill(none)")
        wait_for(lambda: len((stack.influxd.query(buckets, stack.db) or [{"values": []}])[0]["values"]) >= 12,
                 timeout=120, what=f"{S}'s simulated hour in InfluxDB, every five minutes of it")
        yield stack
    finally:
        simulator.send_signal(signal.SIGINT)
        simulator.wait(30)
        stack.close()


def test_gateway_with_the_simulated_city_every_endpoint_agrees_with_the_data(city: Stack) -> None:
    stations = city.viewer.get("/v1/stations", params={"limit": 1000}).json()["items"]
    reporting = [s for s in stations if s["reports"]]
    assert len(reporting) == 45
    assert all(s["online"] and s["people"] is not None and s["indoor_celsius"] is not None for s in reporting)
    assert all(16 <= s["indoor_celsius"] <= 22 for s in reporting)
    assert all(0 <= s["free_seats"] <= s["capacity"] for s in reporting)
    summary = city.viewer.get("/v1/summary").json()["city"]
    assert summary["online"] == 45
    assert summary["capacity"] == sum(s["capacity"] for s in reporting)
    assert summary["sockets_total"] == sum(s["sockets_total"] for s in stations)
    assert 0 < summary["people"] <= summary["capacity"]
    nearest = city.viewer.get("/v1/stations/nearest", params={"lat": 35.54, "lon": 106.66, "limit": 10}).json()
    assert nearest
    assert [s["distance_m"] for s in nearest] == sorted(s["distance_m"] for s in nearest)
    assert all(s["online"] and s["free_seats"] > 0 for s in nearest)
    station = registry.load().get(S)
    assert station is not None
    devices = {"charger": {c.id for c in station.chargers}, "sensor": set(station.sensors)}
    for kind, tag in (("occupancy", None), ("charger", "charger"), ("temperature", "sensor")):
        history = city.viewer.get(f"/v1/stations/{S}/readings", params={"kind": kind, "every": "5m"}).json()
        assert history["series"], kind
        if tag:  # a series per device of the station
            assert {s["tags"][tag] for s in history["series"]} == devices[tag], kind
        assert sum(len(s["points"]) for s in history["series"]) >= 10, kind
    detail = city.viewer.get(f"/v1/stations/{S}").json()
    assert all(c["sockets_in_use"] is not None and c["energy_wh"] is not None for c in detail["chargers"])
    assert detail["status"]["config_rev"] == "default"


def test_gateway_config_round_trip_with_the_agent(tmp_path: Path, influxd: Influxd) -> None:
    """PUT config -> retained on the broker -> the agent applies it -> its status says so -> acknowledged."""
    stack = start_stack(tmp_path, influxd)
    station = "PL-KT-002"
    env = child_env()
    with (tmp_path / "agent.log").open("wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "firmware_stubs", "--station", station], cwd=ROOT, stdout=log,
                                 stderr=log, env={**env, "MQTT_URL": stack.broker.url,
                                                  "AGENT_BUFFER_PATH": str(tmp_path / "agent.sqlite3")})
    watcher = Collector(stack.broker.port, f"stations/v1/{station}/config")
    try:
        wait_for(lambda: stack.viewer.get(f"/v1/stations/{station}").json()["online"], what="the agent online")
        result = stack.operator.put(f"/v1/stations/{station}/config", params={"wait": 10},
                                    json={"rev": "winter-2", "occupancy_interval_s": 20, "temperature_interval_s": 30})
        assert result.status_code == 200, result.text
        assert result.json()["acknowledged"] is True
        assert result.json()["applied_rev"] == "winter-2"
        wait_for(lambda: watcher.messages, what="the config seen by a plain subscriber")
        assert json.loads(watcher.messages[-1].payload)["occupancy_interval_s"] == 20
        detail = stack.viewer.get(f"/v1/stations/{station}").json()
        assert (detail["status"]["config_rev"], detail["config"]["rev"]) == ("winter-2", "winter-2")
        assert stack.viewer.get(f"/v1/stations/{station}/config").json()["acknowledged"] is True
    finally:
        watcher.close()
        agent.terminate()
        agent.wait(15)
        stack.close()
