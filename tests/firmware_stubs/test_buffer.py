"""The SQLite buffer: seq, bound, acknowledgement, persistence, many stations in one file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_stubs import replay
from firmware_stubs.buffer import BufferFile, NewReading, Row
from firmware_stubs.exceptions import BufferFileError
from telemetry.contract import MAX_AGE_MS, MAX_BATCH, MAX_PAYLOAD_BYTES, Kind


def readings(first_seq: int, n: int, *, kind: Kind = Kind.OCCUPANCY) -> list[NewReading]:
    return [NewReading(kind, 1000 + s, s, f'{{"seq":{s}}}') for s in range(first_seq, first_seq + n)]


def test_buffer_seq_and_readings_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    with BufferFile(path=path) as file:
        buf = file.buffer(station="PL-KT-001")
        stored = buf.add(readings(1, 3))
        assert [r.payload for r in stored] == ['{"seq":1}', '{"seq":2}', '{"seq":3}']
        assert buf.delete([stored[0].id]) == 1
        buf.save_config('{"rev":"r7"}')
    with BufferFile(path=path) as file:
        buf = file.buffer(station="PL-KT-001")
        assert (len(buf), buf.seq, buf.last_ts, buf.config()) == (2, 3, 1003, '{"rev":"r7"}')
        assert [r.payload for r in buf.oldest()] == ['{"seq":2}', '{"seq":3}']
        buf.add(readings(4, 1))
        assert buf.seq == 4


def test_buffer_refuses_a_seq_that_does_not_continue(tmp_path: Path) -> None:
    with BufferFile(path=tmp_path / "b.sqlite3") as file:
        buf = file.buffer(station="PL-KT-001")
        buf.add(readings(1, 2))
        with pytest.raises(ValueError, match="does not continue"):
            buf.add(readings(4, 1))
        assert (len(buf), buf.seq) == (2, 2)


def test_buffer_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    with BufferFile(path=path) as file:
        buf = file.buffer(station="PL-KT-001", max_readings=5)
        buf.add(readings(1, 4))
        survivors = buf.add(readings(5, 3))
        assert [r.payload for r in survivors] == ['{"seq":5}', '{"seq":6}', '{"seq":7}']
        assert (len(buf), buf.dropped) == (5, 2)
        assert [r.payload for r in buf.oldest()] == [f'{{"seq":{s}}}' for s in range(3, 8)]
        survivors = buf.add(readings(8, 7))  # more than the bound at once: only the newest 5 stay
        assert [r.payload for r in survivors] == [f'{{"seq":{s}}}' for s in range(10, 15)]
        assert (len(buf), buf.dropped) == (5, 9)
    with BufferFile(path=path) as file:
        assert file.buffer(station="PL-KT-001", max_readings=5).dropped == 9


def test_buffer_drops_readings_past_the_contract_age_and_counts_them(tmp_path: Path) -> None:
    """Ingest stores readings up to MAX_AGE_MS old: older ones would be refused, so the agent drops them."""
    day = 86_400_000
    with BufferFile(path=tmp_path / "b.sqlite3") as file:
        buf = file.buffer(station="PL-KT-001")
        buf.add([NewReading(Kind.OCCUPANCY, d * day, d + 1, f'{{"day":{d}}}') for d in range(10)])
        buf.add([NewReading(Kind.OCCUPANCY, 29 * day, 11, '{"day":29}')])
        assert (len(buf), buf.dropped) == (11, 0)  # 29 days: within the limit
        survivors = buf.add([NewReading(Kind.OCCUPANCY, (MAX_AGE_MS + 3 * day), 12, '{"day":33}')])
        assert [r.payload for r in survivors] == ['{"day":33}']
        assert buf.dropped == 3  # days 0, 1 and 2 are more than 30 days before day 33
        assert buf.oldest(limit=1)[0].payload == '{"day":3}'


def test_buffer_stations_share_a_file_without_seeing_each_other(tmp_path: Path) -> None:
    with BufferFile(path=tmp_path / "b.sqlite3") as file:
        a, b = file.buffer(station="PL-KT-001"), file.buffer(station="PL-KT-002", max_readings=2)
        a.add(readings(1, 3))
        b.add(readings(1, 4))
        assert (len(a), a.seq, a.dropped, len(b), b.seq, b.dropped) == (3, 3, 0, 2, 4, 2)
        assert [r.payload for r in a.oldest(after=a.oldest()[0].id)] == ['{"seq":2}', '{"seq":3}']


def test_buffer_ids_are_never_reused_so_a_late_ack_cannot_delete_another_reading(tmp_path: Path) -> None:
    with BufferFile(path=tmp_path / "b.sqlite3") as file:
        buf = file.buffer(station="PL-KT-001", max_readings=1)
        [first] = buf.add(readings(1, 1))
        [second] = buf.add(readings(2, 1))  # drops the first while it may be in flight
        assert second.id != first.id
        assert buf.delete([first.id]) == 0  # its late PUBACK
        assert [r.id for r in buf.oldest()] == [second.id]


def test_buffer_file_that_is_not_a_buffer_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BufferFileError, match="not an agent buffer"):
        BufferFile(path=junk)
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(BufferFileError, match="schema version 0"):
        BufferFile(path=other)


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.one_of(st.integers(1, 6), st.just(0), st.just(-1)), max_size=40),
       bound=st.integers(1, 12))
def test_buffer_invariants_under_any_sequence_of_adds_and_acks(ops: list[int], bound: int) -> None:
    """Whatever is added and acknowledged: seq counts every reading, the newest stay, the rest are dropped."""
    with BufferFile(path=":memory:", durable=False) as file:
        buf = file.buffer(station="PL-KT-001", max_readings=bound)
        kept: list[int] = []  # seq of the readings a model of the buffer holds
        acked = 0
        for op in ops:
            if op > 0:
                buf.add(readings(buf.seq + 1, op))
                kept.extend(range(buf.seq - op + 1, buf.seq + 1))
                kept = kept[-bound:]
            elif kept:
                oldest = buf.oldest(limit=1) if op == 0 else buf.oldest()[-1:]
                buf.delete([oldest[0].id])
                kept.remove(int(oldest[0].payload.split(":")[1].rstrip("}")))
                acked += 1
            assert [int(r.payload.split(":")[1].rstrip("}")) for r in buf.oldest(limit=10_000)] == kept
            assert len(buf) == len(kept)
            assert buf.dropped == buf.seq - len(kept) - acked


def test_chunks_stay_within_the_contract_limits() -> None:
    small = [Row(i, Kind.OCCUPANCY, '{"ts":1,"seq":1,"people":1}') for i in range(2500)]
    assert [len(c) for c in replay.chunks(small)] == [MAX_BATCH, MAX_BATCH, 500]
    big = [Row(i, Kind.OCCUPANCY, '{"pad":"' + "x" * 20_000 + '"}') for i in range(7)]
    chunks = replay.chunks(big)
    assert [len(c) for c in chunks] == [3, 3, 1]
    for chunk in chunks:
        assert len(("[" + ",".join(r.payload for r in chunk) + "]").encode()) <= MAX_PAYLOAD_BYTES
