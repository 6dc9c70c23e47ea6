"""From received messages to durable points: decode, batch, write or spool, then acknowledge.

Every message is decoded as it arrives and its points (readings, status, rejects) go into the
current batch with the message's acknowledgement token. A batch is sealed at ``batch_points``
points, ``batch_seconds`` after its first message, or once no message has come for
``batch_idle`` (the last readings of a burst are not kept waiting), then written to InfluxDB; if
InfluxDB is down (or the spool still holds older batches), it goes to the disk spool. Only then
are its messages acknowledged. Up to ``write_concurrency`` batches are written at once (InfluxDB
takes writes on several connections in parallel, and a write's latency then does not stall the
stream); acknowledgements still go out in the order the messages came, as MQTT requires. Writes
themselves may land out of order (a batch written while an older one waits in the spool, or two
failed writes spooled in the order they failed): that matters only to two readings of one series
and millisecond, which replace each other anyway.
When the spool is full nothing is acknowledged, and with ``max_pending`` sealed batches waiting or
being written the subscriber stops reading, so memory stays bounded and the broker keeps what we
have not taken.

Points are idempotent (one series and timestamp per reading), so a batch written twice, after a
crash between write and acknowledgement or a replay after a partial write, is stored once.

A batch holds the lines of two tiers: readings and status (``autogen``) and ingest's own points
(rejects, statistics: ``monitor``), written (or spooled) as two bodies. It also holds the
(station, hour) pairs of its readings: the rollup keeper records them durably before the batch
is written, and recomputes those hours once the write is in InfluxDB (``ingest/keeper.py``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ingest import lineprotocol
from ingest.exceptions import InfluxRejectedError, InfluxUnavailableError, SpoolFullError
from ingest.journal import Pair
from ingest.keeper import Keeper, hours_of_body
from ingest.metrics import Metrics
from ingest.source import DUP, OVERSIZE, RETAINED, AckToken, Message, Source
from ingest.spool import Spool
from ingest.stats import Stats
from ingest.writer import Writer
from telemetry.codec import Decoded, Decoder, Reject, clip
from telemetry.contract import MAX_PAYLOAD_BYTES, RejectReason
from telemetry.registry import Registry
from telemetry.storage import HOUR_MS, Tier

logger = logging.getLogger(__name__)

_RETRY_MIN, _RETRY_MAX = 0.5, 5.0
# A read's messages are decoded this many at a time: more keep so many new objects alive at once that
# the garbage collector's young generation spills into the older ones, and that costs more than
# validating them together saves (4.5 µs a message up to 128, 6 µs from 256; bench/hot_path.py).
_GROUP_MAX = 64


@dataclass(slots=True)
class Batch:
    lines: list[str] = field(default_factory=list)
    """Readings and status: the raw tier."""
    monitor: list[str] = field(default_factory=list)
    """Rejects and statistics: the monitor tier."""
    tokens: list[AckToken] = field(default_factory=list)
    hours: set[Pair] = field(default_factory=set)
    started: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.lines and not self.monitor and not self.tokens

    @property
    def size(self) -> int:
        return len(self.lines) + len(self.monitor)


class Pipeline:
    """Decodes, batches and persists messages; acknowledges them through ``subscriber``.

    Args:
        registry: the stations that may report.
        writer: where batches go.
        spool: where batches wait while ``writer`` is unavailable.
        batch_points, batch_seconds, batch_idle: a batch is written at this many points, this long
            after its first message, or this long after its last one, whichever comes first.
        write_concurrency: batches written at the same time.
        keeper: told the station-hours of each batch, to keep their rollups (None: no rollups).
        max_pending: sealed batches (waiting or being written) held in memory before the subscriber
            stops reading; at least ``write_concurrency``.
    """

    def __init__(self, *, registry: Registry, writer: Writer, spool: Spool, metrics: Metrics,
                 stats: Stats | None = None, batch_points: int = 5000, batch_seconds: float = 0.2,
                 batch_idle: float = 0.02, write_concurrency: int = 2, max_pending: int = 4,
                 keeper: Keeper | None = None, clock: Callable[[], float] = time.time) -> None:
        self._decoder = Decoder(registry, clock=clock)
        self._writer, self._spool, self._metrics, self._stats = writer, spool, metrics, stats
        self._keeper = keeper
        self._counts = metrics.counts
        self._batch_points, self._batch_seconds, self._batch_idle = batch_points, batch_seconds, batch_idle
        self._last_message = 0.0
        self._closing = False
        self._concurrency = write_concurrency
        self._max_pending = max(max_pending, write_concurrency)
        self._clock = clock
        self._current = Batch()
        self._sealed: collections.deque[Batch] = collections.deque()
        self._writing: collections.deque[tuple[Batch, asyncio.Task[None]]] = collections.deque()
        self._drain_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._subscriber: Source | None = None
        self._retry_at = 0.0
        self._retry_delay = _RETRY_MIN
        self._last_reject_ms = 0
        self._spool_full_logged = False
        self._update_spool_gauges()

    def attach(self, source: Source) -> None:
        """The source whose messages this pipeline acknowledges and pauses (MQTT or AMQP)."""
        self._subscriber = source

    @property
    def pending_points(self) -> int:
        return self._current.size + sum(b.size for b in self._sealed) + sum(b.size for b, _ in self._writing)

    # --- receiving (synchronous, called by the subscriber for every PUBLISH) -----------------

    def on_message(self, topic: str, payload: bytes, token: AckToken | None, flags: int = 0) -> None:
        self.on_messages([(topic, payload, token, flags)])

    def on_messages(self, messages: Sequence[Message]) -> None:
        """The messages of one read, in order: single readings validated together, each then batched."""
        self._counts.messages += len(messages)
        now_ms = int(self._clock() * 1000)
        self._last_message = time.monotonic()
        if len(messages) == 1:  # a quiet stream: nothing to group
            topic, payload, token, flags = messages[0]
            if flags:
                self._flagged(topic, payload, token, flags, now_ms)
            else:
                self._add(topic, token, self._decode_one(topic, payload), now_ms)
            return
        for start in range(0, len(messages), _GROUP_MAX):
            chunk = messages[start:start + _GROUP_MAX]
            grouped: list[Decoded | None] = []
            if len(chunk) > 1:
                try:
                    grouped = self._decoder.decode_grouped([(topic, payload) for topic, payload, _, _ in chunk])
                except Exception:  # a bug in the grouped decode: each message is decided alone
                    logger.exception("cannot decode %d messages together", len(chunk))
            for i, (topic, payload, token, flags) in enumerate(chunk):
                if flags:
                    self._flagged(topic, payload, token, flags, now_ms)
                    continue
                # the rest decoded one by one as they are batched: their readings are still in the cache
                outcome = (grouped[i] if grouped else None) or self._decode_one(topic, payload)
                self._add(topic, token, outcome, now_ms)

    def _flagged(self, topic: str, payload: bytes, token: AckToken | None, flags: int, now_ms: int) -> None:
        """A redelivery (stored, not counted as new), a retained repeat (not stored), or an oversize PUBLISH."""
        counts = self._counts
        if flags & OVERSIZE:  # the payload is its declared size: the session skipped it unread
            station = self._decoder.decode(topic, b"{}").station
            outcome: Decoded | Exception = Decoded(rejects=[Reject(
                RejectReason.TOO_LARGE, station.id if station else "", clip(topic),
                f"payload is {payload.decode()} bytes, at most {MAX_PAYLOAD_BYTES}")])
        elif flags & RETAINED:
            outcome = Decoded()
        else:
            outcome = self._decode_one(topic, payload)
        if flags & (DUP | RETAINED):
            counts.messages -= 1
            counts.redelivered += 1
        self._add(topic, token, outcome, now_ms, fresh=not flags & (DUP | RETAINED))

    def _decode_one(self, topic: str, payload: bytes) -> Decoded | Exception:
        try:
            return self._decoder.decode(topic, payload)
        except Exception as exc:  # noqa: BLE001 - becomes a reject in _add
            return exc

    def _add(self, topic: str, token: AckToken | None, outcome: Decoded | Exception, now_ms: int,
             *, fresh: bool = True) -> None:
        batch = self._current
        was_empty = batch.empty
        if was_empty:
            batch.started = time.monotonic()
        try:
            if isinstance(outcome, Exception):
                raise outcome
            station, readings = outcome.station, outcome.readings
            if station is not None and len(readings) == 1 and outcome.status is None:  # the common message
                reading = readings[0]
                points = [lineprotocol.reading(station, reading)]
                batch.hours.add((station.id, reading.ts - reading.ts % HOUR_MS))
                if self._stats is not None and fresh:
                    self._stats.reading(station, reading.ts, now_ms)
            else:
                points = self._encode(outcome, now_ms)
                if station is not None:
                    batch.hours.update((station.id, r.ts - r.ts % HOUR_MS) for r in readings)
                if self._stats is not None and readings and station is not None and fresh:
                    self._stats.readings(station, [r.ts for r in readings], now_ms)
            rejects = outcome.rejects
        except Exception as exc:  # a bug must not turn one message into a redelivery loop
            logger.exception("cannot process a message on %s", topic)
            points, rejects = [], [Reject(RejectReason.SCHEMA, "", clip(topic), clip(f"internal error: {exc!r}"))]
        batch.lines.extend(points)
        for reject in rejects:
            self._add_reject(batch.monitor, reject, now_ms)
        if token is not None:
            batch.tokens.append(token)
        if batch.size >= self._batch_points:
            self._seal()
        elif was_empty:
            self._wakeup.set()  # the writer task starts this batch's timer

    @staticmethod
    def _encode(decoded: Decoded, now_ms: int) -> list[str]:
        station = decoded.station
        if station is None:
            return []
        points = lineprotocol.readings(station, decoded.readings)
        if decoded.status is not None:
            points.append(lineprotocol.status(station, decoded.status, now_ms))
        return points

    def add_points(self, lines: list[str]) -> None:
        """Points of ingest's own (statistics, write rejects), written with the current batch (monitor tier)."""
        batch = self._current
        self._last_message = time.monotonic()
        if batch.empty:
            batch.started = self._last_message
            self._wakeup.set()
        batch.monitor.extend(lines)

    def _add_reject(self, lines: list[str], reject: Reject, now_ms: int) -> None:
        self._counts.rejects[reject.reason] += 1
        logger.debug("reject %s %s: %s", reject.reason.value, reject.topic, reject.detail)
        # one point per reject: distinct timestamps, so a burst of equal rejects is not merged
        self._last_reject_ms = max(now_ms, self._last_reject_ms + 1)
        lines.append(lineprotocol.reject(reject, self._last_reject_ms))

    def _seal(self) -> None:
        batch = self._current
        if batch.empty:
            return
        self._current = Batch()
        self._sealed.append(batch)
        self._wakeup.set()
        held = len(self._sealed) + len(self._writing)
        if held >= self._max_pending and self._subscriber and not self._subscriber.paused:
            logger.debug("%d batches held: pausing MQTT reads", held)
            self._subscriber.pause()

    # --- persisting (the writer task) ----------------------------------------------------------

    async def run(self) -> None:
        """Persist sealed batches, acknowledge them in order; seal on the timer; drain the spool."""
        while True:
            self._acknowledge_written()
            self._start_writes()
            await self._wait()

    def _start_writes(self) -> None:
        while self._sealed and len(self._writing) < self._concurrency:
            batch = self._sealed.popleft()
            task = asyncio.create_task(self._persist(batch), name="influx-write-batch")
            task.add_done_callback(lambda _: self._wakeup.set())
            self._writing.append((batch, task))

    def _acknowledge_written(self) -> None:
        """Acknowledge persisted batches from the oldest on, stopping at the first still being written."""
        while self._writing and self._writing[0][1].done():
            batch, task = self._writing.popleft()
            task.result()  # a bug in persisting stops the service rather than dropping a batch
            self._acknowledge(batch)

    def _acknowledge(self, batch: Batch) -> None:
        if self._subscriber:
            self._subscriber.ack(batch.tokens)
            if (self._subscriber.paused and not self._closing
                    and len(self._sealed) + len(self._writing) < self._max_pending):
                self._subscriber.resume()

    def _batch_due(self) -> float:
        """When the current batch is to be sealed by time: its age, or the stream's pause."""
        return min(self._current.started + self._batch_seconds, self._last_message + self._batch_idle)

    async def _wait(self) -> None:
        now = time.monotonic()
        deadlines = []
        if not self._current.empty:
            deadlines.append(self._batch_due())
        if len(self._spool) and not self._writing:
            deadlines.append(max(self._retry_at, now))
        try:
            async with asyncio.timeout(min(deadlines) - now if deadlines else None):
                await self._wakeup.wait()
        except TimeoutError:
            pass
        self._wakeup.clear()
        if not self._current.empty and time.monotonic() >= self._batch_due():
            self._seal()
        elif not self._sealed and not self._writing and len(self._spool) and time.monotonic() >= self._retry_at:
            await self._drain()

    async def flush(self) -> None:
        """Seal and persist everything received so far, and acknowledge it (for shutdown).

        Call it once :meth:`run` has stopped. It never resumes reading, and if it is cancelled (the
        shutdown's time is up) it cancels the writes still in flight: their messages stay
        unacknowledged, and the broker will deliver them again.
        """
        self._closing = True
        self._seal()
        try:
            while self._sealed or self._writing:
                self._start_writes()
                batch, task = self._writing[0]
                await task
                self._writing.popleft()
                self._acknowledge(batch)
        except asyncio.CancelledError:
            for _, task in self._writing:
                task.cancel()
            raise

    async def _persist(self, batch: Batch) -> None:
        """Write (or spool) the batch's two bodies; its station-hours journaled before, settled after."""
        keeper, hours = self._keeper, batch.hours
        if keeper is not None and hours:
            await keeper.touched(hours)
        written = await self._persist_body("\n".join(batch.lines).encode(), Tier.RAW)
        await self._persist_body("\n".join(batch.monitor).encode(), Tier.MONITOR)
        if keeper is not None and hours:
            keeper.settled(hours, written)

    async def _persist_body(self, body: bytes, tier: Tier) -> bool:
        """Write one body, or spool it; True when it went to InfluxDB."""
        if not body:
            return True
        while True:
            if await self._drain():
                try:
                    await self._write(body, tier)
                except InfluxUnavailableError as exc:
                    self._influx_down(exc)
                else:
                    return True
            try:
                await self._spool.append(body, tier)
            except SpoolFullError as exc:
                self._metrics.spool_full.set(1)
                if not self._spool_full_logged:
                    logger.warning("%s: not acknowledging messages until InfluxDB takes the spool back", exc)
                    self._spool_full_logged = True
                await asyncio.sleep(max(self._retry_at - time.monotonic(), _RETRY_MIN))
                continue
            self._counts.spooled_batches += 1
            self._metrics.spool_full.set(0)
            self._update_spool_gauges()
            return False

    async def _drain(self) -> bool:
        """Replay the spool, oldest first; True when it is empty (InfluxDB is taking writes)."""
        if not len(self._spool):
            return True
        if time.monotonic() < self._retry_at:
            return False
        async with self._drain_lock:  # one replay at a time: concurrent writes all come here first
            if len(self._spool) and time.monotonic() < self._retry_at:  # the replay before us failed
                return False
            return await self._drain_locked()

    async def _drain_locked(self) -> bool:
        while (oldest := self._spool.oldest()) is not None:
            body, tier = oldest
            keeper = self._keeper if tier is Tier.RAW else None
            hours = hours_of_body(body) if keeper is not None else set()
            if keeper is not None:
                await keeper.touched(hours)
            try:
                await self._write(body, tier)
            except InfluxUnavailableError as exc:
                self._influx_down(exc)
                if keeper is not None:
                    keeper.settled(hours, written=False)
                return False
            if keeper is not None:
                keeper.settled(hours, written=True)
            self._spool.pop_oldest()
            self._update_spool_gauges()
            if not len(self._spool):
                logger.info("spool drained")
        if self._spool_full_logged:
            logger.info("spool has room again")
            self._spool_full_logged = False
        self._metrics.spool_full.set(0)
        return True

    async def _write(self, body: bytes, tier: Tier) -> None:
        """Write a body; a 4xx is narrowed down to the refused points, which become rejects."""
        started = time.monotonic()
        try:
            await self._writer.write(body, tier)
        except InfluxRejectedError as exc:
            lines = body.split(b"\n")
            if len(lines) == 1:
                self._refused(body, exc)
                return
            half = len(lines) // 2
            await self._write(b"\n".join(lines[:half]), tier)
            await self._write(b"\n".join(lines[half:]), tier)
            return
        took = time.monotonic() - started
        self._metrics.write_seconds.observe(took)
        if self._stats is not None:
            self._stats.write_took(took)
        self._counts.points_written += body.count(b"\n") + 1
        if self._retry_delay > _RETRY_MIN:
            logger.info("InfluxDB is taking writes again")
        self._metrics.influx_up.set(1)
        self._retry_delay = _RETRY_MIN

    def _refused(self, line: bytes, exc: InfluxRejectedError) -> None:
        text = line.decode("utf-8", "replace")
        station = text.split("station=", 1)[1].split(",", 1)[0] if "station=" in text else ""
        logger.warning("InfluxDB refused a point: %s: %s", exc.message, text[:200])
        if text.startswith("ingest_rejects,"):
            return  # never loop on our own reject points
        lines: list[str] = []
        self._add_reject(lines, Reject(RejectReason.WRITE_REJECTED, clip(station), "",
                                       clip(f"{exc.message} | {text}")), int(self._clock() * 1000))
        self.add_points(lines)

    def _influx_down(self, exc: InfluxUnavailableError) -> None:
        if self._retry_delay == _RETRY_MIN:
            logger.warning("InfluxDB unavailable (%s): spooling batches to disk", exc)
        self._metrics.influx_up.set(0)
        now = time.monotonic()
        if now < self._retry_at:  # another write that was in flight failed too: the same outage
            return
        self._retry_at = now + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX)

    def _update_spool_gauges(self) -> None:
        self._metrics.spool_bytes.set(self._spool.size_bytes)
        self._metrics.spool_batches.set(len(self._spool))
