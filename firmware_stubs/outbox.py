"""The outbox: readings published and waiting for their PUBACK.

Every reading is in the buffer before it is sent; the outbox remembers which buffer rows each
message carries, and when its PUBACK arrives deletes them from the buffer (a batch of
acknowledgements in one transaction, after each read from the socket). A connection that drops
forgets what was in flight: those rows are still in the buffer, and the replay sends them again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping
from typing import Final

from firmware_stubs.buffer import Buffer, Row
from firmware_stubs.connection import Connection
from telemetry.contract import Kind

logger = logging.getLogger(__name__)

MAX_INFLIGHT: Final = 1000
"""Messages awaiting their PUBACK; beyond it new readings wait in the buffer for the replay."""


class Outbox:
    """One agent's messages in flight, and the acknowledged readings not yet deleted.

    Args:
        buffer: where the readings wait.
        connection: publishes.
        topics: the topic of each kind.
        name: the station, for logs.
    """

    __slots__ = ("_acked", "_buffer", "_connection", "_emptied", "_ids", "_inflight", "_name", "_topics", "_waiters",
                 "acknowledged")

    def __init__(self, *, buffer: Buffer, connection: Connection, topics: Mapping[Kind, str], name: str) -> None:
        self._buffer, self._connection, self._topics, self._name = buffer, connection, topics, name
        self._inflight: dict[int, tuple[int, ...]] = {}
        self._ids: set[int] = set()
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._acked: list[int] = []
        self._emptied = asyncio.Event()
        self.acknowledged = 0
        """Readings the broker acknowledged (and the buffer deleted), since the agent started."""

    @property
    def full(self) -> bool:
        return len(self._inflight) >= MAX_INFLIGHT

    def in_flight(self, row_id: int) -> bool:
        return row_id in self._ids

    def send(self, kind: Kind, rows: list[Row], *, batch: bool) -> int | None:
        """Publish readings (one object, or an array); returns the mid, None when it could not."""
        payload = ("[" + ",".join(r.payload for r in rows) + "]") if batch else rows[0].payload
        mid = self._connection.publish(self._topics[kind], payload)
        if mid is None:
            return None
        ids = tuple(r.id for r in rows)
        self._inflight[mid] = ids
        self._ids.update(ids)
        return mid

    def wait_for(self, mid: int) -> asyncio.Future[None]:
        """A future done when message ``mid`` (not a reading: a status) is acknowledged."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[mid] = waiter
        return waiter

    def acknowledge(self, mid: int) -> None:
        """The PUBACK of ``mid`` arrived."""
        ids = self._inflight.pop(mid, None)
        if ids:
            self._acked.extend(ids)
            self._ids.difference_update(ids)
        waiter = self._waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def flush(self) -> None:
        """Delete the acknowledged readings from the buffer."""
        if not self._acked:
            return
        try:
            self._buffer.delete(self._acked)
        except sqlite3.Error:
            logger.exception("%s: cannot delete acknowledged readings (they will be sent again)", self._name)
        self.acknowledged += len(self._acked)
        self._acked.clear()
        if not len(self._buffer):
            self._emptied.set()

    def forget_acks(self) -> None:
        """Power cut: acknowledgements not yet flushed are lost (those readings will be sent again)."""
        self._acked.clear()

    def clear(self) -> None:
        """The connection dropped: nothing is in flight any more."""
        self._inflight.clear()
        self._ids.clear()
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()

    async def drained(self, within: float) -> bool:
        """Wait up to ``within`` real seconds for the buffer to empty; whether it did."""
        self._emptied.clear()
        try:
            async with asyncio.timeout(within):
                await self._emptied.wait()
        except TimeoutError:
            return False
        return True
