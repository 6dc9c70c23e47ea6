"""The agent's store-and-forward buffer: every reading waits on disk until the broker has it.

A reading is written here, with the station's next ``seq``, before it is sent; it is deleted
when the broker acknowledges it (QoS 1 PUBACK). Readings that were never sent, or whose
acknowledgement never came, are what the agent replays, oldest first. ``seq`` and the count of
readings dropped at the bound are kept in the same transaction as the readings, so a crash at
any point neither reuses nor skips a ``seq``.

One SQLite database (:class:`BufferFile`) holds the buffers of one station (a device) or of many
(the simulator, which runs thousands of agents on one file instead of thousands of files)::

    readings(id INTEGER PRIMARY KEY AUTOINCREMENT, station, kind, ts, seq, payload)
    stations(station PRIMARY KEY, seq, dropped, last_ts, config)

``id`` is never reused (AUTOINCREMENT), so a late acknowledgement can only delete its own row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from firmware_stubs.exceptions import BufferFileError
from telemetry.contract import MAX_AGE_MS, Kind

SCHEMA_VERSION: Final = 1

_SCHEMA = """
CREATE TABLE readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX readings_by_station ON readings (station, id);
CREATE TABLE stations (
    station TEXT PRIMARY KEY,
    seq INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,
    last_ts INTEGER NOT NULL DEFAULT 0,
    config TEXT
);
"""


@dataclass(slots=True, frozen=True)
class NewReading:
    """A reading to store: its topic kind, ``ts`` (epoch ms), ``seq`` and JSON payload."""

    kind: Kind
    ts: int
    seq: int
    payload: str


@dataclass(slots=True, frozen=True)
class Row:
    """A stored reading, as it is sent."""

    id: int
    kind: Kind
    payload: str


class BufferFile:
    """One SQLite database holding agent buffers.

    Args:
        path: the database file (created with its directory), or ``":memory:"``.
        durable: sync every commit to disk (a device, where power cuts happen); the simulator
            turns it off, which still survives the crash of the process but not of the machine.
    """

    def __init__(self, *, path: Path | str, durable: bool = True) -> None:
        self.path = path
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise BufferFileError(f"{path}: cannot open the agent buffer: {exc}") from exc
        try:
            self._setup(durable=durable)
        except sqlite3.Error as exc:
            self._conn.close()
            raise BufferFileError(f"{path}: not an agent buffer: {exc}") from exc
        except BufferFileError:
            self._conn.close()
            raise

    def _setup(self, *, durable: bool) -> None:
        conn = self._conn
        if str(self.path) != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if version == 0 and tables == 0:
            with conn:
                conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        elif version != SCHEMA_VERSION:
            raise BufferFileError(f"{self.path}: not an agent buffer (schema version {version}, "
                                  f"expected {SCHEMA_VERSION})")

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    def buffer(self, *, station: str, max_readings: int = 500_000) -> Buffer:
        """The buffer of ``station`` in this file (created empty the first time)."""
        return Buffer(file=self, station=station, max_readings=max_readings)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Buffer:
    """The readings of one station that the broker has not acknowledged yet, and its ``seq``.

    Args:
        file: the database.
        station: whose readings.
        max_readings: the bound; adding beyond it drops the oldest readings and counts them.
        max_age_ms: readings older than this before the newest one are dropped and counted too:
            ingest would refuse them (the contract's ``MAX_AGE_MS``).
    """

    def __init__(self, *, file: BufferFile, station: str, max_readings: int = 500_000,
                 max_age_ms: int = MAX_AGE_MS) -> None:
        if max_readings < 1:
            raise ValueError("max_readings must be at least 1")
        self.station = station
        self.max_readings = max_readings
        self.max_age_ms = max_age_ms
        self._conn = file.connection
        with self._conn:
            self._conn.execute("INSERT OR IGNORE INTO stations (station) VALUES (?)", (station,))
        self._seq, self._dropped, self._last_ts = self._conn.execute(
            "SELECT seq, dropped, last_ts FROM stations WHERE station = ?", (station,)).fetchone()
        self._count: int = self._conn.execute(
            "SELECT count(*) FROM readings WHERE station = ?", (station,)).fetchone()[0]

    def __len__(self) -> int:
        return self._count

    @property
    def seq(self) -> int:
        """The ``seq`` of the last reading added (0 before the first)."""
        return int(self._seq)

    @property
    def dropped(self) -> int:
        """Readings dropped at the bound, over the station's life."""
        return int(self._dropped)

    @property
    def last_ts(self) -> int:
        """The latest ``ts`` ever added (epoch ms; 0 before the first reading)."""
        return int(self._last_ts)

    def add(self, readings: Sequence[NewReading]) -> list[Row]:
        """Store readings whose ``seq`` continue this station's; returns those still stored.

        Beyond the bound, and past ``max_age_ms`` before the newest reading, the oldest readings
        are deleted (and counted in :attr:`dropped`) in the same transaction.
        """
        if not readings:
            return []
        for offset, r in enumerate(readings, start=1):
            if r.seq != self._seq + offset:
                raise ValueError(f"seq {r.seq} does not continue {self.station}'s seq {self._seq + offset - 1}")
        conn, station = self._conn, self.station
        last_ts = max(self._last_ts, *(r.ts for r in readings))
        with conn:
            rows = [Row(self._insert(r), r.kind, r.payload) for r in readings]
            over = max(self._count + len(rows) - self.max_readings, self._too_old(last_ts - self.max_age_ms))
            dropped = 0
            if over > 0:
                dropped = conn.execute(
                    "DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE station = ? ORDER BY id LIMIT ?)",
                    (station, over)).rowcount
            conn.execute("UPDATE stations SET seq = ?, dropped = ?, last_ts = ? WHERE station = ?",
                         (readings[-1].seq, self._dropped + dropped, last_ts, station))
        survivors = rows[max(0, over - self._count):] if over > 0 else rows
        self._seq = readings[-1].seq
        self._dropped += dropped
        self._last_ts = last_ts
        self._count += len(rows) - dropped
        return survivors

    def _too_old(self, cutoff: int) -> int:
        """How many of the oldest readings (by id, the order they are sent in) have a ts before ``cutoff``."""
        oldest = self._conn.execute("SELECT ts FROM readings WHERE station = ? ORDER BY id LIMIT 1",
                                    (self.station,)).fetchone()
        if oldest is None or oldest[0] >= cutoff:  # the common case: one index lookup
            return 0
        count, last_id = 0, 0
        while True:
            page = self._conn.execute("SELECT id, ts FROM readings WHERE station = ? AND id > ? ORDER BY id LIMIT 512",
                                      (self.station, last_id)).fetchall()
            for row_id, ts in page:
                if ts >= cutoff:
                    return count
                count, last_id = count + 1, row_id
            if len(page) < 512:
                return count

    def _insert(self, r: NewReading) -> int:
        cur = self._conn.execute("INSERT INTO readings (station, kind, ts, seq, payload) VALUES (?, ?, ?, ?, ?)",
                                 (self.station, r.kind.value, r.ts, r.seq, r.payload))
        assert cur.lastrowid is not None  # noqa: S101 - set by every INSERT
        return cur.lastrowid

    def delete(self, ids: Iterable[int]) -> int:
        """Delete acknowledged readings; returns how many were still stored."""
        with self._conn:
            deleted = self._conn.executemany("DELETE FROM readings WHERE id = ?", ((i,) for i in ids)).rowcount
        self._count -= deleted
        return int(deleted)

    def oldest(self, *, after: int = 0, limit: int = 1000) -> list[Row]:
        """Stored readings with an id above ``after``, oldest first."""
        return [Row(i, Kind(k), p) for i, k, p in self._conn.execute(
            "SELECT id, kind, payload FROM readings WHERE station = ? AND id > ? ORDER BY id LIMIT ?",
            (self.station, after, limit))]

    def config(self) -> str | None:
        """The last config the agent accepted (JSON), kept so a restart offline still runs it."""
        row = self._conn.execute("SELECT config FROM stations WHERE station = ?", (self.station,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def save_config(self, text: str | None) -> None:
        with self._conn:
            self._conn.execute("UPDATE stations SET config = ? WHERE station = ?", (text, self.station))
