"""Bytes on disk per station per year, raw readings and rollups, in influxd 1.x's TSM files.

    .venv/bin/python -m bench.storage_size [--stations 5] [--days 7]

Writes ``--days`` of ``--stations`` stations at the agents' real rates (``bench.rollup_cost``'s
generator: occupancy every 60 s and on about 30% of changes, each of two chargers every 30 s,
each of two sensors every 60 s), builds their rollups, lets influxd snapshot its cache and fully
compact the shards (cold durations of 1 s), and prints the size of each retention policy's TSM
files, per station per year (scaled linearly: TSM compresses per series and block, so the size
grows with the points; a 7-day shard is what the raw tier keeps per shard group).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.rollup_cost import DAY_MS, DAYS, synthetic_stations, write_data
from ingest.influxql import InfluxQL
from ingest.rebuild import rebuild
from ingest.retention import ensure
from ingest.writer import InfluxV1Writer
from telemetry.storage import hour_of
from tests.rig import Influxd, wait_for

COLD = '  cache-snapshot-write-cold-duration = "1s"\n  compact-full-write-cold-duration = "1s"'


def tsm_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*.tsm"))


def settled(root: Path, last: list[int]) -> bool:
    """No WAL data left and the TSM size unchanged since the last look."""
    wal = sum(f.stat().st_size for f in root.parent.parent.parent.joinpath("wal").rglob("*.wal"))
    size = tsm_bytes(root)
    done = wal < 1024 and size == last[0] and size > 0
    last[0] = size
    return done


def _settled_check(root: Path) -> Callable[[], bool]:
    last = [0]
    return lambda: settled(root, last)


async def measure(n_stations: int, days: int) -> None:
    stations = synthetic_stations(n_stations)
    start = hour_of(int(time.time() * 1000)) - (days + 1) * DAY_MS
    start -= start % DAY_MS
    with tempfile.TemporaryDirectory(prefix="yizhan-storage-") as tmp:
        influxd = Influxd(Path(tmp) / "influxd", data_options=COLD).start()
        try:
            db = "size"
            async with InfluxQL(url=influxd.url, database=db) as ql:
                await ensure(ql, database=db, days=DAYS)
                points = await write_data(influxd, db, stations, start, days)
                async with InfluxV1Writer(url=influxd.url, database=db) as writer:
                    summary = await rebuild(ql=ql, writer=writer, database=db, since_ms=start,
                                            until_ms=start + days * DAY_MS)
            for rp in ("autogen", "rollup"):
                wait_for(_settled_check(influxd.dir / "data" / db / rp), timeout=300, interval=5,
                         what=f"{rp} compacted")
            per_year = 365 / days / n_stations
            raw, rollups = (tsm_bytes(influxd.dir / "data" / db / rp) for rp in ("autogen", "rollup"))
            print(f"{n_stations} stations, {days} days: {points:,} raw points in {raw:,} bytes "
                  f"({raw / points:.2f} bytes a point), {summary.points:,} rollup points in {rollups:,} bytes "
                  f"({rollups / summary.points:.2f} bytes a point)")
            print(f"per station per year: raw {raw * per_year / 1e6:.1f} MB, rollups {rollups * per_year / 1e6:.2f} MB "
                  f"({summary.points / n_stations / days / 24:.0f} rollup points a station-hour)")
        finally:
            influxd.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=5)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(measure(args.stations, args.days))


if __name__ == "__main__":
    main()
