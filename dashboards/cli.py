"""The commands of ``python -m dashboards``: ``build`` and ``push`` (the entry point only parses)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards import provisioning, push
from dashboards.config import Settings
from dashboards.exceptions import ConfigError, DashboardsError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dashboards", description="Grafana dashboards and alert rules as code.")
    sub = p.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write the provisioning files (dashboards JSON, datasource, alerting)")
    build.add_argument("--output", type=Path, default=provisioning.DEFAULT_DIR,
                       help="directory (default: dashboards/provisioning)")
    build.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files are stale")
    sub.add_parser("push", help="create or update everything in GRAFANA_URL (idempotent)")
    return p


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
