"""A bounded, ordered, crash-safe disk spool of line-protocol batches, each with its tier.

One file per batch, named by a sequence number and its tier (``0000000000000007.lp`` for raw
readings, ``0000000000000008.monitor.lp`` for ingest's own points), written to a temporary name,
fsynced and renamed, so a batch is either whole in the spool or absent. The fsyncs run in a
worker thread (``asyncio.to_thread``): a slow disk delays that batch, never the event loop
that reads MQTT and acknowledges the others. The oldest is replayed first and deleted only once
InfluxDB has taken it. A message is acknowledged to the broker only after its batch is in
InfluxDB or here, so a crash at any moment loses nothing: what was spooled is replayed on the
next start, what was not is redelivered by the broker.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ingest.exceptions import SpoolFullError
from telemetry.storage import Tier

logger = logging.getLogger(__name__)

_SUFFIX = ".lp"


def _name(seq: int, tier: Tier) -> str:
    return f"{seq:016d}{'' if tier is Tier.RAW else '.' + tier.value}{_SUFFIX}"


def _parse(path: Path) -> tuple[int, Tier]:
    seq, _, tier = path.name.removesuffix(_SUFFIX).partition(".")
    return int(seq), Tier(tier) if tier else Tier.RAW


class Spool:
    """Batches on disk, oldest first.

    Args:
        directory: created when missing; leftover batches from an earlier run are kept.
        max_bytes: :meth:`append` raises :class:`SpoolFullError` rather than grow past this.
        fsync: how a file descriptor is made durable (``os.fsync``; a test slows it down).
    """

    def __init__(self, *, directory: Path, max_bytes: int, fsync: Callable[[int], None] = os.fsync) -> None:
        self._dir = directory
        self._max = max_bytes
        self._fsync = fsync
        directory.mkdir(parents=True, exist_ok=True)
        for tmp in directory.glob("*.tmp"):
            tmp.unlink()
        self._files = sorted(directory.glob("*" + _SUFFIX))
        self._bytes = sum(f.stat().st_size for f in self._files)
        self._reserved = 0  # bytes of appends still being written
        self._next = _parse(self._files[-1])[0] + 1 if self._files else 1
        if self._files:
            logger.info("spool %s holds %d batches (%d bytes) from an earlier run", directory, len(self._files),
                        self._bytes)

    def __len__(self) -> int:
        return len(self._files)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def has_room(self, nbytes: int) -> bool:
        return self._bytes + self._reserved + nbytes <= self._max

    async def append(self, body: bytes, tier: Tier = Tier.RAW) -> None:
        """Store one batch durably (fsync, in a thread) at the end of the spool."""
        if not self.has_room(len(body)):
            raise SpoolFullError(f"spool {self._dir} is full ({self._bytes} of {self._max} bytes)")
        path = self._dir / _name(self._next, tier)
        self._next += 1
        self._reserved += len(body)
        try:
            await asyncio.to_thread(self._write, path, body)
        finally:
            self._reserved -= len(body)
        bisect.insort(self._files, path)  # two appends may finish in either order
        self._bytes += len(body)

    def _write(self, path: Path, body: bytes) -> None:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            self._fsync(fd)
        finally:
            os.close(fd)
        tmp.rename(path)
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    def oldest(self) -> tuple[bytes, Tier] | None:
        """The oldest batch and its tier."""
        if not self._files:
            return None
        return self._files[0].read_bytes(), _parse(self._files[0])[1]

    def pop_oldest(self) -> None:
        """Delete the oldest batch, once it is written."""
        path = self._files.pop(0)
        self._bytes -= path.stat().st_size
        path.unlink()
