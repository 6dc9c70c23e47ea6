"""A station offline for 10 days comes back and every reading it kept is stored (the contract's one age limit)."""

from __future__ import annotations

import time

from simulator.faults import NetworkLoss, Scenario
from simulator.simulation import Broker, Simulation
from telemetry import registry
from telemetry.contract import AgentConfig
from tests.conftest import IngestFactory
from tests.rig import Influxd, Mosquitto, wait_for

DAY = 86_400.0


async def test_simulator_station_offline_10_days_every_reading_stored(
        broker: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    start_ingest()
    station = registry.load().get("PL-KT-001")
    assert station is not None
    start = float(int(time.time()) - 10 * DAY - 7 * 3600)
    scenario = Scenario(faults=(NetworkLoss(station=station.id, at=60.0, for_=10 * DAY),))
    config = AgentConfig(occupancy_interval_s=900, charger_interval_s=900, temperature_interval_s=900,
                         status_interval_s=3600)
    summary = await Simulation(stations=[station], broker=Broker("127.0.0.1", broker.port), start=start,
                               duration=10 * DAY + 6 * 3600, seed=3, scenario=scenario, config=config,
                               replay_rate=100_000, stagger=1, drain_timeout=120).run()
    [row] = summary.stations
    assert row.produced > 4000  # ten days of five readings every 15 minutes
    assert (row.dropped, row.buffered, row.acknowledged) == (0, 0, row.produced)
    readings = "occupancy, charger, temperature"

    def stored() -> int:
        return sum(int(r["count"]) for r in influxd.rows(f'SELECT count("seq") FROM {readings}', db))

    wait_for(lambda: stored() == row.produced, timeout=60, what=f"the {row.produced} readings in InfluxDB")
    rejects = influxd.rows('SELECT * FROM "monitor"."ingest_rejects"', db)
    assert rejects == [], "no reading of the ten days refused as too old"
    oldest = influxd.rows(f"SELECT seq FROM {readings} ORDER BY time LIMIT 1", db)[0]
    assert oldest["time"] < (start + 2 * DAY) * 1000
