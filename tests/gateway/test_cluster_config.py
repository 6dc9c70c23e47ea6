"""Config push and live state on a real three-node RabbitMQ cluster (retained messages are per node there):
a push reaches an agent on another node than the gateway's reader, an agent that fails over after the
push runs it, and a node restarted after it missed a push gets it again."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from firmware_stubs.agent import Address, Agent
from firmware_stubs.buffer import BufferFile
from gateway.credentials import Role, TokenStore
from telemetry import registry
from telemetry.backoff import Backoff
from telemetry.contract import AgentConfig, Kind, topic
from tests.cluster import Cluster
from tests.firmware_stubs.conftest import stub_agent
from tests.mqtt import Collector
from tests.rig import GatewayProcess, Influxd, until, wait_for

START = AgentConfig(rev="start", occupancy_interval_s=60, charger_interval_s=60, temperature_interval_s=60,
                    status_interval_s=2)
PUSHED = {"rev": "pushed", "occupancy_interval_s": 7, "status_interval_s": 2}


@dataclass
class Gateway:
    process: GatewayProcess
    operator: httpx.Client
    viewer: httpx.Client

    def push(self, station: str, **params: Any) -> dict[str, Any]:
        response = self.operator.put(f"/v1/stations/{station}/config", json=PUSHED, params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture(scope="module")
def vhost(rabbit_cluster: Cluster) -> str:
    return rabbit_cluster.new_vhost()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, rabbit_cluster: Cluster, vhost: str,
            influxd: Influxd) -> Iterator[Gateway]:
    """``python -m gateway`` linked to the three nodes (MQTT_URL lists them), in the module's vhost."""
    directory = tmp_path_factory.mktemp("gateway")
    process = GatewayProcess(directory, MQTT_URL=rabbit_cluster.mqtt_urls(f"{vhost}:guest", "guest"),
                             INFLUX_URL=influxd.url, INFLUX_DB=f"gw_{uuid.uuid4().hex[:10]}",
                             GATEWAY_MQTT_CLIENT_ID=f"gw-{vhost}")
    tokens = TokenStore(Path(process.env["GATEWAY_TOKENS_FILE"]))
    viewer, operator = tokens.add("dispatch", Role.VIEWER), tokens.add("on-call", Role.OPERATOR)
    process.start()
    clients = [httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {t}"}, timeout=30)
               for t in (operator, viewer)]
    try:
        yield Gateway(process, *clients)
    finally:
        for c in clients:
            c.close()
        process.stop()


AgentOn = Callable[..., Agent]


@pytest.fixture
async def agent_on(tmp_path: Path, rabbit_cluster: Cluster, vhost: str) -> AsyncIterator[AgentOn]:
    """``agent_on(station, *nodes)``: an agent of ``station`` on those nodes (in that order); power cut after."""
    made: list[Agent] = []
    files: list[BufferFile] = []

    def start(station_id: str, *nodes: int) -> Agent:
        station = registry.load().get(station_id)
        assert station is not None
        files.append(BufferFile(path=tmp_path / f"{station_id}-{len(files)}.sqlite3"))
        brokers = [Address("127.0.0.1", rabbit_cluster.nodes[i].mqtt_port, f"{vhost}:guest", "guest") for i in nodes]
        made.append(stub_agent(station, files[-1].buffer(station=station_id), brokers, config=START,
                               backoff=Backoff(initial=0.2, cap=2.0, jitter=0.5, healthy_after=5.0)))
        return made[-1]

    yield start
    for agent in made:
        await agent.close(graceful=False)
    for f in files:
        f.close()


async def reader_and_other(gateway: Gateway) -> tuple[int, int]:
    """The node the gateway reads the live state from (its metric), and the next one."""
    reader = await until(lambda: (r := int(gateway.process.metric("gateway_mqtt_reader"))) >= 0 and r + 1,
                         what="the gateway reading from a node") - 1
    return reader, (reader + 1) % 3


def node_of(agent: Agent, cluster: Cluster) -> int:
    port = agent._connection.endpoint.port
    return next(n.index for n in cluster.nodes if n.mqtt_port == port)


def retained_config(cluster: Cluster, node: int, vhost: str, station: str) -> dict[str, Any] | None:
    """The config node ``node`` holds retained for ``station`` (a fresh exact subscription there)."""
    c = Collector(cluster.nodes[node].mqtt_port, topic(station, Kind.CONFIG), username=f"{vhost}:guest",
                  password="guest")
    try:
        wait_for(lambda: c.messages, timeout=3, what="the retained config")
    except AssertionError:
        return None
    finally:
        c.close()
    return dict(json.loads(c.messages[0].payload))


async def test_cluster_config_push_reaches_an_agent_on_another_node_than_the_gateways_reader(
        rabbit_cluster: Cluster, gateway: Gateway, agent_on: AgentOn) -> None:
    station = "PL-KT-006"
    reader, other = await reader_and_other(gateway)
    agent = agent_on(station, other)
    await until(lambda: agent.connected, what=f"the agent on node {other}")
    await until(lambda: gateway.viewer.get(f"/v1/stations/{station}").json()["online"],
                what=f"the gateway (reading from node {reader}) sees the agent on node {other} online")
    result = await asyncio.to_thread(gateway.push, station, wait=20)  # the agent runs on this event loop
    assert result["acknowledged"] is True, result
    assert agent.config.rev == "pushed"
    assert agent.config.generation == result["config"]["generation"]
    assert node_of(agent, rabbit_cluster) == other
    assert int(gateway.process.metric("gateway_mqtt_reader")) == reader


async def test_cluster_agent_that_fails_over_after_the_push_runs_the_pushed_config(
        rabbit_cluster: Cluster, gateway: Gateway, vhost: str, agent_on: AgentOn) -> None:
    """Pushed while the station is off; then its first node is dead: on the next node it gets the push."""
    station = "PL-KT-007"
    pushed = gateway.push(station)["config"]
    for node in (0, 1, 2):
        held = await until(lambda: retained_config(rabbit_cluster, node, vhost, station),  # noqa: B023
                           what=f"the push retained on node {node}")
        assert held == pushed, f"node {node}"
    rabbit_cluster.kill(1)
    try:
        agent = agent_on(station, 1, 2)
        await until(lambda: agent.connected and agent.config.rev == "pushed", timeout=60,
                    what="the agent failed over to node 2 and running the push")
        assert node_of(agent, rabbit_cluster) == 2
        assert agent.config.generation == pushed["generation"]
        status = await until(lambda: gateway.viewer.get(f"/v1/stations/{station}/config").json()["acknowledged"],
                             what="the gateway sees the station running it")
        assert status
    finally:
        rabbit_cluster.start(1)


async def test_cluster_node_restarted_after_it_missed_a_push_gets_the_config_again(
        rabbit_cluster: Cluster, gateway: Gateway, vhost: str, agent_on: AgentOn) -> None:
    station = "PL-KT-008"
    first = gateway.push(station)["config"]
    await until(lambda: retained_config(rabbit_cluster, 2, vhost, station) == first, what="the first push on node 2")
    rabbit_cluster.stop(2)
    try:
        second = gateway.operator.put(f"/v1/stations/{station}/config",
                                      json={**PUSHED, "rev": "second", "occupancy_interval_s": 9})
        assert second.status_code == 200, second.text
        newest = second.json()["config"]
        assert newest["generation"] > first["generation"]
    finally:
        rabbit_cluster.start(2)
    held = await until(lambda: (c := retained_config(rabbit_cluster, 2, vhost, station)) and c["rev"] == "second"
                       and c, timeout=90, what="node 2, back with the first push, given the second by the gateway")
    assert held == newest
    agent = agent_on(station, 2)
    await until(lambda: agent.connected and agent.config.rev == "second", what="an agent on node 2 runs the second")


async def test_cluster_live_state_goes_on_when_the_node_it_is_read_from_dies(
        rabbit_cluster: Cluster, gateway: Gateway, agent_on: AgentOn) -> None:
    station = "PL-KT-009"
    reader, other = await reader_and_other(gateway)
    agent = agent_on(station, other)
    await until(lambda: gateway.viewer.get(f"/v1/stations/{station}").json()["online"],
                what=f"the station on node {other} online in the gateway")
    await asyncio.to_thread(rabbit_cluster.kill, reader)
    try:
        killed = time.time()
        new = await until(lambda: (r := int(gateway.process.metric("gateway_mqtt_reader"))) not in (-1, reader)
                          and r + 1, what="another node read from") - 1
        assert new != reader
        await until(lambda: (seen := gateway.viewer.get(f"/v1/stations/{station}").json()["last_seen"])
                    and datetime.fromisoformat(seen).timestamp() > killed + 1,
                    what="the station's messages (through a node that lives) reaching the live state again")
        assert gateway.viewer.get(f"/v1/stations/{station}").json()["online"] is True
        assert agent.connected
    finally:
        await asyncio.to_thread(rabbit_cluster.start, reader)
