"""A bounded, ordered, crash-safe disk spool of line-protocol batches.

One file per batch, named by a sequence number, written to a temporary name, fsynced and
renamed, so a batch is either whole in the spool or absent. The oldest is replayed first and
deleted only once InfluxDB has taken it. A message is acknowledged to the broker only after its
batch is in InfluxDB or here, so a crash at any moment loses nothing: what was spooled is
replayed on the next start, what was not is redelivered by the broker.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ingest.exceptions import SpoolFullError

logger = logging.getLogger(__name__)

_SUFFIX = ".lp"


class Spool:
    """Batches on disk, oldest first.

    Args:
        directory: created when missing; leftover batches from an earlier run are kept.
        max_bytes: :meth:`append` raises :class:`SpoolFullError` rather than grow past this.
    """

    def __init__(self, *, directory: Path, max_bytes: int) -> None:
        self._dir = directory
        self._max = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        for tmp in directory.glob("*.tmp"):
            tmp.unlink()
        self._files = sorted(directory.glob("*" + _SUFFIX))
        self._bytes = sum(f.stat().st_size for f in self._files)
        self._next = int(self._files[-1].stem) + 1 if self._files else 1
        if self._files:
            logger.info("spool %s holds %d batches (%d bytes) from an earlier run", directory, len(self._files),
                        self._bytes)

    def __len__(self) -> int:
        return len(self._files)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def has_room(self, nbytes: int) -> bool:
        return self._bytes + nbytes <= self._max

    def append(self, body: bytes) -> None:
        """Store one batch durably (fsync) at the end of the spool."""
        if not self.has_room(len(body)):
            raise SpoolFullError(f"spool {self._dir} is full ({self._bytes} of {self._max} bytes)")
        path = self._dir / f"{self._next:016d}{_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.rename(path)
        self._fsync_dir()
        self._next += 1
        self._files.append(path)
        self._bytes += len(body)

    def oldest(self) -> bytes | None:
        return self._files[0].read_bytes() if self._files else None

    def pop_oldest(self) -> None:
        """Delete the oldest batch, once it is written."""
        path = self._files.pop(0)
        self._bytes -= path.stat().st_size
        path.unlink()

    def _fsync_dir(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
