"""The disk spool: order, bound, and what survives a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.exceptions import SpoolFullError
from ingest.spool import Spool


def test_spool_replays_oldest_first_and_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(directory=tmp_path, max_bytes=1000)
    for i in range(3):
        spool.append(f"batch {i}".encode())
    assert (len(spool), spool.size_bytes) == (3, 21)
    assert spool.oldest() == b"batch 0"
    spool.pop_oldest()
    reopened = Spool(directory=tmp_path, max_bytes=1000)
    assert (len(reopened), reopened.size_bytes) == (2, 14)
    reopened.append(b"batch 3")
    got = []
    while (body := reopened.oldest()) is not None:
        got.append(body)
        reopened.pop_oldest()
    assert got == [b"batch 1", b"batch 2", b"batch 3"]
    assert list(tmp_path.iterdir()) == []


def test_spool_refuses_past_its_bound(tmp_path: Path) -> None:
    spool = Spool(directory=tmp_path, max_bytes=10)
    spool.append(b"12345678")
    with pytest.raises(SpoolFullError, match="is full"):
        spool.append(b"123")
    assert len(spool) == 1
    spool.pop_oldest()
    spool.append(b"123")


def test_spool_discards_half_written_batches(tmp_path: Path) -> None:
    """A crash during append leaves a .tmp file, never a partial batch under a real name."""
    Spool(directory=tmp_path, max_bytes=100).append(b"whole")
    (tmp_path / "0000000000000002.tmp").write_bytes(b"half")
    spool = Spool(directory=tmp_path, max_bytes=100)
    assert len(spool) == 1
    assert spool.oldest() == b"whole"
    assert not list(tmp_path.glob("*.tmp"))
