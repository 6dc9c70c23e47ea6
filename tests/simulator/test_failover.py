"""The simulator over several brokers: stations spread over the nodes, and moved to the next when one dies."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_stubs.agent import Address
from simulator.simulation import Broker, Simulation
from telemetry import registry
from telemetry.contract import AgentConfig
from tests.mqtt import Collector, reading_seqs
from tests.rig import Mosquitto, mosquittos, until

CONFIG = AgentConfig(occupancy_interval_s=5, charger_interval_s=5, temperature_interval_s=5, status_interval_s=5)


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[list[Mosquitto]]:
    with mosquittos(tmp_path, 3) as started:
        yield started


def online_on(collector: Collector) -> list[str]:
    """Stations in the order their first online status reached this broker."""
    seen: dict[str, None] = {}
    for m in list(collector.messages):
        if m.topic.endswith("/status") and json.loads(m.payload)["state"] == "online":
            seen.setdefault(m.topic.split("/")[2], None)
    return list(seen)


async def test_simulator_spreads_stations_over_the_nodes_and_they_fail_over_without_a_seq_gap(
        brokers: list[Mosquitto]) -> None:
    stations = registry.load().reporting[:6]
    collectors = [Collector(b.port, "stations/v1/+/+") for b in brokers]
    broker = Broker("127.0.0.1", brokers[0].port, others=tuple(Address("127.0.0.1", b.port) for b in brokers[1:]))
    sim = Simulation(stations=stations, broker=broker, start=time.time() - 900, speed=60, duration=600, seed=7,
                     config=CONFIG, stagger=5, drain_timeout=30)
    try:
        run = asyncio.create_task(sim.run())
        await until(lambda: sum(len(online_on(c)) for c in collectors) == 6, what="the six stations online")
        for i, c in enumerate(collectors):
            assert set(online_on(c)) == {s.id for k, s in enumerate(stations) if k % 3 == i}, f"node {i}"
        brokers[0].stop()
        summary = await asyncio.wait_for(run, timeout=120)
    finally:
        for c in collectors:
            c.close()
    moved = {stations[0].id, stations[3].id}
    assert moved <= set(online_on(collectors[1])), "the stations of the dead node did not move to the next"
    assert summary.total("buffered") == summary.total("dropped") == 0
    got = reading_seqs(m for c in collectors for m in list(c.messages))
    for t in summary.stations:
        assert t.produced > 20
        assert got[t.station] == set(range(1, t.produced + 1)), f"{t.station}: a seq is missing"
