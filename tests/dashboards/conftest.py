"""A simulated day in a real InfluxDB, for running every panel and alert query.

Once per session: a broker, ``python -m ingest`` and ``python -m simulator --backfill 24h`` for
four stations of the shipped registry, chosen for their devices (1, 2 and 3 chargers; 1 and 2
sensors; two districts) and given one fault each, so every panel has something to show:

    PL-KT-001  heating failure from the start, outdoor sensor drop-out at 6 h for 2 h
    PL-KT-007  charger C2 faulted (E07) throughout, clock 2 minutes ahead, a 5-minute reboot at 12 h
    PL-KT-008  network lost at 20 h for 1 h with a 200-reading buffer: readings dropped, seq gaps
    PL-HT-004  network lost at 23 h 45 min for good: offline and silent at the end

plus malformed payloads (rejects of every kind). After the backfill the simulator goes on live
until the session ends, so "now" panels and ingest's statistics have fresh data.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from telemetry.registry import load
from telemetry.storage import HOUR_MS, hour_of
from tests.rig import ROOT, Influxd, IngestProcess, Mosquitto, child_env, rebuild_rollups, stop_process, wait_for

STATIONS = ("PL-KT-001", "PL-KT-007", "PL-KT-008", "PL-HT-004")
COLD = "PL-KT-001"
FAULTY = ("PL-KT-007", "C2")
SKEWED = "PL-KT-007"
LOSSY = "PL-KT-008"
DARK = "PL-HT-004"
SIMULATOR_ARGS = (
    "--backfill", "24h", "--seed", "1", "--progress-interval", "0", "--drain-timeout", "1", "--buffer-max", "200",
    "--heating-failure", f"{COLD}@0s", "--dropout", f"{COLD}/outdoor@6h+2h",
    "--charger-fault", f"{FAULTY[0]}/{FAULTY[1]}:E07@0s", "--clock-skew", f"{SKEWED}=+2m",
    "--reboot", f"{SKEWED}@12h+5m", "--network-loss", f"{LOSSY}@20h+1h", "--network-loss", f"{DARK}@23h45m",
    "--malformed-rate", "0.002",
)
BACKFILL_TIMEOUT = 120.0
DAY_HOURS = 26
"""Hours back from now that the rollups are rebuilt: the backfilled day and its first hour's start."""


@dataclass(slots=True, frozen=True)
class SimulatedDay:
    """The database holding the simulated day, and where to read it."""

    influxd: Influxd
    db: str
    log: Path
    built: dict[str, int] = field(default_factory=dict)

    def rows(self, query: str) -> list[dict[str, object]]:
        return self.influxd.rows(query, self.db)

    def rollups(self) -> None:
        """The rollups of every hour closed by now, by ingest's rebuild (run again once an hour has closed
        since the last one: ingest does not keep them itself yet)."""
        hour = hour_of(int(time.time() * 1000))
        if self.built.get("hour") != hour:
            rebuild_rollups(self.influxd, self.db, since_ms=hour - DAY_HOURS * HOUR_MS, spool=self.log.parent)
            self.built["hour"] = hour


def _registry_subset(path: Path) -> Path:
    stations = [s.model_dump(mode="json") for s in load().stations if s.id in STATIONS]
    path.write_text(yaml.safe_dump({"stations": stations}, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _live(day: SimulatedDay) -> bool:
    """Caught up: the stations still online have readings of the last 90 s."""
    recent = day.rows('SELECT count("seq") FROM "occupancy" WHERE time > now() - 90s GROUP BY "station"')
    return len(recent) >= len(STATIONS) - 1


@pytest.fixture(scope="session")
def simulated_day(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedDay]:
    directory = tmp_path_factory.mktemp("simulated-day")
    registry = _registry_subset(directory / "stations.yaml")
    broker = Mosquitto(directory / "mosquitto").start()
    db = f"day_{uuid.uuid4().hex[:8]}"
    ingest = IngestProcess(directory / "ingest", MQTT_URL=broker.url, INFLUX_URL=influxd.url, INFLUX_DB=db,
                           MQTT_CLIENT_ID=f"ingest-{db}", INGEST_STATS_SECONDS="1", INGEST_STATION_STATS_SECONDS="2")
    day = SimulatedDay(influxd, db, directory / "simulator.log")
    simulator: subprocess.Popen[bytes] | None = None
    try:
        ingest.start()
        env = child_env({"MQTT_URL": broker.url})
        with day.log.open("wb") as log:
            simulator = subprocess.Popen([sys.executable, "-m", "simulator", "--registry", str(registry),
                                          *SIMULATOR_ARGS], cwd=ROOT, env=env, stdout=log, stderr=log)
        started = time.monotonic()
        wait_for(lambda: _alive(simulator, day) and _live(day), timeout=BACKFILL_TIMEOUT, interval=0.5,
                 what="the simulated day backfilled and live")
        sys.stderr.write(f"\nsimulated day backfilled in {time.monotonic() - started:.1f} s\n")
        day.rollups()
        yield day
    finally:
        if simulator is not None:
            stop_process(simulator, timeout=15)
        ingest.stop()
        broker.stop()


def _alive(simulator: subprocess.Popen[bytes], day: SimulatedDay) -> bool:
    if simulator.poll() is not None:
        raise AssertionError(f"the simulator exited ({simulator.returncode}): {day.log.read_text()[-3000:]}")
    return True
