"""The touched (station, hour) pairs whose rollups are still to be computed, durable on disk.

Ingest records the hours a batch touches here, fsynced, before it writes the batch and before it
acknowledges a single message of it; a pair leaves only once its rollup is written. So a SIGKILL
at any moment between the raw write and the rollup's recompute leaves the pair here, and the
next start recomputes it. The file is append-only (``<station> <hour_ms>`` a line) and is
rewritten with only the pending pairs once enough of its lines are done; a pair recorded twice,
or done but still in the file after a crash, only costs one more (identical) recompute. The file
work runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

Pair = tuple[str, int]
"""(station id, start of the hour in epoch ms)."""

_COMPACT_AT = 1024


class Journal:
    """The pending pairs, in memory and in ``path``.

    Args:
        path: the file (its directory is created); pairs left by an earlier run are pending.
        fsync: how a file descriptor is made durable (``os.fsync``).
    """

    def __init__(self, *, path: Path, fsync: Callable[[int], None] = os.fsync) -> None:
        self._path, self._fsync = path, fsync
        path.parent.mkdir(parents=True, exist_ok=True)
        self._pending = self._load()
        self._lines = len(self._pending)
        self._lock = asyncio.Lock()
        if self._pending:
            logger.info("rollup journal %s: %d station-hours from an earlier run to recompute", path,
                        len(self._pending))

    def _load(self) -> set[Pair]:
        pairs: set[Pair] = set()
        if not self._path.exists():
            return pairs
        for line in self._path.read_text(errors="replace").splitlines():
            station, _, hour = line.partition(" ")
            if station and hour.isdigit():
                pairs.add((station, int(hour)))  # a torn last line (a crash mid-append) is skipped
        return pairs

    @property
    def pending(self) -> frozenset[Pair]:
        return frozenset(self._pending)

    async def add(self, pairs: Iterable[Pair]) -> None:
        """Record pairs durably; returns once they are on disk (at once for pairs already there)."""
        if not (new := set(pairs) - self._pending):
            return
        async with self._lock:
            if new := new - self._pending:
                await asyncio.to_thread(self._append, sorted(new))
                self._pending |= new
                self._lines += len(new)

    def _append(self, pairs: list[Pair]) -> None:
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, "".join(f"{s} {h}\n" for s, h in pairs).encode())
            self._fsync(fd)
        finally:
            os.close(fd)

    async def remove(self, pairs: Iterable[Pair]) -> None:
        """Pairs whose rollups are written; the file is rewritten when mostly done lines."""
        self._pending -= set(pairs)
        if self._lines - len(self._pending) < max(_COMPACT_AT, len(self._pending)):
            return
        async with self._lock:
            keep = sorted(self._pending)
            await asyncio.to_thread(self._rewrite, keep)
            self._lines = len(keep)

    def _rewrite(self, pairs: list[Pair]) -> None:
        new = self._path.with_name(self._path.name + ".new")
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, "".join(f"{s} {h}\n" for s, h in pairs).encode())
            self._fsync(fd)
        finally:
            os.close(fd)
        new.replace(self._path)
        fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)
