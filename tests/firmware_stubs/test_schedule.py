"""The schedule on a clock the test moves, with the real sampler on stub drivers: no broker, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from firmware_stubs.buffer import BufferFile, NewReading
from firmware_stubs.drivers import StubValues, stub_drivers
from firmware_stubs.sampling import Sampler
from firmware_stubs.schedule import Schedule
from telemetry.contract import AgentConfig, Kind
from telemetry.registry import Station
from tests.firmware_stubs.conftest import ManualClock

T0 = 1_796_104_800.0
CONFIG = AgentConfig(rev="t", occupancy_interval_s=60, charger_interval_s=30, temperature_interval_s=60,
                     status_interval_s=60)
Tick = tuple[float, list[Kind], bool]


class Run:
    """A schedule of station S (one counter, chargers C1 and C2, two sensors) and what each tick handed over."""

    def __init__(self, station: Station, file: BufferFile) -> None:
        self.clock = ManualClock(T0)
        self.buffer = file.buffer(station=station.id)
        sampler = Sampler(station=station, drivers=stub_drivers(station, StubValues()), buffer=self.buffer)
        self.ticks: list[Tick] = []
        self.schedule = Schedule(clock=self.clock, config=CONFIG, sampler=sampler, on_tick=self._on_tick, name="t")

    def _on_tick(self, new: list[NewReading], status: bool) -> None:
        self.buffer.add(new)
        if new or status:
            self.ticks.append((self.clock.time() - T0, [r.kind for r in new], status))

    async def advance(self, seconds: float, *, step: float = 1.0) -> None:
        """Move the clock ``step`` at a time, letting each woken tick run."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            await asyncio.sleep(0)  # the loop runs the done callbacks of what the clock woke


@pytest.fixture
async def run(station: Station) -> AsyncIterator[Run]:
    with BufferFile(path=":memory:") as file:
        r = Run(station, file)
        yield r
        r.schedule.stop()


EVERYTHING = [Kind.OCCUPANCY, Kind.CHARGER, Kind.CHARGER, Kind.TEMPERATURE, Kind.TEMPERATURE]


async def test_schedule_reads_everything_at_start_then_each_job_on_its_interval(run: Run) -> None:
    run.schedule.start(T0)
    await run.advance(60)
    assert run.ticks == [(0.0, EVERYTHING, False), (30.0, [Kind.CHARGER, Kind.CHARGER], False),
                         (60.0, EVERYTHING, True)]


async def test_schedule_after_a_stall_skips_the_missed_periods_instead_of_bursting(run: Run) -> None:
    run.schedule.start(T0)
    await run.advance(95, step=95)
    await run.advance(30)
    assert run.ticks == [(0.0, EVERYTHING, False), (95.0, EVERYTHING, True),  # once, not three periods' worth
                         (120.0, [Kind.OCCUPANCY, Kind.TEMPERATURE, Kind.TEMPERATURE], True),  # back on the beat
                         (125.0, [Kind.CHARGER, Kind.CHARGER], False)]


async def test_schedule_new_config_moves_each_due_time_by_the_change_of_its_interval(run: Run) -> None:
    run.schedule.start(T0)
    await run.advance(5)
    run.schedule.reconfigure(CONFIG.model_copy(update={"rev": "u", "charger_interval_s": 10}))
    await run.advance(15)
    assert run.ticks == [(0.0, EVERYTHING, False), (10.0, [Kind.CHARGER, Kind.CHARGER], False),
                         (20.0, [Kind.CHARGER, Kind.CHARGER], False)]
