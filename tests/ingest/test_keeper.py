"""Ingest keeps the rollups itself: closed hours, late readings, SIGKILL before the recompute."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ingest import daily
from ingest.influxql import InfluxQL
from ingest.journal import Journal
from ingest.keeper import Keeper
from ingest.retention import ensure
from ingest.writer import InfluxV1Writer, Writer
from telemetry.storage import DAY_MS, HOUR_MS, OCCUPANCY_1D, OCCUPANCY_1H, Tier, day_of, hour_of
from tests.conftest import IngestFactory
from tests.ingest import rollup_reference as ref
from tests.mqtt import publish
from tests.payloads import charger, now_ms, occupancy, t
from tests.rig import Influxd, Mosquitto, until, wait_for

S = "PL-KT-001"
FAST = {"INGEST_ROLLUP_TICK_SECONDS": "0.2"}


def visits(influxd: Influxd, db: str) -> dict[int, int]:
    return {r["time"]: r["visits"] for r in influxd.rows(f'SELECT visits FROM "rollup"."{OCCUPANCY_1H}"', db)}


def rolled_up(influxd: Influxd, db: str, now_ms: int | None = None) -> bool:
    """The stored rollups equal the definition computed from the raw points (and there are some), the
    days that have ended by ``now_ms`` (default: now) included."""
    want = ref.expected(influxd, db, now_ms=now_ms)
    got = ref.stored(influxd, db)
    if not want or got.keys() != want.keys():
        return False
    ref.assert_equal(got, want)
    return True


def test_keeper_recomputes_a_closed_hour_when_a_late_reading_lands_in_it_and_the_next_hour(
        broker: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    start_ingest(**FAST)
    h = hour_of(now_ms()) - 3 * HOUR_MS
    minute = 60_000
    publish(broker.port, [(t(S, "occupancy"), occupancy(1, 2, ts=h + 10 * minute, entries=10, exits=8)),
                          (t(S, "occupancy"), occupancy(2, 3, ts=h + 20 * minute, entries=20, exits=17)),
                          (t(S, "occupancy"), occupancy(4, 1, ts=h + 70 * minute, entries=30, exits=29)),
                          (t(S, "charger"), charger(5, ts=h + 71 * minute, energy_wh=100.0))])
    wait_for(lambda: visits(influxd, db) == {h: 10, h + HOUR_MS: 10}, what="both hours rolled up")
    # the reading of seq 3 arrives late (a backlog): its hour and the step after it change
    publish(broker.port, [(t(S, "occupancy"), occupancy(3, 2, ts=h + 50 * minute, entries=25, exits=20))])
    wait_for(lambda: visits(influxd, db) == {h: 15, h + HOUR_MS: 5}, what="the late hour and the next recomputed")
    wait_for(lambda: rolled_up(influxd, db), what="every rollup field equal to the definition")


def test_keeper_sigkill_between_the_raw_write_and_the_recompute_recomputes_after_restart(
        broker: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    ingest = start_ingest(INGEST_ROLLUP_TICK_SECONDS="600")  # the keeper does not look before the kill
    h = hour_of(now_ms()) - 2 * HOUR_MS
    publish(broker.port, [(t(S, "occupancy"), occupancy(i, i % 5, ts=h + i * 60_000, entries=3 * i, exits=i))
                          for i in range(1, 31)])
    wait_for(lambda: influxd.count("occupancy", "people", db) == 30, what="the raw readings written")
    ingest.kill()
    assert ref.stored(influxd, db) == {}
    assert (ingest.dir / "spool" / "rollup.journal").read_text().split() == [S, str(h)]
    ingest.env.update(FAST)
    ingest.restart()
    wait_for(lambda: rolled_up(influxd, db), what="the journaled hour rolled up after the restart")
    assert visits(influxd, db) == {h: 87}


async def test_keeper_rolls_an_open_hour_up_once_it_has_closed_and_the_grace_has_passed(
        influxd: Influxd, db: str, tmp_path: Path) -> None:
    h = day_of(now_ms()) - DAY_MS + 10 * HOUR_MS  # yesterday's 10:00 Beijing: not its day's last hour
    clock = [h / 1000 + 1800]  # in the middle of the hour, by the keeper's clock
    influxd.write(db, "\n".join(
        f"occupancy,station={S},district=kongtong,kind=smart people=1i,capacity=20i,entries={i}i,exits={i}i,"
        f"seq={i}i {h + i * 60_000}" for i in range(30)))
    async with InfluxQL(url=influxd.url, database=db) as ql, InfluxV1Writer(url=influxd.url, database=db) as w:
        await ensure(ql, database=db, days={Tier.RAW: 400, Tier.ROLLUP: 3650, Tier.MONITOR: 30})
        journal = Journal(path=tmp_path / "journal")
        keeper = Keeper(ql=ql, writer=w, journal=journal, grace=30, clock=lambda: clock[0])
        await keeper.touched({(S, h)})
        keeper.settled({(S, h)}, written=True)
        assert await keeper.run_once() == 0
        clock[0] = (h + HOUR_MS) / 1000 + 29  # closed, within the grace
        assert await keeper.run_once() == 0
        assert ref.stored(influxd, db) == {}
        clock[0] += 2
        assert await keeper.run_once() == 1
        await until(lambda: rolled_up(influxd, db, now_ms=int(clock[0] * 1000)), what="the hour rolled up")
        # the day goes on (by the keeper's clock): its last hour waits in the journal, due once it has closed
        last = (S, daily.last_hour(h))
        assert ref.stored(influxd, db).keys() == ref.expected(influxd, db, now_ms=int(clock[0] * 1000)).keys()
        assert not any(m == OCCUPANCY_1D for m, _, _ in ref.stored(influxd, db)), "no point of a day going on"
        assert (keeper.pending, journal.pending) == (1, frozenset({last}))
        clock[0] = (last[1] + HOUR_MS) / 1000 + 29
        assert await keeper.run_once() == 0
        clock[0] += 2
        assert await keeper.run_once() == 1  # a station silent in the day's last hour gets its day
        await until(lambda: rolled_up(influxd, db, now_ms=int(clock[0] * 1000)), what="the day rolled up")
        assert any(m == OCCUPANCY_1D for m, _, _ in ref.stored(influxd, db))
        assert keeper.pending == 0
        assert journal.pending == frozenset()


def test_keeper_recomputes_the_hours_of_spooled_batches_once_influxdb_takes_them_back(
        broker: Mosquitto, own_influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    ingest = start_ingest(influx=own_influxd, **FAST)
    wait_for(lambda: own_influxd.query(f'SHOW RETENTION POLICIES ON "{db}"'), what="the tiers created")
    own_influxd.stop()
    h = hour_of(now_ms()) - 4 * HOUR_MS
    publish(broker.port, [(t(S, "occupancy"), occupancy(i, 1, ts=h + i * 60_000, entries=2 * i, exits=i))
                          for i in range(1, 21)])
    wait_for(lambda: ingest.health()["spool_batches"] > 0, what="batches spooled while InfluxDB is down")
    own_influxd.start()
    wait_for(lambda: ingest.health()["spool_batches"] == 0, timeout=60, what="the spool drained")
    wait_for(lambda: rolled_up(own_influxd, db), what="the spooled hour rolled up")
    assert visits(own_influxd, db) == {h: 38}


class HeldRollupWrites:
    """A writer whose rollup writes wait for ``release``: the seam where a slow recompute's write lands late."""

    def __init__(self, writer: Writer) -> None:
        self.writer, self.release, self.holding = writer, asyncio.Event(), asyncio.Event()

    async def write(self, body: bytes, tier: Tier = Tier.RAW) -> None:
        if tier is Tier.ROLLUP:
            self.holding.set()
            await self.release.wait()
        await self.writer.write(body, tier)

    async def ready(self) -> bool:
        return await self.writer.ready()

    async def aclose(self) -> None:
        await self.writer.aclose()


def occupancy_line(i: int, ts: int, entries: int) -> str:
    return (f"occupancy,station={S},district=kongtong,kind=smart people=1i,capacity=20i,entries={entries}i,"
            f"exits=0i,seq={i}i {ts}")


async def test_keeper_second_recompute_after_the_settle_delay_mends_a_replica_race(
        influxd: Influxd, db: str, tmp_path: Path) -> None:
    """Replica A reads a late hour before B's write lands and writes after B's recompute: B's second
    recompute, ``settle`` seconds after its first, overwrites A's stale point."""
    h = hour_of(now_ms()) - 3 * HOUR_MS
    influxd.write(db, "\n".join(occupancy_line(i, h + i * 60_000, 10 * i) for i in range(1, 4)))
    clock = [(h + 3 * HOUR_MS) / 1000 + 60]  # every replica's, the hour long closed
    async with InfluxQL(url=influxd.url, database=db) as ql, InfluxV1Writer(url=influxd.url, database=db) as w:
        await ensure(ql, database=db, days={Tier.RAW: 400, Tier.ROLLUP: 3650, Tier.MONITOR: 30})
        held = HeldRollupWrites(w)
        a = Keeper(ql=ql, writer=held, journal=Journal(path=tmp_path / "a"), settle=10, clock=lambda: clock[0])
        journal = Journal(path=tmp_path / "b")
        b = Keeper(ql=ql, writer=w, journal=journal, settle=10, clock=lambda: clock[0])
        await a.touched({(S, h)})
        a.settled({(S, h)}, written=True)
        slow = asyncio.create_task(a.run_once())
        await held.holding.wait()  # A has read the hour: visits 20, and its write has not landed
        influxd.write(db, occupancy_line(4, h + 40 * 60_000, 70))  # B's late reading
        await b.touched({(S, h)})
        b.settled({(S, h)}, written=True)
        assert await b.run_once() == 1
        assert visits(influxd, db) == {h: 60}
        held.release.set()
        assert await slow == 1
        assert visits(influxd, db) == {h: 20}, "A's stale point overwrote B's"
        assert b.pending == 1
        assert journal.pending == {(S, h)}, "journaled until the second recompute"
        clock[0] += 9
        assert await b.run_once() == 0, "not before the settle delay"
        clock[0] += 2
        assert await b.run_once() == 1
        assert visits(influxd, db) == {h: 60}
        assert rolled_up(influxd, db)
        assert b.pending == 0
        assert journal.pending == frozenset()


async def test_keeper_computes_an_ended_day_once_for_all_its_late_hours(
        influxd: Influxd, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog of three hours of an ended day: three hourly recomputes, one daily one, all exact."""
    day = day_of(now_ms()) - DAY_MS
    hours = [day + h * HOUR_MS for h in (3, 9, 15)]
    influxd.write(db, "\n".join(
        f"occupancy,station={S},district=kongtong,kind=smart people=1i,capacity=20i,entries={i}i,exits={i}i,"
        f"seq={i}i {h + i * 60_000}" for h in hours for i in range(1, 11)))
    computed: list[int] = []
    real = daily.compute

    async def counted(*args: Any, **kwargs: Any) -> list[Any]:
        computed.append(args[1])
        return await real(*args, **kwargs)

    monkeypatch.setattr(daily, "compute", counted)
    async with InfluxQL(url=influxd.url, database=db) as ql, InfluxV1Writer(url=influxd.url, database=db) as w:
        await ensure(ql, database=db, days={Tier.RAW: 400, Tier.ROLLUP: 3650, Tier.MONITOR: 30})
        journal = Journal(path=tmp_path / "journal")
        keeper = Keeper(ql=ql, writer=w, journal=journal, grace=0)
        pairs = {(S, h) for h in hours}
        await keeper.touched(pairs)
        keeper.settled(pairs, written=True)
        assert await keeper.run_once() == 3
    assert len(computed) == 1, computed
    assert rolled_up(influxd, db)
    assert any(m == OCCUPANCY_1D for m, _, _ in ref.stored(influxd, db))
