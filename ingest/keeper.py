"""Keeps the rollups current: recomputes every station-hour ingest wrote into, once closed, and its day.

The pipeline tells the keeper the (station, hour) pairs of each batch: :meth:`Keeper.touched`
before writing it (the pairs go to the :class:`~ingest.journal.Journal`, fsynced, so they are
never forgotten), :meth:`Keeper.settled` once it is in InfluxDB (or in the spool: then the spool's
replay touches them again). A written pair is recomputed from InfluxDB (:func:`ingest.rollup.compute`)
once its hour has closed and ``grace`` seconds have passed (readings still in flight), or at the
next tick when the hour was already closed (late data: a station's backlog, a batch back from the
spool). A late reading also changes the first counter step after it, so the closed hour that holds
each counter series' next reading is recomputed with it. Once an hour's points are written, the
stations' daily points of that Beijing day are recomputed from the day's hourly points
(:mod:`ingest.daily`) if the day has ended; if not, the day's last hour is journaled for those
stations, and its recompute, once it has closed, computes the day (a station silent in that hour
included). The due hours of one day are recomputed one by one, then the day once for all their
stations (a station's backlog of a day is one daily recompute, not 24); a pair leaves the journal
only after its hour and day.

The keeper runs as its own task: it never holds up the receive path or an acknowledgement. Each
tick it takes at most ``max_pairs`` pairs; when InfluxDB is down it waits and tries again, the
journal keeping the pairs. Several ingest replicas each recompute what they wrote, after their
write: a rollup point is one per series and hour, so a second recompute rewrites the same point.
A late pair (written after its hour closed) is recomputed a second time ``settle`` seconds after
its first recompute, and stays journaled until then: another replica's recompute that read the
hour before this write landed, and wrote after this replica's first recompute, leaves a stale
point that the second one overwrites (a recompute taking longer than ``settle`` is abandoned).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable
from typing import Final

from ingest import daily
from ingest.exceptions import InfluxUnavailableError
from ingest.influxql import InfluxQL
from ingest.journal import Journal, Pair
from ingest.rebuild import write_points
from ingest.rollup import SPECS, Window, compute, first_counter_readings
from ingest.writer import Writer
from telemetry.contract import MAX_AGE_MS
from telemetry.storage import HOUR_MS, day_of, hour_of

logger = logging.getLogger(__name__)

_TELEMETRY_PREFIXES: Final = tuple(f"{spec.raw},".encode() for spec in SPECS)
_RETRY_MAX = 60.0


def hours_of_body(body: bytes) -> set[Pair]:
    """The (station, hour) pairs of the readings in a line-protocol body (for spooled batches)."""
    pairs = set()
    for line in body.split(b"\n"):
        if line.startswith(_TELEMETRY_PREFIXES):
            start = line.index(b"station=") + 8
            station = line[start:line.index(b",", start)].decode()
            ts = int(line[line.rindex(b" ") + 1:])
            pairs.add((station, ts - ts % HOUR_MS))
    return pairs


class Keeper:
    """Recomputes touched station-hours.

    Args:
        ql, writer: read raw points, write rollup points.
        journal: where touched pairs wait, durably.
        grace: seconds after an hour's end before it is rolled up (readings still in flight).
        tick: seconds between two looks at what is due.
        max_pairs: station-hours taken per tick.
        settle: seconds after a late pair's recompute before its second one, and the longest a
            recompute may take (a longer one is abandoned and retried): another replica's recompute
            that read the hour before this replica's write landed has then finished, and the second
            recompute overwrites what it wrote.
        clock: wall-clock seconds (hours close by it).
    """

    def __init__(self, *, ql: InfluxQL, writer: Writer, journal: Journal, grace: float = 30.0, tick: float = 5.0,
                 max_pairs: int = 500, settle: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self._ql, self._writer, self._journal = ql, writer, journal
        self._grace, self._tick, self._max_pairs, self._clock = grace, tick, max_pairs, clock
        self._settle = settle
        self._again: set[Pair] = set()  # late pairs whose second recompute, ``settle`` after the first, is due
        # pairs of an earlier run: due once closed (an hour still open gets more readings first)
        self._due: dict[Pair, float] = {p: (p[1] + HOUR_MS) / 1000 + grace for p in journal.pending}
        self._late = set(journal.pending)  # recomputed with the hour of each series' next reading
        self._writes: collections.Counter[Pair] = collections.Counter()  # settled writes, per pair
        self._in_flight: collections.Counter[Pair] = collections.Counter()
        self._retry, self._delay = 0.0, 0.0
        self.recomputed = 0
        """Station-hours recomputed since start (for metrics and tests)."""

    @property
    def pending(self) -> int:
        return len(self._due)

    async def touched(self, pairs: Iterable[Pair]) -> None:
        """A batch holding these pairs is about to be written: record them durably first."""
        pairs = set(pairs)
        self._in_flight.update(pairs)
        try:
            await self._journal.add(pairs)
        except BaseException:
            self._in_flight.subtract(pairs)
            raise

    def settled(self, pairs: Iterable[Pair], written: bool) -> None:
        """The batch is in InfluxDB (``written``) or in the spool (its replay touches the pairs again)."""
        now = self._clock()
        for pair in pairs:
            self._in_flight[pair] -= 1
            if self._in_flight[pair] <= 0:
                del self._in_flight[pair]
            if not written:
                continue
            self._writes[pair] += 1
            closes = (pair[1] + HOUR_MS) / 1000
            if closes <= now:
                self._late.add(pair)
                self._again.add(pair)
            self._due[pair] = max(closes + self._grace, now) if closes > now else now

    async def run(self) -> None:
        """Recompute what is due, every ``tick`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self._tick)
            if time.monotonic() < self._retry:
                continue
            try:
                await self.run_once()
            except (InfluxUnavailableError, TimeoutError) as exc:
                self._back_off(exc)
            except Exception:  # a bug here must not stop ingest: the pairs wait in the journal
                logger.exception("rollup recompute failed; retrying later")
                self._back_off(None)
            else:
                if self._delay:
                    logger.info("rollups are being recomputed again")
                self._delay = 0.0

    def _back_off(self, exc: Exception | None) -> None:
        if exc is not None and not self._delay:
            logger.warning("rollups wait for InfluxDB (%s): %d station-hours pending", exc, len(self._due))
        self._delay = min(max(self._delay * 2, self._tick), _RETRY_MAX)
        self._retry = time.monotonic() + self._delay

    async def run_once(self) -> int:
        """Recompute the pairs due now (at most ``max_pairs``); returns how many. The hours of one
        Beijing day are recomputed one by one, then that day once for all their stations."""
        now = self._clock()
        ready = sorted((p for p, at in self._due.items() if at <= now), key=lambda p: (p[1], p[0]))
        by_day: dict[int, dict[int, set[str]]] = collections.defaultdict(lambda: collections.defaultdict(set))
        for station, hour in ready[:self._max_pairs]:
            by_day[day_of(hour)][hour].add(station)
        done = 0
        for _, hours in sorted(by_day.items()):
            writes: dict[Pair, int] = {}
            for hour, stations in sorted(hours.items()):
                async with asyncio.timeout(self._settle):
                    writes |= await self._recompute(hour, frozenset(stations), now)
            async with asyncio.timeout(self._settle):
                await self._days(min(hours), frozenset().union(*hours.values()))
            done += await self._finish(writes)
        return done

    async def _recompute(self, hour: int, stations: frozenset[str], now: float) -> dict[Pair, int]:
        """Write the hour's points; the pairs with the count of settled writes they were computed after."""
        pairs = [(s, hour) for s in stations]
        writes = {p: self._writes[p] for p in pairs}
        late = stations & {s for s, h in self._late if h == hour}
        following = await self._next_hours(hour, frozenset(late), now) if late else set()
        if following:
            await self._journal.add(following)
            for pair in following:
                self._due[pair] = 0.0  # at once, even one waiting for its second recompute
            self._again |= following
        points = await compute(self._ql, Window(hour, hour + HOUR_MS, stations))
        await write_points(self._writer, [p.line() for p in points])
        logger.debug("rolled up %d stations' hour %d: %d points", len(stations), hour, len(points))
        return writes

    async def _finish(self, writes: dict[Pair, int]) -> int:
        """Pairs whose hour and day are written leave the journal, unless a write came in meanwhile or a
        second recompute is due; returns how many were recomputed."""
        finished = [p for p, n in writes.items() if self._writes[p] == n]  # no write came in meanwhile
        for pair in finished:
            self._late.discard(pair)
            self._writes.pop(pair, None)
        once = {p for p in finished if p in self._again}
        self._again -= once
        settled_at = self._clock() + self._settle
        for pair in finished:
            if pair in once:
                self._due[pair] = settled_at  # still journaled until then
            else:
                self._due.pop(pair, None)
        await self._journal.remove(p for p in finished if p not in self._in_flight and p not in once)
        self.recomputed += len(writes)
        return len(writes)

    async def _days(self, hour: int, stations: frozenset[str]) -> None:
        """The stations' day of ``hour`` from its hourly points, after the hours' writes, if the day has
        ended; else its last hour is journaled for them, due when it closes (a station may have no
        reading in it), and its recompute computes the day."""
        now_ms = int(self._clock() * 1000)
        if daily.last_hour(hour) + HOUR_MS <= now_ms:
            days = await daily.compute(self._ql, hour, hour + HOUR_MS, stations, ended_by_ms=now_ms)
            await write_points(self._writer, [p.line() for p in days])
            return
        last = {(s, daily.last_hour(hour)) for s in stations} - self._due.keys()
        if last:
            await self._journal.add(last)
            for pair in last:
                self._due[pair] = (pair[1] + HOUR_MS) / 1000 + self._grace

    async def _next_hours(self, hour: int, stations: frozenset[str], now: float) -> set[Pair]:
        """The closed hours holding each counter series' first reading after ``hour``."""
        start, end = hour + HOUR_MS, min(hour + HOUR_MS + MAX_AGE_MS, hour_of(int(now * 1000)))
        if start >= end:
            return set()
        pairs = set()
        for results in await self._ql.query(first_counter_readings(Window(start, end, stations))):
            for series in results:
                first = int(series.rows[0]["time"])
                pairs.add((series.tags["station"], first - first % HOUR_MS))
        return pairs
