"""A simulation: many real agents on simulated drivers and simulated time, with faults.

Each station is a :class:`StationRun`: its model (people, chargers, temperatures), its network
(:class:`~simulator.network.SimNetwork`, the agent's transport, which a fault cuts), and the real
:class:`~firmware_stubs.agent.Agent` on simulated drivers, booted at a staggered moment of the
first 30 simulated seconds and rebooted when a fault says so. Every agent shares one
:class:`SimClock`, one buffer database and one event loop: no thread per agent, a few tasks and
one socket each. Malformed payloads go through one extra client (:class:`MalformedSender`).

A run ends at ``start + duration`` (or on ``stop``): every agent stops reading at that moment of
simulated time, then they drain their buffers (up to ``drain_timeout`` real seconds), publish
``offline`` and disconnect, and :meth:`Simulation.run` returns the tally of every station.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from firmware_stubs.agent import Address, Agent, default_backoff
from firmware_stubs.buffer import Buffer, BufferFile
from firmware_stubs.clock import Clock
from simulator.clock import SimClock, SkewedClock
from simulator.drivers import sim_drivers
from simulator.exceptions import SimulatorError
from simulator.faults import MALFORMED_KINDS, ClockSkew, NetworkLoss, Reboot, Scenario
from simulator.malformed import MalformedSender
from simulator.model import StationModel, unit
from simulator.network import SimNetwork
from telemetry.contract import AgentConfig, Kind
from telemetry.registry import Station

logger = logging.getLogger(__name__)

FIRMWARE: Final = "yizhan-sim 0.1.0"
FAULT_OFFSET: Final = 0.0005
"""Faults act half a millisecond after their moment: readings fall on whole milliseconds, so a
fault and a reading never share a moment and which comes first never depends on scheduling."""


@dataclass(slots=True, frozen=True)
class Broker:
    """Where the agents connect, and as whom.

    With ``passwords`` (station id -> password, from ``python -m gateway provision``) each agent
    logs in as its station, as a device does on a broker with per-station ACLs; without, every
    agent uses ``username`` and ``password``. The malformed-payload sender always uses those.

    ``others`` are more nodes of the same cluster (``MQTT_URL`` with several URLs): the agents are
    spread over the nodes, station i starting on node i mod n, and fail over to the next ones.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    passwords: Mapping[str, str] | None = None
    others: tuple[Address, ...] = ()

    def addresses(self, station: str, index: int) -> list[Address]:
        """The nodes for the ``index``-th station, starting at node ``index`` mod n."""
        nodes = [Address(self.host, self.port, self.username, self.password, self.tls), *self.others]
        if self.passwords is not None:
            nodes = [replace(a, username=station, password=self.passwords[station]) for a in nodes]
        k = index % len(nodes)
        return nodes[k:] + nodes[:k]


@dataclass(slots=True)
class StationTally:
    """One station over the whole run (every boot of its agent)."""

    station: str
    produced: int = 0
    acknowledged: int = 0
    buffered: int = 0
    dropped: int = 0
    driver_errors: int = 0
    reboots: int = 0
    connected: bool = False
    malformed: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True, frozen=True)
class Progress:
    sim_time: float
    real_seconds: float
    stations: int
    booted: int
    connected: int
    produced: int
    acknowledged: int
    buffered: int
    malformed: int


@dataclass(slots=True, frozen=True)
class Summary:
    start: float
    end: float
    real_seconds: float
    stations: list[StationTally]

    def total(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.stations)

    def malformed(self) -> Counter[str]:
        """Malformed payloads the broker acknowledged, by kind, over every station."""
        out: Counter[str] = Counter()
        for t in self.stations:
            out.update(t.malformed)
        return out


class StationRun:
    """One station in the simulation: its model, its agent's boots, its faults' effects."""

    def __init__(self, sim: Simulation, station: Station, file: BufferFile, index: int) -> None:
        self.sim, self.station, self.file, self.index = sim, station, file, index
        seed, sid = sim.seed, station.id
        self.model = StationModel(station=station, seed=seed, start=sim.start,
                                  faults=sim.scenario.station_faults(sid, sim.start))
        skews = [(f.window(sim.start), f.skew) for f in sim.scenario.of(sid) if isinstance(f, ClockSkew)]
        self.clock: Clock = SkewedClock(base=sim.clock, skew=lambda t: sum(s for w, s in skews if w.covers(t))) \
            if skews else sim.clock
        self.boot_at = sim.start + round(unit(seed, sid, "boot") * sim.stagger, 3)
        self.tally = StationTally(sid)
        self.agent: Agent | None = None
        self.buffer: Buffer | None = None
        self.network = SimNetwork()
        self.frozen = False
        self._malformed_rng = random.Random(f"{seed}:{sid}:malformed")  # noqa: S311 - simulation
        self._malformed_next = int(unit(seed, sid, "malformed") * len(MALFORMED_KINDS))

    def boot(self) -> None:
        if self.frozen or self.agent is not None:
            return
        sim, sid = self.sim, self.station.id
        self.buffer = self.file.buffer(station=sid, max_readings=sim.buffer_max)
        agent = Agent(station=self.station, drivers=sim_drivers(self.model, world=sim.clock, agent=self.clock),
                      buffer=self.buffer, brokers=sim.broker.addresses(sid, self.index), clock=self.clock,
                      config=sim.config, replay_rate=sim.replay_rate, fw=FIRMWARE,
                      flush_timeout=sim.drain_timeout, transport=self.network,
                      backoff=default_backoff(random.Random(f"{sim.seed}:{sid}:{self.tally.reboots}").random),  # noqa: S311 - jitter
                      on_reading=self._on_reading)
        agent.start()
        self.agent = agent

    def boot_when_due(self, wait: asyncio.Future[None]) -> None:
        """Boot when ``wait`` is over (the boot moment, the end of a power cut), unless called off."""
        if not wait.cancelled():
            self.boot()

    async def power_off(self) -> None:
        """Cut the power: no goodbye, the broker publishes the last will; the buffer stays."""
        agent, self.agent = self.agent, None
        if agent is not None:
            await agent.close(graceful=False)
            self._account(agent)

    async def shut_down(self) -> None:
        """Stop cleanly: drain the buffer (up to the drain timeout), publish offline, disconnect."""
        agent, self.agent = self.agent, None
        if agent is not None:
            await agent.close(graceful=True)
            self._account(agent)

    def freeze(self) -> None:
        """The run is over: no more readings, no more boots."""
        self.frozen = True
        if self.agent is not None:
            self.agent.stop_reading()

    def snapshot(self, malformed: dict[str, Counter[str]]) -> StationTally:
        """The tally now; ``malformed``: the sender's acknowledged payloads of every station."""
        t = self.tally
        out = StationTally(t.station, t.produced, t.acknowledged, 0, 0, t.driver_errors, t.reboots,
                           malformed=Counter(malformed.get(t.station, {})))
        if self.agent is not None:
            s = self.agent.stats
            out.produced += s.produced
            out.acknowledged += s.acknowledged
            out.driver_errors += s.driver_errors
            out.connected = self.agent.connected
        if self.buffer is not None:
            out.buffered, out.dropped = len(self.buffer), self.buffer.dropped
        return out

    def _account(self, agent: Agent) -> None:
        s = agent.stats
        self.tally.produced += s.produced
        self.tally.acknowledged += s.acknowledged
        self.tally.driver_errors += s.driver_errors

    def _on_reading(self, kind: Kind, payload: str) -> None:
        sim = self.sim
        if sim.record is not None:
            sim.record(self.station.id, kind, payload)
        kinds = sim.scenario.malformed.kinds
        rate = sim.scenario.malformed.rate
        if rate and kinds and self._malformed_rng.random() < rate and self.network.up and sim.sender:
            kind_bad = kinds[self._malformed_next % len(kinds)]
            self._malformed_next += 1
            sim.sender.send(self.station.id, kind_bad)


class Simulation:
    """Many stations' agents on simulated drivers and time.

    Args:
        stations: the stations to run (from the registry; ingest must know them too).
        broker: where the agents connect.
        start: simulated epoch seconds at which the run begins.
        speed: simulated seconds per real second (None: as fast as possible); never past now.
        duration: simulated seconds to run (None: until ``stop``).
        seed: same seed, same start, same stations and scenario: the same readings.
        scenario: faults and malformed payloads.
        config: the agents' intervals (default: the contract's defaults; the config topic wins).
        replay_rate, buffer_max: the agents' settings.
        buffer_path: one SQLite file for every station's buffer (default in memory).
        drain_timeout: real seconds the agents get to empty their buffers at the end.
        record: called with (station, kind, payload) for every reading produced.
        on_progress: called every ``progress_interval`` real seconds.
        stagger: agents boot at moments spread over this many simulated seconds.
    """

    def __init__(self, *, stations: Sequence[Station], broker: Broker, start: float, speed: float | None = None,
                 duration: float | None = None, seed: int = 1, scenario: Scenario | None = None,
                 config: AgentConfig | None = None, replay_rate: float = 50.0, buffer_max: int = 500_000,
                 buffer_path: Path | str = ":memory:", drain_timeout: float = 30.0,
                 record: Callable[[str, Kind, str], None] | None = None,
                 on_progress: Callable[[Progress], None] | None = None, progress_interval: float = 1.0,
                 stagger: float = 30.0) -> None:
        self.stations = tuple(stations)
        self.broker = broker
        self.start = round(start, 3)
        self.duration = duration
        self.seed = seed
        self.scenario = scenario or Scenario()
        self.scenario.check(self.stations)
        if broker.passwords is not None and (missing := [s.id for s in self.stations if s.id not in broker.passwords]):
            raise SimulatorError(f"no password for {len(missing)} station(s) in the secrets file: "
                                 f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                                 "(run python -m gateway provision with the same registry)")
        self.config = config
        self.replay_rate, self.buffer_max, self.buffer_path = replay_rate, buffer_max, buffer_path
        self.drain_timeout = drain_timeout
        self.record, self.on_progress, self.progress_interval = record, on_progress, progress_interval
        self.stagger = stagger
        self.clock = SimClock(start=self.start, speed=speed)
        self.sender: MalformedSender | None = None
        self.runs: list[StationRun] = []
        self._real0 = time.monotonic()

    def malformed_acked(self) -> dict[str, Counter[str]]:
        return self.sender.acked() if self.sender is not None else {}

    def progress(self) -> Progress:
        acked = self.malformed_acked()
        tallies = [r.snapshot(acked) for r in self.runs]
        return Progress(self.clock.time(), time.monotonic() - self._real0, len(self.stations),
                        sum(r.agent is not None for r in self.runs), sum(t.connected for t in tallies),
                        sum(t.produced for t in tallies), sum(t.acknowledged for t in tallies),
                        sum(t.buffered for t in tallies), sum(sum(t.malformed.values()) for t in tallies))

    async def run(self, *, stop: asyncio.Event | None = None) -> Summary:
        """Run until ``start + duration`` of simulated time or ``stop``; drain; the tally."""
        self._real0 = time.monotonic()
        if self.scenario.malformed.rate > 0:
            b = self.broker
            self.sender = MalformedSender(host=b.host, port=b.port, username=b.username, password=b.password,
                                          tls=b.tls)
            await asyncio.to_thread(self.sender.start)
        try:
            with BufferFile(path=self.buffer_path, durable=False) as file:
                self.runs = [StationRun(self, s, file, i) for i, s in enumerate(self.stations)]
                await self._run(stop or asyncio.Event())
                acked = self.malformed_acked()
                summary = Summary(self.start, self.clock.time(), time.monotonic() - self._real0,
                                  [r.snapshot(acked) for r in self.runs])
        finally:
            if self.sender is not None:
                self.sender.close()
        return summary

    async def _run(self, stop: asyncio.Event) -> None:
        end = self.start + self.duration if self.duration is not None else math.inf
        async with asyncio.TaskGroup() as tg:
            for r in self.runs:
                self.clock.sleep_until(r.boot_at).add_done_callback(r.boot_when_due)
            background = [tg.create_task(self._fault(f), name=f"{f.kind} {f.station}")
                          for f in self.scenario.faults if isinstance(f, NetworkLoss | Reboot)]
            if self.on_progress is not None:
                background.append(tg.create_task(self._report(self.on_progress), name="progress"))
            ticking = tg.create_task(self.clock.run(until=end), name="simulated time")
            stopping = tg.create_task(stop.wait(), name="stop")
            await asyncio.wait([ticking, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in (ticking, stopping, *background):
                task.cancel()
            await asyncio.wait([ticking])
            for r in self.runs:
                r.freeze()
            logger.info("simulated time is up at %s: draining the agents' buffers", self.clock.time())
            draining = tg.create_task(self.clock.run(), name="simulated time (drain)")
            await asyncio.gather(*(r.shut_down() for r in self.runs))
            if self.sender is not None:
                await asyncio.to_thread(self.sender.wait_acked, self.drain_timeout)
            draining.cancel()

    async def _fault(self, fault: NetworkLoss | Reboot) -> None:
        run = next(r for r in self.runs if r.station.id == fault.station)
        begin = self.start + fault.at + FAULT_OFFSET
        await self.clock.sleep_until(begin)
        match fault:
            case NetworkLoss():
                logger.info("%s: network lost", run.station.id)
                run.network.cut()
                await self.clock.sleep_until(begin + fault.for_)
                logger.info("%s: network back", run.station.id)
                run.network.restore()
            case Reboot():
                if run.agent is None:
                    return
                logger.info("%s: reboot (off for %.0f s)", run.station.id, fault.for_)
                back = self.clock.sleep_until(math.ceil((begin + fault.for_) * 1000) / 1000)  # on a whole ms
                back.add_done_callback(run.boot_when_due)  # at that very moment, however long power_off takes
                run.tally.reboots += 1
                await run.power_off()
                await back

    async def _report(self, report: Callable[[Progress], None]) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            report(self.progress())
