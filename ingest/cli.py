"""The command line of ``python -m ingest``: ``run`` (the default) and ``rollup`` (rebuild rollups)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TextIO

from ingest.config import Settings
from ingest.influxql import InfluxQL
from ingest.rebuild import Progress, Summary, rebuild
from ingest.retention import ensure
from ingest.service import serve
from ingest.writer import Writer, make_writer
from telemetry import logs
from telemetry.registry import RegistryError
from telemetry.runner import run_until_signalled
from telemetry.settings import load_or_exit
from telemetry.storage import BEIJING


def _date(text: str) -> int:
    """``2026-01-01`` (midnight in Beijing) or RFC 3339 with an offset -> epoch ms."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 2026-01-01 or 2026-01-01T08:00:00+08:00, got {text!r}") from exc
    if value.tzinfo is None:
        if len(text) > 10:
            raise argparse.ArgumentTypeError(f"a time needs an offset (+08:00 or Z): {text!r}")
        value = value.replace(tzinfo=BEIJING)
    return int(value.timestamp() * 1000)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ingest", description="yizhan ingest: MQTT readings into InfluxDB, "
                                "and the hourly rollups kept from them. Settings come from the environment "
                                "(docs/configuration.md).")
    sub = p.add_subparsers(dest="command", metavar="{run,rollup}")
    sub.add_parser("run", help="run the service (the default) until SIGTERM or SIGINT")
    r = sub.add_parser("rollup", help="rebuild the hourly and daily rollups of a past range from the raw points stored",
                       description="Recompute the rollups of the closed hours in [--since, --until) and write "
                       "them to the rollup retention policy. Idempotent; an interrupted run of the same range "
                       "resumes from its checkpoint.")
    r.add_argument("--since", type=_date, required=True, help="first day (Beijing) or time, e.g. 2026-01-01")
    r.add_argument("--until", type=_date, help="day or time to stop before (default: now; never past the current "
                   "hour)")
    r.add_argument("--stations", help="comma-separated station ids (default: all)")
    r.add_argument("--chunk-hours", type=int, default=24, help="hours computed at once (default 24)")
    r.add_argument("--concurrency", type=int, default=2, help="chunks computed at the same time (default 2; at "
                   "least --workers)")
    r.add_argument("--workers", type=int, default=1, help="worker processes computing chunks (default 1: this "
                   "process); the counting of a chunk is single-threaded, so more cores take more at once")
    r.add_argument("--restart", action="store_true", help="ignore the checkpoint of an earlier run")
    r.add_argument("--daily-only", action="store_true", help="recompute only the daily rollups, from the hourly "
                   "ones stored (after upgrading from a release without daily rollups: no raw point is read)")
    return p


class _Bar:
    """A progress bar on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.tty, self.last = out, out.isatty(), 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last < 5 and p.hours_done < p.hours_total:
            return
        self.last = now
        elapsed = time.time() - p.started
        eta = elapsed / p.fraction - elapsed if p.fraction else 0.0
        text = (f"{p.fraction:4.0%} {p.hours_done}/{p.hours_total} hours, {p.points} hourly + {p.day_points} daily "
                f"points, {elapsed:.0f} s, {eta:.0f} s to go")
        if self.tty:
            filled = int(p.fraction * 30)
            self.out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}")
            if p.hours_done >= p.hours_total:
                self.out.write("\n")
        else:
            self.out.write(f"rollup: {text}\n")
        self.out.flush()


@asynccontextmanager
async def clients(settings: Settings) -> AsyncIterator[tuple[InfluxQL, Writer]]:
    """The query client and writer of a rebuild (its own process's, and each worker process's)."""
    async with InfluxQL.from_settings(settings) as ql:
        writer = make_writer(settings)
        try:
            yield ql, writer
        finally:
            await writer.aclose()


async def _rollup(settings: Settings, args: argparse.Namespace) -> Summary:
    async with clients(settings) as (ql, writer):
        if not settings.influx_v2:
            await ensure(ql, database=settings.influx_db, days=settings.retention_days)
        checkpoint = settings.rebuild_checkpoint
        if args.restart:
            checkpoint.unlink(missing_ok=True)
        stations = frozenset(s.strip() for s in args.stations.split(",") if s.strip()) if args.stations else None
        return await rebuild(ql=ql, writer=writer, database=settings.influx_db, since_ms=args.since,
                             until_ms=args.until, stations=stations, chunk_hours=args.chunk_hours,
                             concurrency=args.concurrency, checkpoint=checkpoint, on_progress=_Bar(sys.stderr),
                             workers=args.workers, clients=functools.partial(clients, settings),
                             daily_only=args.daily_only)


def _print_summary(s: Summary) -> None:
    def day(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, BEIJING).isoformat(timespec="minutes")

    resumed = f" (resumed at {day(s.resumed_at_ms)})" if s.resumed_at_ms is not None else ""
    print(f"rollup: {s.hours} hours from {day(s.start_ms)} to {day(s.end_ms)}{resumed}: "  # noqa: T201
          f"{s.points} hourly and {s.day_points} daily rollup points written in {s.seconds:.1f} s")


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = load_or_exit(Settings, "ingest")
    logs.setup(settings.log_format, settings.log_level)
    if args.command == "rollup":
        if min(args.chunk_hours, args.concurrency, args.workers) < 1:
            raise SystemExit("ingest rollup: --chunk-hours, --concurrency and --workers must be at least 1")
        try:
            _print_summary(asyncio.run(_rollup(settings, args)))
        except KeyboardInterrupt:
            raise SystemExit("\ningest rollup: interrupted; run the same command again to resume") from None
        return
    try:
        run_until_signalled(lambda stop: serve(settings, stop=stop))
    except RegistryError as exc:
        raise SystemExit(f"ingest: {exc}") from None
