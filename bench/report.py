"""The service report's speed: a month of the 45 stations (target under 10 s) and a year's summary (under 30 s).

    .venv/bin/python -m bench.report [--year 2025] [--runs 3]
    .venv/bin/python -m bench.report --keep /tmp/bench-report     # keep the data: a second run reuses it
    .venv/bin/python -m bench.report --url http://127.0.0.1:8086 --db yizhan --year 2025 --month 2025-12

Without ``--url`` it starts its own influxd, writes a year of raw readings for every instrumented
station of the registry (one reading per device and hour, enough for the rebuild to give every
series a rollup point in every hour: the rollups of a full year), and runs ingest's real rebuild
(``python -m ingest rollup``) over them. Then ``python -m dashboards report`` makes the month's and
the year's PDF ``--runs`` times each, and the wall time of each command (figures queried from the
rollups plus the PDF) is printed with the size of the PDF. The rollups' point count and the rebuild
time are printed too.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from dashboards.report.period import Period
from ingest.lineprotocol import reading
from telemetry import registry
from telemetry.contract import Charger, Occupancy, Temperature
from telemetry.registry import Station
from telemetry.storage import HOUR_MS, ROLLUPS, Tier, qualified
from tests.rig import ROOT, Influxd, child_env

_READING_MS = 7_000


def _hourly(station: Station, start_ms: int, end_ms: int) -> Iterator[str]:
    """One reading per device and hour at plausible values; door counter and energy meters only rise."""
    rng = random.Random(station.id)
    entries, energy, seq = 0, dict.fromkeys((c.id for c in station.chargers), 0.0), 0
    for hour in range(start_ms, end_ms, HOUR_MS):
        ts = hour + _READING_MS
        entries += rng.randint(0, max(1, station.capacity))
        seq += 1
        yield reading(station, Occupancy(ts=ts, seq=seq, people=rng.randint(0, station.capacity), entries=entries,
                                         exits=entries))
        for c in station.chargers:
            energy[c.id] += rng.uniform(0, 2000)
            seq += 1
            yield reading(station, Charger(ts=ts, seq=seq, charger_id=c.id, sockets_in_use=rng.randint(0, c.sockets),
                                           power_w=rng.uniform(0, 2000), energy_wh=round(energy[c.id], 1)))
        for sensor in station.sensors:
            seq += 1
            yield reading(station, Temperature(ts=ts, seq=seq, sensor=sensor, celsius=round(rng.uniform(12, 22), 2)))


def prepare(influxd: Influxd, db: str, year: Period) -> None:
    lines = [line for s in registry.load().reporting for line in _hourly(s, year.start_ms, year.end_ms)]
    started = time.perf_counter()
    for i in range(0, len(lines), 20_000):
        influxd.write(db, "\n".join(lines[i:i + 20_000]))
    print(f"raw: {len(lines):,} readings written in {time.perf_counter() - started:.1f} s")
    env = child_env({"INFLUX_URL": influxd.url, "INFLUX_DB": db, "INGEST_SPOOL_DIR": str(influxd.dir / "spool"),
                     "INGEST_RETENTION_RAW_DAYS": "3650"})  # the raw year stays while it is rolled up
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ingest", "rollup", "--since", f"{year.start:%Y-%m-%d}",
                    "--until", f"{year.end:%Y-%m-%d}"], cwd=ROOT, env=env, check=True)
    points = sum(int(s["values"][0][1]) for m in ROLLUPS
                 for s in influxd.query(f'SELECT count("readings") FROM {qualified(Tier.ROLLUP, m)}', db))
    print(f"rollups: {points:,} hourly points rebuilt in {time.perf_counter() - started:.1f} s")


def timed_report(env: dict[str, str], flag: str, period: str, out: Path, runs: int) -> None:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dashboards", "report", flag, period, "--out", str(out)], cwd=ROOT,
                       env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    print(f"report {flag} {period}: median {statistics.median(times):.2f} s, best {min(times):.2f} s over {runs} "
          f"runs (whole command: start-up, queries, PDF), {out.stat().st_size / 1024:.0f} kB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="an influxd holding rollups already (default: start one and build them)")
    p.add_argument("--db", default="yizhan")
    p.add_argument("--year", type=int, default=2025)
    p.add_argument("--month", help="the month to report (default: the year's December)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--keep", type=Path, help="keep influxd's data in this directory; a run that finds it reuses it")
    args = p.parse_args()
    year = Period(args.year)
    month = args.month or f"{args.year}-12"
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        work = args.keep or Path(tmp)
        influxd = None if args.url else Influxd(work / "influxd").start()
        try:
            db = args.db if args.url else f"report_{args.year}"
            prepared = work / f"prepared-{args.year}"
            if influxd is not None and not prepared.exists():
                prepare(influxd, db, year)
                prepared.touch()
            env = child_env({"INFLUX_URL": args.url or (influxd.url if influxd else ""), "INFLUX_DB": db})
            print(f"cores: {os.cpu_count()}, stations: {len(registry.load().reporting)}")
            timed_report(env, "--month", month, work / "month.pdf", args.runs)
            timed_report(env, "--year", str(args.year), work / "year.pdf", args.runs)
        finally:
            if influxd is not None:
                influxd.stop()


if __name__ == "__main__":
    main()
