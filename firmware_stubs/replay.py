"""The replay: the backlog (readings in the buffer and not in flight) sent oldest first.

After a reconnection, or whenever live readings could not go out, the replay sends the oldest
readings as JSON arrays per kind (at most :data:`~telemetry.contract.MAX_BATCH` readings and
64 KiB each), ``rate`` readings per second of the agent's clock, one step unacknowledged at a
time. Live readings never wait behind it: they are published as they are read.
"""

from __future__ import annotations

import asyncio
import logging

from firmware_stubs.buffer import Buffer, Row
from firmware_stubs.clock import Clock
from firmware_stubs.connection import Connection
from firmware_stubs.outbox import Outbox
from telemetry.contract import MAX_BATCH, MAX_PAYLOAD_BYTES, Kind

logger = logging.getLogger(__name__)


class Replay:
    """One agent's backlog sender.

    Args:
        rate: backlog readings per second (of ``clock``).
        buffer: where the backlog is.
        outbox: sends and knows what is in flight.
        connection: whether the agent is connected.
        clock: paces the steps.
        name: the station, for logs.
    """

    __slots__ = ("_acked", "_backlog", "_budget", "_buffer", "_clock", "_connection", "_cursor", "_mids", "_name",
                 "_outbox", "_period")

    def __init__(self, *, rate: float, buffer: Buffer, outbox: Outbox, connection: Connection, clock: Clock,
                 name: str) -> None:
        if rate <= 0:
            raise ValueError("replay_rate must be positive")
        self._period = max(1.0, 1.0 / rate)
        self._budget = max(1, int(rate * self._period))
        self._buffer, self._outbox, self._connection, self._clock, self._name = buffer, outbox, connection, clock, name
        self._cursor = 0
        self._mids: set[int] = set()
        self._backlog = asyncio.Event()
        self._acked = asyncio.Event()

    def wake(self) -> None:
        """There may be a backlog: look."""
        self._backlog.set()

    def acknowledge(self, mid: int) -> None:
        if mid in self._mids:
            self._mids.discard(mid)
            if not self._mids:
                self._acked.set()

    def reset(self) -> None:
        """The connection dropped: nothing of ours is in flight; start again from the oldest."""
        self._mids.clear()
        self._acked.set()
        self._cursor = 0

    async def run(self) -> None:
        while True:
            await self._backlog.wait()
            if not self._connection.connected:
                self._backlog.clear()
                continue
            if self._mids:
                self._acked.clear()
                await self._acked.wait()
                continue
            if not self._step():
                self._backlog.clear()
                continue
            await self._clock.sleep_until(self._clock.time() + self._period)

    def _step(self) -> int:
        """Send up to a step's budget of the oldest readings not in flight; returns how many."""
        sent = 0
        for kind, rows in _by_kind(self._pick(self._budget)).items():
            for chunk in chunks(rows):
                mid = self._outbox.send(kind, chunk, batch=True)
                if mid is None:
                    return sent
                self._mids.add(mid)
                sent += len(chunk)
        if sent:
            logger.debug("%s: replayed %d readings, %d buffered", self._name, sent, len(self._buffer))
        return sent

    def _pick(self, budget: int) -> list[Row]:
        picked: list[Row] = []
        while len(picked) < budget:
            rows = self._buffer.oldest(after=self._cursor, limit=budget)
            for row in rows:
                self._cursor = row.id
                if not self._outbox.in_flight(row.id):
                    picked.append(row)
                    if len(picked) == budget:
                        break
            if len(rows) < budget:
                break
        return picked


def _by_kind(rows: list[Row]) -> dict[Kind, list[Row]]:
    by_kind: dict[Kind, list[Row]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row)
    return by_kind


def chunks(rows: list[Row]) -> list[list[Row]]:
    """Split into JSON arrays within the contract: at most MAX_BATCH readings and 64 KiB."""
    out: list[list[Row]] = []
    chunk: list[Row] = []
    size = 2
    for row in rows:
        n = len(row.payload.encode()) + 1
        if chunk and (len(chunk) >= MAX_BATCH or size + n > MAX_PAYLOAD_BYTES):
            out.append(chunk)
            chunk, size = [], 2
        chunk.append(row)
        size += n
    if chunk:
        out.append(chunk)
    return out
