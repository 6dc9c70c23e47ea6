"""``python -m firmware_stubs --station PL-KT-001``: one station's agent on stub drivers.

Read settings, set up logging, run the agent until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse

from firmware_stubs.config import Settings
from firmware_stubs.exceptions import AgentError
from firmware_stubs.service import serve
from telemetry import logs
from telemetry.registry import RegistryError
from telemetry.runner import run_until_signalled
from telemetry.settings import load_or_exit

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m firmware_stubs", description=__doc__.splitlines()[0])
    parser.add_argument("--station", help="the station's id (default: STATION_ID)")
    args = parser.parse_args()
    settings = load_or_exit(Settings, "firmware_stubs")
    if args.station:
        settings = settings.model_copy(update={"station_id": args.station})
    logs.setup(settings.log_format, settings.log_level)
    try:
        run_until_signalled(lambda stop: serve(settings, stop=stop))
    except (AgentError, RegistryError) as exc:
        raise SystemExit(f"firmware_stubs: {exc}") from None
