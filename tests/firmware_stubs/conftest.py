"""Fixtures for the agent's tests: a station, fast intervals, agents and collectors always closed."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from firmware_stubs.agent import Address, Agent
from firmware_stubs.buffer import Buffer, BufferFile
from firmware_stubs.drivers import Drivers, StubValues, stub_drivers
from simulator.network import SimNetwork
from telemetry import registry
from telemetry.backoff import Backoff
from telemetry.contract import AgentConfig
from telemetry.registry import Station
from tests.firmware_stubs.scripted_broker import (
    CONNECT,
    PUBLISH,
    Expect,
    Reply,
    ScriptedBroker,
    Serve,
    Session,
    connack,
)
from tests.mqtt import Collector
from tests.rig import Influxd, Mosquitto

S = "PL-KT-001"  # smart: chargers C1 (10 sockets), C2 (10); sensors indoor, outdoor
FAST = AgentConfig(rev="fast", occupancy_interval_s=1, charger_interval_s=1, temperature_interval_s=1,
                   status_interval_s=1)
T = TypeVar("T")


@pytest.fixture
def station() -> Station:
    found = registry.load().get(S)
    assert found is not None
    return found


@pytest.fixture
def buffer_file(tmp_path: Path) -> Iterator[BufferFile]:
    with BufferFile(path=tmp_path / "buffer.sqlite3") as file:
        yield file


AgentFactory = Callable[..., Agent]


@pytest.fixture
def network() -> SimNetwork:
    """The agents' network (the simulator's transport): ``network.cut()`` loses it, ``restore()`` brings it back."""
    return SimNetwork()


@pytest.fixture
async def make_agent(broker: Mosquitto, station: Station, buffer_file: BufferFile,
                     network: SimNetwork) -> AsyncIterator[AgentFactory]:
    """Agents of station S on this test's broker through ``network``, FAST intervals, reconnecting
    at most 1 s apart; closed (power cut) after the test."""
    made: list[Agent] = []

    def make(*, drivers: Drivers | None = None, max_readings: int = 500_000, **kwargs: Any) -> Agent:
        settings: dict[str, Any] = {"config": FAST, "backoff": Backoff(initial=1.0, cap=1.0), "transport": network,
                                    **kwargs}
        agent = Agent(station=station, drivers=drivers or stub_drivers(station, StubValues()),
                      buffer=buffer_file.buffer(station=station.id, max_readings=max_readings),
                      brokers=[Address("127.0.0.1", broker.port)], **settings)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.close(graceful=False)


CollectorFactory = Callable[[str], Collector]


@pytest.fixture
def collect(broker: Mosquitto) -> Iterator[CollectorFactory]:
    """Subscribe (QoS 1) and record every message; closed after the test."""
    made: list[Collector] = []

    def make(topic: str) -> Collector:
        made.append(Collector(broker.port, topic))
        return made[-1]

    yield make
    for c in made:
        c.close()


def readings(collector: Collector) -> list[dict[str, Any]]:
    """Every reading received, batches flattened, in order of arrival."""
    out: list[dict[str, Any]] = []
    for msg in list(collector.messages):
        if msg.topic.endswith(("/occupancy", "/charger", "/temperature")):
            doc = json.loads(msg.payload)
            out.extend(doc if isinstance(doc, list) else [doc])
    return out


def statuses(collector: Collector) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in list(collector.messages) if m.topic.endswith("/status")]


def influx_readings(influxd: Influxd, db: str, station: str) -> list[tuple[int, int]]:
    """(seq, ts in ms) of every reading of ``station`` stored in InfluxDB."""
    rows = influxd.rows(f"SELECT seq FROM occupancy, charger, temperature WHERE station = '{station}'", db)
    return [(int(r["seq"]), int(r["time"])) for r in rows]


def influx_seqs(influxd: Influxd, db: str, station: str) -> dict[int, int]:
    """seq -> ts (ms) of every reading of ``station`` stored in InfluxDB."""
    return dict(influx_readings(influxd, db, station))


class ManualClock:
    """An agent clock the test moves: :meth:`advance` wakes every wait it passes, in order of moment."""

    def __init__(self, start: float) -> None:
        self.now = start
        self._waits: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def sleep_until(self, when: float) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if when <= self.now:
            fut.set_result(None)
        else:
            heapq.heappush(self._waits, (when, next(self._order), fut))
        return fut

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while self._waits and self._waits[0][0] <= self.now:
            fut = heapq.heappop(self._waits)[2]
            if not fut.done():
                fut.set_result(None)


REFUSE = (Expect(CONNECT), Reply(connack(5)))  # 5: not authorized
SERVE = (Expect(CONNECT), Reply(connack()), Serve())

ScriptedAgent = Callable[..., Agent]


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, cap=0.4, jitter=0.5, healthy_after=0.5)


def stub_agent(station: Station, buffer: Buffer, brokers: Sequence[Address], **settings: Any) -> Agent:
    """A started agent of ``station`` on stub drivers; unless given: FAST intervals, no flush, fast_backoff()."""
    defaults: dict[str, Any] = {"config": FAST, "flush_timeout": 0, "backoff": fast_backoff()}
    agent = Agent(station=station, drivers=stub_drivers(station, StubValues()), buffer=buffer, brokers=brokers,
                  **(defaults | settings))
    agent.start()
    return agent


@pytest.fixture
async def scripted_agent(station: Station, buffer_file: BufferFile) -> AsyncIterator[ScriptedAgent]:
    """Start agents of station S against scripted brokers (tried in the order given); power cut after the test."""
    made: list[Agent] = []

    def start(*brokers: ScriptedBroker, **kwargs: Any) -> Agent:
        made.append(stub_agent(station, buffer_file.buffer(station=station.id),
                               [Address("127.0.0.1", b.port) for b in brokers], **kwargs))
        return made[-1]

    yield start
    for agent in made:
        await agent.close(graceful=False)


def published_readings(session: Session) -> list[dict[str, Any]]:
    """Every reading the client published in ``session`` (batches flattened)."""
    out: list[dict[str, Any]] = []
    for p in session.of(PUBLISH):
        n = int.from_bytes(p.body[:2])
        name = p.body[2:2 + n].decode()
        if name.endswith(("/occupancy", "/charger", "/temperature")):
            doc = json.loads(p.body[2 + n + (2 if p.flags & 0x06 else 0):])
            out.extend(doc if isinstance(doc, list) else [doc])
    return out


def reading_ts(session: Session) -> list[int]:
    """The ts of every reading the client published in ``session``."""
    return [r["ts"] for r in published_readings(session)]
