"""Same seed, same readings: whatever the machine's load, the connections, the faults."""

from __future__ import annotations

import json
import math
import time

from simulator.faults import (
    ChargerFault,
    ClockSkew,
    HeatingFailure,
    Malformed,
    NetworkLoss,
    Reboot,
    Scenario,
    SensorDropout,
    SensorFlatline,
)
from simulator.simulation import FAULT_OFFSET, Broker, Simulation
from telemetry import registry
from telemetry.contract import Kind
from tests.rig import Mosquitto

STATIONS = [s for s in registry.load().reporting if s.id in {
    "PL-KT-001", "PL-KT-002", "PL-KT-008", "PL-KT-009", "PL-HT-001", "PL-JN-001"}]
SCENARIO = Scenario(faults=(
    Reboot(station="PL-KT-001", at=20 * 60, for_=90),
    ChargerFault(station="PL-KT-001", charger="C1", at=30 * 60, for_=20 * 60),
    NetworkLoss(station="PL-KT-002", at=10 * 60, for_=20 * 60),
    HeatingFailure(station="PL-KT-008", at=0, for_=3600),
    SensorFlatline(station="PL-KT-009", sensor="indoor", at=15 * 60, for_=30 * 60),
    SensorDropout(station="PL-HT-001", sensor="indoor", at=5 * 60, for_=10 * 60),
    ClockSkew(station="PL-JN-001", skew=90),
), malformed=Malformed(rate=0.01))


async def run(port: int, start: float, seed: int) -> dict[str, list[tuple[Kind, str]]]:
    readings: dict[str, list[tuple[Kind, str]]] = {}
    sim = Simulation(stations=STATIONS, broker=Broker("127.0.0.1", port), start=start, speed=None, duration=5400,
                     seed=seed, scenario=SCENARIO, drain_timeout=10,
                     record=lambda station, kind, payload: readings.setdefault(station, []).append((kind, payload)))
    summary = await sim.run()
    assert summary.total("produced") == sum(len(r) for r in readings.values())
    return readings


async def test_determinism_same_seed_same_readings_another_seed_others(broker: Mosquitto) -> None:
    assert len(STATIONS) == 6
    start = float(int(time.time()) - 3 * 3600) + 0.25
    first = await run(broker.port, start, seed=7)
    second = await run(broker.port, start, seed=7)
    other = await run(broker.port, start, seed=8)
    assert sum(len(r) for r in first.values()) > 2000
    assert first == second
    assert first.keys() == other.keys()
    assert all(first[s] != other[s] for s in first)


async def test_simulation_readings_fall_exactly_on_their_schedule(broker: Mosquitto) -> None:
    """At full speed every charger reading is on its 30 s beat from the boot, and from the reboot."""
    station = next(s for s in STATIONS if s.id == "PL-KT-001")
    start = float(int(time.time()) - 3 * 3600)
    c1: list[int] = []

    def record(_station: str, kind: Kind, payload: str) -> None:
        if kind is Kind.CHARGER and '"charger_id":"C1"' in payload:
            c1.append(json.loads(payload)["ts"])

    sim = Simulation(stations=[station], broker=Broker("127.0.0.1", broker.port), start=start, speed=None,
                     duration=1800, seed=5, drain_timeout=10, record=record,
                     scenario=Scenario(faults=(Reboot(station=station.id, at=600, for_=60),)))
    await sim.run()
    boot, reboot = sim.runs[0].boot_at, math.ceil((start + 600 + FAULT_OFFSET + 60) * 1000) / 1000
    before = [round((boot + k * 30) * 1000) for k in range(60) if boot + k * 30 < start + 600]
    after = [round((reboot + k * 30) * 1000) for k in range(60) if reboot + k * 30 <= start + 1800]
    assert c1 == before + after
