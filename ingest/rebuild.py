"""Rebuild the rollups of a past range from the raw points stored (``python -m ingest rollup``).

The range is cut in chunks of hours, computed a few at once (:func:`ingest.rollup.compute`, the
minutes and counter steps counted here from the raw columns read back: half of InfluxDB's CPU of
computing them there) and written to the ``rollup`` tier. With ``workers`` above 1 the chunks are
computed and written by that many worker processes (each its own clients, from ``clients``), the
counting spread over cores; this process hands them out and keeps the checkpoint. Only closed
hours: the range ends at the current hour at the latest. Each chunk's Beijing days are then
recomputed from its hours (:mod:`ingest.daily`), those that have ended. A checkpoint file records how far the
chunks are done, without a gap, so an interrupted rebuild of the same range resumes there (with
any number of workers); it is removed once the range is done. Computing an hour again writes the
same points (one point per series and hour), so a rebuild is idempotent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingest import daily
from ingest.influxql import InfluxQL
from ingest.rollup import Window, compute
from ingest.writer import Writer
from telemetry.storage import HOUR_MS, Tier, hour_of

logger = logging.getLogger(__name__)

WRITE_LINES = 5000

Clients = Callable[[], AbstractAsyncContextManager[tuple[InfluxQL, Writer]]]
"""Opens a query client and a writer for a worker process: picklable (a module-level function, or a
``functools.partial`` of one), because each worker calls it in its own process."""


@dataclass(slots=True, frozen=True)
class Progress:
    """Where a rebuild stands: hours done of the range's, points written, since when."""

    hours_done: int
    hours_total: int
    points: int
    started: float
    resumed_at_ms: int | None = None
    day_points: int = 0

    @property
    def fraction(self) -> float:
        return self.hours_done / self.hours_total if self.hours_total else 1.0


@dataclass(slots=True, frozen=True)
class Summary:
    """The outcome of a rebuild."""

    start_ms: int
    end_ms: int
    hours: int
    points: int
    seconds: float
    resumed_at_ms: int | None
    day_points: int = 0
    """Daily points written (a day cut by chunks is written once per chunk)."""


class _Checkpoint:
    """``{"database", "start_ms", "end_ms", "done_ms"}`` (and ``"daily_only": true`` for such a run) in a
    file replaced atomically."""

    def __init__(self, path: Path | None, database: str, start_ms: int, end_ms: int, *, daily_only: bool) -> None:
        self.path = path
        self.key: dict[str, object] = {"database": database, "start_ms": start_ms, "end_ms": end_ms}
        if daily_only:
            self.key["daily_only"] = True

    def load(self) -> int | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            logger.warning("ignoring unreadable checkpoint %s", self.path)
            return None
        if {k: v for k, v in data.items() if k != "done_ms"} != self.key:
            logger.info("checkpoint %s is of another range: starting from the beginning", self.path)
            return None
        return int(data["done_ms"])

    def save(self, done_ms: int) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.key, "done_ms": done_ms}))
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def write_points(writer: Writer, lines: list[str]) -> None:
    """Rollup lines to the ``rollup`` tier, a few thousand a request."""
    for at in range(0, len(lines), WRITE_LINES):
        await writer.write("\n".join(lines[at:at + WRITE_LINES]).encode(), Tier.ROLLUP)


async def rebuild_window(ql: InfluxQL, writer: Writer, window: Window, *, columns: bool, ended_by_ms: int,
                         hourly: bool = True) -> tuple[int, int]:
    """Compute and write one window's rollups (unless not ``hourly``), then the days holding it that
    have ended by ``ended_by_ms`` (from the hours InfluxDB holds); the numbers of hourly and daily
    points. A day cut by two chunks is complete once the later-written of them has run."""
    points = await compute(ql, window, columns=columns) if hourly else []
    await write_points(writer, [p.line() for p in points])
    days = await daily.compute(ql, window.start_ms, window.end_ms, window.stations, ended_by_ms=ended_by_ms)
    await write_points(writer, [p.line() for p in days])
    return len(points), len(days)


async def _with_clients(clients: Clients, window: Window, columns: bool, ended_by_ms: int,
                        hourly: bool) -> tuple[int, int]:
    async with clients() as (ql, writer):
        return await rebuild_window(ql, writer, window, columns=columns, ended_by_ms=ended_by_ms, hourly=hourly)


def _in_worker(clients: Clients, window: Window, columns: bool, ended_by_ms: int, hourly: bool) -> tuple[int, int]:
    """A chunk in a worker process (its own event loop and clients)."""
    return asyncio.run(_with_clients(clients, window, columns, ended_by_ms, hourly))


async def rebuild(*, ql: InfluxQL, writer: Writer, database: str, since_ms: int, until_ms: int | None = None,
                  stations: frozenset[str] | None = None, chunk_hours: int = 24, concurrency: int = 2,
                  checkpoint: Path | None = None, on_progress: Callable[[Progress], None] | None = None,
                  columns: bool = True, workers: int = 1, clients: Clients | None = None,
                  daily_only: bool = False, clock: Callable[[], float] = time.time) -> Summary:
    """Recompute and write the rollups of the closed hours in ``[since_ms, until_ms)``.

    Args:
        ql, writer: read raw points, write rollup points (the ``rollup`` tier must exist).
        database: names the checkpoint's range with the range's bounds.
        since_ms, until_ms: the range; ``since`` rounded down to its hour, ``until`` (default now)
            to its hour and to the current hour at most.
        stations: only these (default all).
        chunk_hours, concurrency: hours per computation, computations at once.
        checkpoint: a file to resume from and record progress in (None: no resuming).
        on_progress: called after each chunk.
        columns: count the minutes and steps in this process from the raw columns read back
            (:func:`ingest.rollup.compute`); False: all in InfluxDB, as the keeper does.
        workers, clients: above 1, the chunks go to that many worker processes, each opening its
            clients with ``clients`` (required then); ``concurrency`` is raised to ``workers`` at least.
        daily_only: recompute only the daily rollups, from the hourly ones stored (a deployment that
            has hourly rollups from before the daily ones existed); its checkpoint is its own.
    """
    if workers > 1 and clients is None:
        raise ValueError("workers > 1 needs clients: each worker process opens its own")
    start = hour_of(since_ms)
    end = min(hour_of(until_ms) if until_ms is not None else hour_of(int(clock() * 1000)),
              hour_of(int(clock() * 1000)))
    end = max(end, start)
    mark = _Checkpoint(checkpoint, database, start, end, daily_only=daily_only)
    resumed = mark.load()
    done_ms = resumed if resumed is not None and start <= resumed <= end else start
    chunks = [(t, min(t + chunk_hours * HOUR_MS, end)) for t in range(done_ms, end, chunk_hours * HOUR_MS)]
    started = clock()
    state = _Run(writer, stations, mark, done_ms, (end - start) // HOUR_MS, started, resumed, on_progress,
                 columns=columns, hourly=not daily_only)
    if resumed is not None and done_ms > start:
        logger.info("resuming at %d (%d of %d hours were done)", done_ms, (done_ms - start) // HOUR_MS,
                    (end - start) // HOUR_MS)
    gate = asyncio.Semaphore(max(concurrency, workers))
    with _pool(workers) as pool:
        state.pool, state.clients = pool, clients
        async with asyncio.TaskGroup() as tg:
            for chunk in chunks:
                await gate.acquire()
                task = tg.create_task(state.chunk(ql, *chunk, start), name=f"rollup-rebuild-{chunk[0]}")
                task.add_done_callback(lambda _: gate.release())
    mark.clear()
    return Summary(start, end, (end - start) // HOUR_MS, state.points, clock() - started, resumed, state.day_points)


class _Run:
    """A rebuild's chunks in flight, and the checkpoint moved over those done without a gap."""

    def __init__(self, writer: Writer, stations: frozenset[str] | None, mark: _Checkpoint, done_ms: int,
                 hours_total: int, started: float, resumed: int | None,
                 on_progress: Callable[[Progress], None] | None, *, columns: bool, hourly: bool) -> None:
        self.writer, self.stations, self.mark = writer, stations, mark
        self.done_ms, self.finished, self.points, self.day_points = done_ms, set[tuple[int, int]](), 0, 0
        self.hours_total, self.started, self.resumed, self.on_progress = hours_total, started, resumed, on_progress
        self.columns, self.hourly = columns, hourly
        self.ended_by_ms = int(started * 1000)  # days that ended before the rebuild started
        self.pool: Executor | None = None
        self.clients: Clients | None = None

    async def chunk(self, ql: InfluxQL, start_ms: int, end_ms: int, range_start: int) -> None:
        window = Window(start_ms, end_ms, self.stations)
        if self.pool is None or self.clients is None:
            points, days = await rebuild_window(ql, self.writer, window, columns=self.columns,
                                                ended_by_ms=self.ended_by_ms, hourly=self.hourly)
        else:
            loop = asyncio.get_running_loop()
            points, days = await loop.run_in_executor(self.pool, _in_worker, self.clients, window, self.columns,
                                                      self.ended_by_ms, self.hourly)
        self.points += points  # after the await: chunks finish concurrently
        self.day_points += days
        self.finished.add((start_ms, end_ms))
        while (next_chunk := next((c for c in self.finished if c[0] == self.done_ms), None)) is not None:
            self.finished.discard(next_chunk)
            self.done_ms = next_chunk[1]
        self.mark.save(self.done_ms)
        if self.on_progress is not None:
            hours = (self.done_ms - range_start) // HOUR_MS + sum(e - s for s, e in self.finished) // HOUR_MS
            self.on_progress(Progress(hours, self.hours_total, self.points, self.started, self.resumed,
                                      self.day_points))


@contextmanager
def _pool(workers: int) -> Iterator[Executor | None]:
    """No pool for one worker; else ``workers`` spawned processes, shut down on exit (a chunk still
    running in one is waited for, those not started are cancelled)."""
    if workers <= 1:
        yield None
        return
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
