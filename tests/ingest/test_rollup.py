"""Rollups computed by InfluxDB equal the definition computed in plain Python from the raw points."""

from __future__ import annotations

import asyncio
import functools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from ingest import cli
from ingest.config import Settings
from ingest.influxql import InfluxQL
from ingest.rebuild import Clients, Progress, rebuild
from ingest.retention import ensure
from ingest.writer import InfluxV1Writer
from telemetry.storage import DAILY, HOUR_MS, HOURLY, Tier
from tests.ingest import rollup_reference as ref
from tests.rig import Influxd

T0 = 1_795_000_000_000 - 1_795_000_000_000 % HOUR_MS  # a UTC hour
DAYS = {Tier.RAW: 400, Tier.ROLLUP: 3650, Tier.MONITOR: 30}


def raw_lines(seed: int = 3, hours: int = 6) -> list[str]:
    """Two stations over ``hours``: a counter reset, a silent station (gap of 3 h), bursts within a
    minute, a charger fault, readings without door counters."""
    rnd = random.Random(seed)
    lines = []
    for station, district in (("PL-KT-001", "kongtong"), ("PL-HT-001", "huating")):
        tags = f"station={station},district={district},kind=smart"
        entries, energy, seq = 100, {"C1": 5.0, "C2": 0.0}, 0
        for minute in range(hours * 60):
            if station == "PL-HT-001" and 60 <= minute < 240:
                continue  # offline three hours
            ts = T0 + minute * 60_000 + rnd.randrange(60_000)
            for _ in range(rnd.choice((1, 1, 2, 3))):
                seq += 1
                entries = 0 if minute == 150 else entries + rnd.randrange(3)  # a reboot resets the counter
                doors = f",entries={entries}i,exits={entries}i" if minute % 7 else ""
                lines.append(f"occupancy,{tags} people={rnd.randrange(20)}i,capacity=20i{doors},seq={seq}i {ts}")
                ts += rnd.randrange(1, 5000)
            for charger in ("C1", "C2"):
                seq += 1
                energy[charger] = 0.0 if minute == 200 else energy[charger] + rnd.random() * 5
                fault = ',fault="E07"' if charger == "C2" and 30 <= minute < 40 else ""
                lines.append(f"charger,{tags},charger={charger} sockets_in_use={rnd.randrange(11)}i,sockets_total=10i,"
                             f"power_w={rnd.random() * 300},energy_wh={energy[charger]}{fault},seq={seq}i {ts + 1}")
            if minute % 2:
                seq += 1
                lines.append(f"temperature,{tags},sensor=indoor celsius={15 + rnd.random() * 5},seq={seq}i {ts + 2}")
    return lines


async def setup_db(influxd: Influxd, db: str) -> tuple[InfluxQL, InfluxV1Writer]:
    influxd.write(db, "\n".join(raw_lines()))
    ql = InfluxQL(url=influxd.url, database=db)
    await ensure(ql, database=db, days=DAYS)
    return ql, InfluxV1Writer(url=influxd.url, database=db)


async def test_rollup_rebuild_equals_the_definition_from_raw_points(influxd: Influxd, db: str) -> None:
    ql, writer = await setup_db(influxd, db)
    seen: list[Progress] = []
    async with ql, writer:
        summary = await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS,
                                chunk_hours=2, on_progress=seen.append)
    want = ref.expected(influxd, db)
    ref.assert_equal(ref.stored(influxd, db), want)
    assert summary.hours == 6
    assert summary.points == sum(1 for measurement, _, _ in want if measurement in HOURLY)
    assert summary.day_points >= len(want) - summary.points > 0
    assert seen[-1].hours_done == 6
    assert any(f.get("visits", 0) > 0 for f in want.values())
    assert any(f.get("fault_minutes", 0) > 0 for f in want.values())


async def test_rollup_visits_and_energy_equal_influxql_non_negative_difference(influxd: Influxd, db: str) -> None:
    ql, writer = await setup_db(influxd, db)
    async with ql, writer:
        await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS)
    for raw, field, rollup in (("occupancy", "entries", "occupancy_1h"), ("charger", "energy_wh", "charger_1h")):
        nn = influxd.rows(f'SELECT sum(d) FROM (SELECT non_negative_difference("{field}") AS d FROM "{raw}" '
                          f"GROUP BY *) WHERE time >= {T0}ms AND time < {T0 + 6 * HOUR_MS}ms GROUP BY station", db)
        ours = influxd.rows(f'SELECT sum("{"visits" if raw == "occupancy" else field}") FROM "rollup"."{rollup}" '
                            "GROUP BY station", db)
        assert {r["station"]: pytest.approx(r["sum"]) for r in nn} == {r["station"]: r["sum"] for r in ours}


async def test_rollup_rebuild_twice_writes_the_same_points(influxd: Influxd, db: str) -> None:
    ql, writer = await setup_db(influxd, db)
    async with ql, writer:
        await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS, chunk_hours=4)
        first = ref.stored(influxd, db)
        await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS, chunk_hours=1)
    assert ref.stored(influxd, db) == first


async def cancel_after_two_hours(*, checkpoint: Path, **options: Any) -> None:
    """Start a rebuild, cancel it (as Ctrl-C does) once its checkpoint says two hours are done (with
    workers, later chunks can finish before earlier ones)."""
    two_done = asyncio.Event()

    def watch(_: Progress) -> None:
        if json.loads(checkpoint.read_text())["done_ms"] >= T0 + 2 * HOUR_MS:
            two_done.set()

    task = asyncio.create_task(rebuild(on_progress=watch, checkpoint=checkpoint, **options))
    await two_done.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_rollup_rebuild_resumes_from_its_checkpoint(influxd: Influxd, db: str, tmp_path: Path) -> None:
    """Cancelled (as Ctrl-C does) after two hours, it resumes where the checkpoint says and ends the same."""
    ql, writer = await setup_db(influxd, db)
    checkpoint = tmp_path / "rebuild.json"
    async with ql, writer:
        await cancel_after_two_hours(ql=ql, writer=writer, database=db, since_ms=T0,
                                               until_ms=T0 + 6 * HOUR_MS, chunk_hours=1, concurrency=1,
                                               checkpoint=checkpoint)
        done_ms = json.loads(checkpoint.read_text())["done_ms"]
        assert T0 + 2 * HOUR_MS <= done_ms < T0 + 6 * HOUR_MS
        summary = await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS,
                                chunk_hours=1, checkpoint=checkpoint)
    assert summary.resumed_at_ms == done_ms
    assert not checkpoint.exists()
    ref.assert_equal(ref.stored(influxd, db), ref.expected(influxd, db))


def _clients(influxd: Influxd, db: str) -> Clients:
    return functools.partial(cli.clients, Settings(influx_url=influxd.url, influx_db=db))


async def test_rollup_rebuild_with_workers_equals_the_definition(influxd: Influxd, db: str) -> None:
    """Chunks computed and written by two worker processes give the points of one process."""
    ql, writer = await setup_db(influxd, db)
    async with ql, writer:
        summary = await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS,
                                chunk_hours=1, workers=2, clients=_clients(influxd, db))
    want = ref.expected(influxd, db)
    ref.assert_equal(ref.stored(influxd, db), want)
    assert summary.points == sum(1 for measurement, _, _ in want if measurement in HOURLY)
    assert summary.day_points >= len(want) - summary.points > 0


async def test_rollup_rebuild_with_workers_resumes_from_its_checkpoint(influxd: Influxd, db: str,
                                                                       tmp_path: Path) -> None:
    """Cancelled after two hours with two workers, resumed with two: the checkpoint has no gap and the end
    is the definition."""
    ql, writer = await setup_db(influxd, db)
    checkpoint = tmp_path / "rebuild.json"
    async with ql, writer:
        await cancel_after_two_hours(ql=ql, writer=writer, database=db, since_ms=T0,
                                               until_ms=T0 + 6 * HOUR_MS, chunk_hours=1, workers=2,
                                               clients=_clients(influxd, db), checkpoint=checkpoint)
        done_ms = json.loads(checkpoint.read_text())["done_ms"]
        assert T0 + 2 * HOUR_MS <= done_ms < T0 + 6 * HOUR_MS
        summary = await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS,
                                chunk_hours=1, workers=2, clients=_clients(influxd, db), checkpoint=checkpoint)
    assert summary.resumed_at_ms == done_ms
    assert not checkpoint.exists()
    ref.assert_equal(ref.stored(influxd, db), ref.expected(influxd, db))


def test_rollup_rebuild_with_workers_needs_clients() -> None:
    with pytest.raises(ValueError, match="needs clients"):
        asyncio.run(rebuild(ql=None, writer=None, database="x", since_ms=T0, workers=2))  # type: ignore[arg-type]


async def test_rollup_rebuild_daily_only_recomputes_the_days_from_the_hours_stored(influxd: Influxd, db: str) -> None:
    """A deployment with hourly rollups and no daily ones (the release before them) gets its days without
    reading a raw point: here the raw points are gone, the hours stay, the days come back equal."""
    ql, writer = await setup_db(influxd, db)
    async with ql, writer:
        await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS)
        want = ref.stored(influxd, db)
        for measurement in DAILY:
            influxd.query(f'DROP MEASUREMENT "{measurement}"', db)
        for measurement in ("occupancy", "charger", "temperature"):
            influxd.query(f'DROP MEASUREMENT "{measurement}"', db)
        assert {m for m, _, _ in ref.stored(influxd, db)} == set(HOURLY)
        summary = await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS,
                                daily_only=True)
    assert summary.points == 0
    assert summary.day_points == sum(1 for m, _, _ in want if m in DAILY) > 0
    assert ref.stored(influxd, db) == want


async def test_rollup_rebuild_never_resumes_from_a_checkpoint_of_the_other_kind(influxd: Influxd, db: str,
                                                                               tmp_path: Path) -> None:
    """A daily-only run's checkpoint is its own: a full rebuild of the same range starts from the beginning
    (resuming there would skip the hours), and the other way round."""
    ql, writer = await setup_db(influxd, db)
    checkpoint = tmp_path / "rebuild.json"
    async with ql, writer:
        await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS)  # hours to derive
        await cancel_after_two_hours(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS,
                                     chunk_hours=1, concurrency=1, checkpoint=checkpoint, daily_only=True)
        assert json.loads(checkpoint.read_text())["daily_only"] is True
        summary = await rebuild(ql=ql, writer=writer, database=db, since_ms=T0, until_ms=T0 + 6 * HOUR_MS,
                                chunk_hours=1, checkpoint=checkpoint)
    assert summary.resumed_at_ms is None
    ref.assert_equal(ref.stored(influxd, db), ref.expected(influxd, db))
