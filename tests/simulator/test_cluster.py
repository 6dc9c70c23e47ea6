"""The simulator's stations on a real three-node RabbitMQ cluster: spread over the nodes, one node
SIGKILLed mid-run, its stations fail over to the next node and no acknowledged reading is lost."""

from __future__ import annotations

import asyncio
import time

from firmware_stubs.agent import Address
from simulator.simulation import Broker, Simulation
from telemetry import registry
from telemetry.contract import AgentConfig
from tests.cluster import Cluster
from tests.mqtt import Collector, reading_seqs
from tests.rig import until

CONFIG = AgentConfig(occupancy_interval_s=5, charger_interval_s=5, temperature_interval_s=5, status_interval_s=5)


async def test_simulator_on_the_cluster_a_node_killed_its_stations_fail_over_and_nothing_is_lost(
        rabbit_cluster: Cluster) -> None:
    vhost = rabbit_cluster.new_vhost()
    user = f"{vhost}:guest"
    nodes = [Address("127.0.0.1", n.mqtt_port, user, "guest") for n in rabbit_cluster.nodes]
    stations = registry.load().reporting[:6]
    # a subscriber on node 0, which lives: the plugin acknowledges a QoS 1 PUBLISH once its queues have it
    collector = Collector(rabbit_cluster.nodes[0].mqtt_port, "stations/v1/+/+", username=user, password="guest")
    sim = Simulation(stations=stations, broker=Broker(nodes[0].host, nodes[0].port, user, "guest",
                                                      others=tuple(nodes[1:])),
                     start=time.time() - 900, speed=30, duration=600, seed=11, config=CONFIG, stagger=5,
                     drain_timeout=60)
    try:
        run = asyncio.create_task(sim.run())
        await until(lambda: len(reading_seqs(list(collector.messages))) == 6, timeout=60, what="readings of the six stations")
        await asyncio.to_thread(rabbit_cluster.kill, 1)
        try:
            summary = await asyncio.wait_for(run, timeout=180)
        finally:
            await asyncio.to_thread(rabbit_cluster.start, 1)

        def missing() -> dict[str, list[int]]:
            got = reading_seqs(list(collector.messages))
            return {t.station: sorted(set(range(1, t.produced + 1)) - got.get(t.station, set()))
                    for t in summary.stations if not got.get(t.station, set()) >= set(range(1, t.produced + 1))}

        try:
            await until(lambda: not missing(), timeout=30, what="every reading at the subscriber")
        except AssertionError as exc:
            gaps = {k: (v[0], v[-1], len(v)) for k, v in missing().items()}
            raise AssertionError(f"{exc}; missing (first, last, how many): {gaps}; tallies: {summary.stations}") \
                from None
    finally:
        collector.close()
    assert summary.total("buffered") == summary.total("dropped") == 0
    assert summary.total("acknowledged") == summary.total("produced")
    assert all(t.produced > 20 for t in summary.stations)
    got = reading_seqs(list(collector.messages))
    for t in summary.stations:
        assert got[t.station] == set(range(1, t.produced + 1)), f"{t.station}: a seq missing or extra"
