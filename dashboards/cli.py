"""The commands of ``python -m dashboards``: ``build``, ``push``, ``report`` and ``report-scheduler``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from dashboards import provisioning, push
from dashboards.config import Settings
from dashboards.exceptions import ConfigError, DashboardsError, ReportError
from dashboards.report import scheduler
from dashboards.report.build import build as build_report
from dashboards.report.period import Period
from telemetry.registry import DISTRICT_CODES
from telemetry.runner import run_until_signalled


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dashboards", description="Grafana dashboards and alert rules as code.")
    sub = p.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write the provisioning files (dashboards JSON, datasource, alerting)")
    build.add_argument("--output", type=Path, default=provisioning.DEFAULT_DIR,
                       help="directory (default: dashboards/provisioning)")
    build.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files are stale")
    sub.add_parser("push", help="create or update everything in GRAFANA_URL (idempotent)")
    report = sub.add_parser("report", help="the service report of a month or a year as a PDF (docs/reports.md)")
    period = report.add_mutually_exclusive_group(required=True)
    period.add_argument("--month", type=_period(month=True), help="a calendar month of Beijing time: YYYY-MM")
    period.add_argument("--year", type=_period(month=False), help="a year's summary: YYYY")
    report.add_argument("--district", choices=sorted(DISTRICT_CODES), help="one district (default: the city)")
    report.add_argument("--out", type=Path, required=True, help="the PDF file to write")
    sub.add_parser("report-scheduler", help="make the due reports (last month's, the year's on 1 January, "
                   "missing earlier months with data) into REPORTS_DIR, forever")
    return p


def _period(*, month: bool) -> Callable[[str], Period]:
    def parse(text: str) -> Period:
        try:
            period = Period.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        if period.is_year == month:
            raise argparse.ArgumentTypeError(f"expected {'YYYY-MM' if month else 'YYYY'}, got {text!r}")
        return period
    return parse


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the parsed command; its exit status."""
    match args.command:
        case "build":
            return build(args, settings)
        case "push":
            return run_push(settings)
        case "report":
            return report(args, settings)
        case _:
            registry = settings.load_registry()
            run_until_signalled(lambda stop: scheduler.run(settings, registry, stop))
            return 0


def build(args: argparse.Namespace, settings: Settings) -> int:
    registry = settings.load_registry()
    if args.check:
        stale = provisioning.stale(registry, args.output)
        for name in stale:
            print(f"stale: {args.output / name}", file=sys.stderr)  # noqa: T201 - command output
        return 1 if stale else 0
    for path in provisioning.write(registry, args.output):
        print(path)  # noqa: T201 - command output
    return 0


def run_push(settings: Settings) -> int:
    try:
        changes = push.push(settings, settings.load_registry())
    except DashboardsError as exc:
        print(f"dashboards push: {exc}", file=sys.stderr)  # noqa: T201 - command output
        return 2 if isinstance(exc, ConfigError) else 1
    for change in changes:
        print(change)  # noqa: T201 - command output
    return 0


def report(args: argparse.Namespace, settings: Settings) -> int:
    period: Period = args.month or args.year
    try:
        figures = asyncio.run(build_report(settings, settings.load_registry(), period, args.out,
                                           district=args.district))
    except ReportError as exc:
        print(f"dashboards report: {exc}", file=sys.stderr)  # noqa: T201 - command output
        return 1
    state = "" if figures.has_data else " (no data for this period)"
    print(f"{args.out}{state}")  # noqa: T201 - command output
    return 0
