"""The disk spool: order, bound, tiers, what survives a crash, and fsyncs off the event loop."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from ingest.exceptions import SpoolFullError
from ingest.spool import Spool
from telemetry.storage import Tier


async def test_spool_replays_oldest_first_and_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(directory=tmp_path, max_bytes=1000)
    for i in range(3):
        await spool.append(f"batch {i}".encode())
    assert (len(spool), spool.size_bytes) == (3, 21)
    assert spool.oldest() == (b"batch 0", Tier.RAW)
    spool.pop_oldest()
    reopened = Spool(directory=tmp_path, max_bytes=1000)
    assert (len(reopened), reopened.size_bytes) == (2, 14)
    await reopened.append(b"batch 3")
    got = []
    while (oldest := reopened.oldest()) is not None:
        got.append(oldest[0])
        reopened.pop_oldest()
    assert got == [b"batch 1", b"batch 2", b"batch 3"]
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test's own temporary directory


async def test_spool_keeps_each_batch_tier_across_reopening(tmp_path: Path) -> None:
    spool = Spool(directory=tmp_path, max_bytes=1000)
    await spool.append(b"occupancy people=1i 1", Tier.RAW)
    await spool.append(b"ingest_stats messages=1i 2", Tier.MONITOR)
    await spool.append(b"occupancy people=2i 3", Tier.RAW)
    reopened = Spool(directory=tmp_path, max_bytes=1000)
    got = []
    while (oldest := reopened.oldest()) is not None:
        got.append(oldest)
        reopened.pop_oldest()
    assert got == [(b"occupancy people=1i 1", Tier.RAW), (b"ingest_stats messages=1i 2", Tier.MONITOR),
                   (b"occupancy people=2i 3", Tier.RAW)]


async def test_spool_refuses_past_its_bound(tmp_path: Path) -> None:
    spool = Spool(directory=tmp_path, max_bytes=10)
    await spool.append(b"12345678")
    with pytest.raises(SpoolFullError, match="is full"):
        await spool.append(b"123")
    assert len(spool) == 1
    spool.pop_oldest()
    await spool.append(b"123")


async def test_spool_discards_half_written_batches(tmp_path: Path) -> None:
    """A crash during append leaves a .tmp file, never a partial batch under a real name."""
    await Spool(directory=tmp_path, max_bytes=100).append(b"whole")
    (tmp_path / "0000000000000002.tmp").write_bytes(b"half")
    spool = Spool(directory=tmp_path, max_bytes=100)
    assert len(spool) == 1
    assert spool.oldest() == (b"whole", Tier.RAW)
    assert not list(tmp_path.glob("*.tmp"))  # noqa: ASYNC240


async def test_spool_fsync_does_not_stop_the_event_loop(tmp_path: Path) -> None:
    """While a slow disk takes 0.3 s per fsync, the loop goes on running other tasks."""

    def slow_fsync(fd: int) -> None:
        time.sleep(0.3)
        os.fsync(fd)

    spool = Spool(directory=tmp_path, max_bytes=1000, fsync=slow_fsync)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0.01)
            turns += 1

    counter = asyncio.create_task(count_turns())
    try:
        await spool.append(b"batch")
    finally:
        counter.cancel()
    assert len(spool) == 1
    assert turns >= 10, f"the loop turned {turns} times during two 0.3 s fsyncs"
