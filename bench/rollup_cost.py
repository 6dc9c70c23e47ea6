"""What the hourly rollups cost: keeping them current (ingest CPU per reading) and rebuilding them.

    .venv/bin/python -m bench.rollup_cost [--stations 45] [--days 30] [--concurrency 2] [--keep-stations 500]
        [--workers 1,2] [--no-compare] [--no-keep]

Writes ``--days`` of the registry's first ``--stations`` reporting stations at the agents' real
rates (occupancy every 60 s and on change, each charger every 30 s, each sensor every 60 s) as line
protocol into a fresh ``influxd`` (tests/rig.py), then measures:

1. **rebuild**: ``ingest.rebuild.rebuild`` over the whole range, twice: all in InfluxDB (as the
   keeper computes, ``columns=False``), then as the rebuild does (minutes and steps counted in
   Python from the raw columns read back as MessagePack): wall time, points, influxd's CPU and this
   process's, and that time scaled to a year (the work is per raw point: the queries scan each
   point a fixed number of times), against the target of 10 minutes for a year of 45 stations
   (``--no-compare``: the second only), the second once per number of worker processes in
   ``--workers`` (``1,2``: in this process, then in two; their CPU counted with this process's);
2. **keeping current**: at 10,000 readings/s (about 80,000 stations at these rates) the keeper
   recomputes each closed hour of 500 stations at a time (its ``max_pairs``). So a second influxd
   gets three hours of ``--keep-stations`` (500) stations, and the keeper (``ingest.keeper.Keeper``)
   recomputes the middle hour of all of them as ingest does when it closes, in this process: its CPU
   time (``process_time``:
   building statements, decoding the hourly results, writing the points) per raw reading covered,
   plus the hot path's share (the (station, hour) pair added per reading), as a fraction of
   ingest's CPU per reading, against the target of 5%. Ingest's CPU per reading is 8.8 µs on a
   quiet machine (``--ingest-us``: the low end measured by ``bench.ingest_throughput``,
   docs/scaling.md, when ``bench.hot_path`` gave 4.6 µs a message); a busy machine slows both
   alike, so the run also measures ``bench.hot_path`` and scales 8.8 µs by it. influxd's own CPU
   for the recompute is printed too (it is spent on the database's cores, not ingest's).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import resource
import tempfile
import time
import timeit
from collections.abc import Iterator
from pathlib import Path

from bench import hot_path
from ingest import cli
from ingest.config import Settings
from ingest.influxql import InfluxQL
from ingest.journal import Journal
from ingest.keeper import Keeper
from ingest.rebuild import rebuild
from ingest.retention import ensure
from ingest.writer import InfluxV1Writer
from telemetry import registry
from telemetry.registry import Station
from telemetry.storage import HOUR_MS, Tier, hour_of
from tests.rig import Influxd

DAY_MS = 24 * HOUR_MS
HOT_PATH_QUIET_US = 4.6
"""``bench.hot_path``'s µs per single-reading message when ingest took 8.8 µs per reading (docs/scaling.md)."""
DAYS = {Tier.RAW: 400, Tier.ROLLUP: 3650, Tier.MONITOR: 30}
WRITE_LINES = 20_000


def day_lines(station: Station, day_start: int, rnd: random.Random, state: dict[str, float],
              minutes: int = 1440) -> Iterator[str]:
    """One day (its first ``minutes``) of one station at the agents' rates, in time order per series."""
    tags = f"station={station.id},district={station.district},kind={station.kind.value}"
    people = int(state.get("people", 0))
    for minute in range(minutes):
        ts = day_start + minute * 60_000 + 137
        for _ in range(1 + (rnd.random() < 0.3)):  # a reading a minute, and one on about 30% of changes
            people = max(0, min(station.capacity, people + rnd.choice((-1, 0, 1))))
            state["entries"] = state.get("entries", 0) + rnd.choice((0, 1))
            entries = int(state["entries"])
            yield (f"occupancy,{tags} people={people}i,capacity={station.capacity}i,entries={entries}i,"
                   f"exits={entries}i,seq={minute}i {ts}")
            ts += 20_000
        for c in station.chargers:
            for half in (0, 30_000):
                state[c.id] = state.get(c.id, 0.0) + rnd.random() * 3
                yield (f"charger,{tags},charger={c.id} sockets_in_use={rnd.randrange(c.sockets + 1)}i,"
                       f"sockets_total={c.sockets}i,power_w={rnd.random() * 300:.1f},energy_wh={state[c.id]:.1f},"
                       f"seq={minute}i {day_start + minute * 60_000 + half + 500}")
        for sensor in station.sensors:
            yield (f"temperature,{tags},sensor={sensor} celsius={15 + rnd.random() * 5:.2f},seq={minute}i "
                   f"{day_start + minute * 60_000 + 900}")
    state["people"] = people


async def write_data(influxd: Influxd, db: str, stations: list[Station], start: int, days: int,
                     hours: int = 24) -> int:
    """``days`` days (the first ``hours`` of each) of the stations, two writes in flight."""
    rnd = random.Random(7)
    states: dict[str, dict[str, float]] = {s.id: {} for s in stations}
    points = 0
    async with InfluxV1Writer(url=influxd.url, database=db, timeout=120) as writer:
        pending: set[asyncio.Task[None]] = set()
        for day in range(days):
            for station in stations:
                lines = list(day_lines(station, start + day * DAY_MS, rnd, states[station.id], hours * 60))
                points += len(lines)
                for at in range(0, len(lines), WRITE_LINES):
                    if len(pending) >= 2:
                        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    pending.add(asyncio.create_task(writer.write("\n".join(lines[at:at + WRITE_LINES]).encode())))
        await asyncio.gather(*pending)
    return points


def synthetic_stations(n: int) -> list[Station]:
    """``n`` stations like the registry's first smart one (two chargers, two sensors), numbered."""
    model = next(s for s in registry.load().reporting if len(s.chargers) == 2 and len(s.sensors) == 2)
    return [model.model_copy(update={"id": f"PL-KT-{i:04d}"}) for i in range(n)]


def influxd_cpu(influxd: Influxd) -> float:
    if influxd.proc is None:
        raise RuntimeError("influxd is not running")
    fields = Path(f"/proc/{influxd.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hot_path_us() -> float:
    """The pipeline's per-reading share: one (station, hour) pair added to the batch's set."""
    hours: set[tuple[str, int]] = set()
    station, ts = "PL-KT-001", 1_795_000_123_456
    n = 1_000_000
    took = min(timeit.repeat(lambda: hours.add((station, ts - ts % HOUR_MS)), number=n, repeat=3))
    empty = min(timeit.repeat(lambda: None, number=n, repeat=3))
    return (took - empty) / n * 1e6


async def keep_current(tmp: Path, n_stations: int) -> dict[str, float]:
    """The keeper recomputing one closed hour of ``n_stations`` stations (one ``max_pairs`` window)."""
    stations = synthetic_stations(n_stations)
    hour = hour_of(int(time.time() * 1000)) - 3 * HOUR_MS
    influxd = Influxd(tmp / "influxd-keep").start()
    try:
        db = "keep"
        async with InfluxQL(url=influxd.url, database=db) as ql:
            await ensure(ql, database=db, days=DAYS)
        day = hour - hour % DAY_MS
        readings = await write_data(influxd, db, stations, day, 1, hours=(hour - day) // HOUR_MS + 2)
        in_hour = influxd.count("occupancy", "seq", db, f"WHERE time >= {hour}ms AND time < {hour + HOUR_MS}ms") + \
            influxd.count("charger", "seq", db, f"WHERE time >= {hour}ms AND time < {hour + HOUR_MS}ms") + \
            influxd.count("temperature", "seq", db, f"WHERE time >= {hour}ms AND time < {hour + HOUR_MS}ms")
        async with InfluxQL(url=influxd.url, database=db) as ql, \
                InfluxV1Writer(url=influxd.url, database=db) as writer:
            clock = [(hour + HOUR_MS // 2) / 1000]  # the readings were written while the hour was open
            keeper = Keeper(ql=ql, writer=writer, journal=Journal(path=tmp / "journal"), grace=0,
                            max_pairs=n_stations, clock=lambda: clock[0])
            pairs = {(s.id, hour) for s in stations}
            cpu0, wall0, db0 = time.process_time(), time.monotonic(), influxd_cpu(influxd)
            await keeper.touched(pairs)
            keeper.settled(pairs, written=True)
            clock[0] = (hour + HOUR_MS) / 1000  # closed
            while keeper.recomputed < len(pairs):  # the day's last hour may stay journaled for its day
                await keeper.run_once()
            cpu, wall, db_cpu = time.process_time() - cpu0, time.monotonic() - wall0, influxd_cpu(influxd) - db0
    finally:
        influxd.stop()
    return {"stations": n_stations, "readings": in_hour, "written": readings, "cpu_s": cpu, "wall_s": wall,
            "us_per_reading": cpu / in_hour * 1e6, "influxd_us_per_reading": db_cpu / in_hour * 1e6}


def _own_cpu() -> float:
    """This process's CPU and that of its children that have ended (the rebuild's worker processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


async def rebuild_once(influxd: Influxd, db: str, start: int, days: int, concurrency: int, points: int,
                       n_stations: int, *, columns: bool, workers: int = 1) -> None:
    """One rebuild of the whole range: wall time, this process's (and its workers') and influxd's CPU, a
    year projected."""
    cpu0, db0 = _own_cpu(), influxd_cpu(influxd)
    settings = Settings(influx_url=influxd.url, influx_db=db)
    async with InfluxQL(url=influxd.url, database=db) as ql, \
            InfluxV1Writer(url=influxd.url, database=db, timeout=300) as writer:
        summary = await rebuild(ql=ql, writer=writer, database=db, since_ms=start, until_ms=start + days * DAY_MS,
                                concurrency=concurrency, columns=columns, workers=workers,
                                clients=functools.partial(cli.clients, settings))
    cpu, db_cpu = _own_cpu() - cpu0, influxd_cpu(influxd) - db0
    scale = 365 / days * 45 / n_stations
    year, year_cpu = summary.seconds * scale, (cpu + db_cpu) * scale
    way = "minutes and steps in Python (msgpack columns)" if columns else "all in InfluxDB (as the keeper)"
    way += f", {workers} worker processes" if workers > 1 else ""
    print(f"rebuild, {way}: {summary.hours} hours, {summary.points:,} rollup points in {summary.seconds:.1f} s "
          f"({points / summary.seconds:,.0f} raw points/s, concurrency {concurrency}); CPU: influxd {db_cpu:.1f} s "
          f"({db_cpu / points * 1e6:.2f} µs a point), rebuild process {cpu:.1f} s ({cpu / points * 1e6:.2f} µs a "
          f"point); scaled to a year of 45 stations: {year:.0f} s = {year / 60:.1f} min wall (target < 10 min), "
          f"{year_cpu / 60:.1f} min of CPU", flush=True)


async def measure(n_stations: int, days: int, concurrency: int, keep_stations: int, ingest_us: float, *,
                  compare: bool = True, workers: tuple[int, ...] = (1,), keep: bool = True) -> None:
    stations = list(registry.load().reporting)[:n_stations]
    start = hour_of(int(time.time() * 1000)) - (days + 1) * DAY_MS
    start -= start % DAY_MS
    with tempfile.TemporaryDirectory(prefix="yizhan-rollup-cost-") as tmp:
        influxd = Influxd(Path(tmp) / "influxd").start()
        try:
            db = "bench"
            async with InfluxQL(url=influxd.url, database=db) as ql:
                await ensure(ql, database=db, days=DAYS)
            t0 = time.monotonic()
            points = await write_data(influxd, db, stations, start, days)
            print(f"wrote {points:,} raw points ({n_stations} stations, {days} days) in {time.monotonic() - t0:.0f} s",
                  flush=True)
            if compare:
                await rebuild_once(influxd, db, start, days, concurrency, points, n_stations, columns=False)
            for n in workers:
                await rebuild_once(influxd, db, start, days, max(concurrency, n), points, n_stations, columns=True,
                                   workers=n)
        finally:
            influxd.stop()
        if not keep:
            print(f"(load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
            return
        kept = await keep_current(Path(tmp), keep_stations)
    hot = hot_path_us()
    cost = kept["us_per_reading"] + hot
    gauge = await hot_path.measure(50_000, 1, 50, profile=False)
    ingest_now = ingest_us * gauge / HOT_PATH_QUIET_US
    print(f"load gauge: bench.hot_path {gauge:.1f} µs a single-reading message in this run "
          f"({HOT_PATH_QUIET_US} µs on a quiet machine)")
    print(f"keeping current: one hour of {kept['stations']:.0f} stations ({kept['readings']:,.0f} readings) recomputed "
          f"in {kept['wall_s']:.1f} s; ingest CPU {kept['us_per_reading']:.3f} µs per reading + hot path {hot:.3f} µs "
          f"= {cost / ingest_now:.1%} of ingest's CPU per reading in this run ({ingest_now:.1f} µs: {ingest_us} µs "
          f"scaled by bench.hot_path) (target < 5%); at 10,000 readings/s: {cost * 10_000 / 1e6:.2%} of a core; "
          f"influxd CPU {kept['influxd_us_per_reading']:.2f} µs per reading", flush=True)
    print(f"(load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=45)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--keep-stations", type=int, default=500, help="stations of the keeper's hour")
    parser.add_argument("--ingest-us", type=float, default=8.8, help="ingest CPU per reading, µs (docs/scaling.md)")
    parser.add_argument("--no-compare", action="store_true", help="skip the rebuild all in InfluxDB")
    parser.add_argument("--workers", default="1", help="rebuild once per number, comma-separated (e.g. 1,2)")
    parser.add_argument("--no-keep", action="store_true", help="skip the keeper's figure")
    args = parser.parse_args()
    asyncio.run(measure(args.stations, args.days, args.concurrency, args.keep_stations, args.ingest_us,
                        compare=not args.no_compare, workers=tuple(int(n) for n in args.workers.split(",")),
                        keep=not args.no_keep))


if __name__ == "__main__":
    main()
