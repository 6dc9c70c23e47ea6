"""The agents' CPU per reading on a fixed workload: the simulator at full speed, same readings every run.

    .venv/bin/python -m bench.agents_cpu [--stations 2000] [--minutes 15]

A synthetic registry of N stations, simulated for ``--minutes`` from a fixed start and seed as
fast as the process can, in this process, against a local mosquitto. The readings are the same
on every run and every version of the agent (the determinism test's guarantee), so CPU seconds
per reading compare versions even on a busy machine, where ``bench.scale agents`` (real rates)
measures a different amount of work each time. Prints readings, CPU seconds (``process_time``:
the agents and paho, not the broker), µs per reading and the peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

from simulator.simulation import Broker, Simulation
from simulator.synthetic import make_registry
from telemetry import registry
from tests.rig import Mosquitto

START = 1796104800.0
"""2026-12-01T06:00:00Z: fixed, so every run simulates the same readings."""


async def measure(stations: int, minutes: float, work: Path) -> dict[str, object]:
    path = work / "stations.json"
    path.write_text(make_registry(stations, as_json=True))
    chosen = registry.load(path).reporting[:stations]
    broker = Mosquitto(work / "mosquitto", extra="max_connections -1", persistence=False).start()
    try:
        sim = Simulation(stations=chosen, broker=Broker("127.0.0.1", broker.port), start=START, speed=None,
                         duration=minutes * 60, seed=3, drain_timeout=20)
        cpu0, wall0 = time.process_time(), time.monotonic()
        summary = await sim.run()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    finally:
        broker.stop()
    produced = summary.total("produced")
    return {"stations": stations, "readings": produced, "acknowledged": summary.total("acknowledged"),
            "cpu_s": round(cpu, 2), "wall_s": round(wall, 1), "cpu_us_per_reading": round(cpu / produced * 1e6, 1),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yizhan-agents-cpu-") as tmp:
        print(json.dumps(asyncio.run(measure(args.stations, args.minutes, Path(tmp)))))


if __name__ == "__main__":
    main()
