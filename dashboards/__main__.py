"""``python -m dashboards build|push|report|report-scheduler``: read settings, set up logging, run the command."""

from __future__ import annotations

import sys

from dashboards import cli
from dashboards.config import Settings
from telemetry import logs
from telemetry.registry import RegistryError
from telemetry.settings import load_or_exit

if __name__ == "__main__":
    args = cli.parser().parse_args()
    settings = load_or_exit(Settings, "dashboards")
    logs.setup(settings.log_format, settings.log_level)
    try:
        sys.exit(cli.run(args, settings))
    except RegistryError as exc:
        raise SystemExit(f"dashboards: {exc}") from None
