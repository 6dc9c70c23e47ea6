"""The whole path on a real three-node RabbitMQ cluster, end to end: the 45 stations' agents (the
simulator) publishing over MQTT through different nodes, ingest consuming the quorum queue over AMQP
into InfluxDB, while a follower of the queue and then its leader are SIGKILLed and restarted.

Every reading an agent had acknowledged is stored exactly once, and each station's seq has no gap.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from firmware_stubs.agent import Address
from simulator.simulation import Broker, Simulation, Summary
from telemetry import registry
from tests.cluster import Cluster
from tests.rig import Influxd, IngestProcess, until

QUEUE = "yizhan.ingest"
KINDS = "occupancy, charger, temperature"


def _stored_seqs(influxd: Influxd, db: str, station: str) -> list[int]:
    return [int(r["seq"]) for r in influxd.rows(f"SELECT seq FROM {KINDS} WHERE station = '{station}'", db)]


async def _kill_and_restart(cluster: Cluster, node: int, ingest: IngestProcess, what: str) -> None:
    """SIGKILL ``node`` once readings flow, let the stream go on without it, then start it again."""
    before = ingest.metric("ingest_points_written_total")
    await until(lambda: ingest.metric("ingest_points_written_total") > before + 300, timeout=60,
                what=f"readings flowing before the {what} is killed")
    await asyncio.to_thread(cluster.kill, node)
    during = ingest.metric("ingest_points_written_total")
    await until(lambda: ingest.metric("ingest_points_written_total") > during + 300, timeout=90,
                what=f"readings stored while the {what} is down")
    await asyncio.to_thread(cluster.start, node)


async def test_cluster_45_stations_follower_then_leader_killed_every_acknowledged_reading_stored_once(
        rabbit_cluster: Cluster, influxd: Influxd, db: str, tmp_path: Path) -> None:
    vhost = rabbit_cluster.new_vhost()
    nodes = rabbit_cluster.nodes
    amqp = ",".join(n.amqp_url(vhost=vhost) for n in nodes)
    ingest = IngestProcess(tmp_path / "ingest", AMQP_URL=amqp, INFLUX_URL=influxd.url, INFLUX_DB=db,
                           MQTT_CLIENT_ID=f"ingest-{uuid.uuid4().hex[:8]}")
    ingest.start()  # declares the queue and its binding before any station publishes
    try:
        user = f"{vhost}:guest"
        others = tuple(Address("127.0.0.1", n.mqtt_port, user, "guest") for n in nodes[1:])
        stations = registry.load().reporting
        assert len(stations) == 45  # the city's instrumented stations
        # station i starts on node i mod 3; the agents' default intervals, 60 simulated seconds a second
        sim = Simulation(stations=stations, broker=Broker("127.0.0.1", nodes[0].mqtt_port, user, "guest",
                                                          others=others),
                         start=time.time() - 3 * 3600, speed=60, duration=3600, seed=13, stagger=30,
                         drain_timeout=120)
        run = asyncio.create_task(sim.run())
        try:
            leader = await asyncio.to_thread(rabbit_cluster.queue_leader, QUEUE, vhost)
            follower = next(i for i in range(3) if i != leader)
            await _kill_and_restart(rabbit_cluster, follower, ingest, "follower")
            leader = await asyncio.to_thread(rabbit_cluster.queue_leader, QUEUE, vhost)
            await _kill_and_restart(rabbit_cluster, leader, ingest, "leader")
            summary: Summary = await asyncio.wait_for(run, timeout=300)
        finally:
            if not run.done():
                run.cancel()
        assert summary.total("buffered") == summary.total("dropped") == 0
        assert summary.total("acknowledged") == summary.total("produced")
        expected = {t.station: list(range(1, t.produced + 1)) for t in summary.stations}
        assert all(len(seqs) > 100 for seqs in expected.values()), "an hour of readings per station"

        def stored_count() -> int:
            return sum(int(r["count"]) for r in influxd.rows(f"SELECT count(seq) FROM {KINDS}", db))

        await until(lambda: stored_count() >= summary.total("produced"), timeout=120,
                    what=f"the {summary.total('produced')} readings in InfluxDB")
        for station, seqs in expected.items():
            stored = sorted(await asyncio.to_thread(_stored_seqs, influxd, db, station))
            missing, extra = len(set(seqs) - set(stored)), len(set(stored) - set(seqs))
            assert stored == seqs, f"{station}: {missing} missing, {len(stored) - len(set(stored))} twice, {extra} extra"
        metrics = ingest.metrics()
        rejects = {k: v for k, v in metrics.items() if k.startswith("ingest_rejects_total") and v}
        assert rejects == {}, rejects
    finally:
        ingest.kill()
