"""Simulated time: wakes in order at exact moments, paces at the speed, never passes the present."""

from __future__ import annotations

import asyncio
import time

from simulator.clock import SimClock, SkewedClock


async def _sleepers(clock: SimClock, offsets: list[float]) -> list[tuple[float, float]]:
    """Sleep until start + each offset; (offset, the clock's time when woken), in order of waking."""
    woken: list[tuple[float, float]] = []

    async def sleeper(offset: float) -> None:
        await clock.sleep_until(clock.start + offset)
        woken.append((offset, round(clock.time() - clock.start, 6)))

    await asyncio.gather(*(sleeper(o) for o in offsets))
    return woken


async def test_clock_wakes_sleepers_in_time_order_at_their_exact_moment() -> None:
    clock = SimClock(start=time.time() - 3600, speed=None)
    ticking = asyncio.create_task(clock.run())
    try:
        woken = await _sleepers(clock, [50.0, 10.0, 30.0, 10.0, 0.0])
    finally:
        ticking.cancel()
    assert woken == [(0.0, 0.0), (10.0, 10.0), (10.0, 10.0), (30.0, 30.0), (50.0, 50.0)]


async def test_clock_paces_simulated_time_at_the_speed() -> None:
    clock = SimClock(start=time.time() - 3600, speed=100.0)
    ticking = asyncio.create_task(clock.run())
    began = time.monotonic()
    try:
        await _sleepers(clock, [50.0])
    finally:
        ticking.cancel()
    assert 0.45 <= time.monotonic() - began < 2.0, "50 simulated seconds at speed 100 take half a second"


async def test_clock_never_passes_the_present() -> None:
    clock = SimClock(start=time.time() - 0.2, speed=None)
    ticking = asyncio.create_task(clock.run())
    try:
        woken = await _sleepers(clock, [0.1, 0.6])
    finally:
        ticking.cancel()
    assert woken == [(0.1, 0.1), (0.6, 0.6)]
    assert time.time() >= clock.start + 0.6, "simulated time went past the present"


async def test_clock_run_until_stops_cleanly_at_the_moment() -> None:
    clock = SimClock(start=time.time() - 3600, speed=None)
    woken: list[float] = []

    async def sleeper(offset: float) -> None:
        await clock.sleep_until(clock.start + offset)
        woken.append(offset)

    tasks = [asyncio.create_task(sleeper(o)) for o in (1.0, 2.0, 3.0)]
    await asyncio.sleep(0)
    await clock.run(until=clock.start + 2.0)
    assert (woken, clock.time()) == ([1.0, 2.0], clock.start + 2.0)
    await clock.run(until=clock.start + 10.0)
    assert (woken, clock.time()) == ([1.0, 2.0, 3.0], clock.start + 10.0)
    await asyncio.gather(*tasks)


async def test_skewed_clock_reads_and_sleeps_in_its_own_time() -> None:
    base = SimClock(start=time.time() - 3600, speed=None)
    skewed = SkewedClock(base=base, skew=lambda _t: 240.0)
    ticking = asyncio.create_task(base.run())
    try:
        assert skewed.time() == base.start + 240.0
        await skewed.sleep_until(base.start + 300.0)
    finally:
        ticking.cancel()
    assert (base.time(), skewed.time()) == (base.start + 60.0, base.start + 300.0)
