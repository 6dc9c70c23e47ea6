"""``python -m simulator``: the stations' real agents on simulated drivers and time.

Read settings and flags, set up logging, run the simulation (or ``make-registry``).
"""

from __future__ import annotations

import asyncio
import sys

from firmware_stubs.exceptions import AgentError
from simulator import cli
from simulator.config import Settings, parser
from simulator.exceptions import SimulatorError
from telemetry import logs
from telemetry.registry import RegistryError
from telemetry.settings import load_or_exit

if __name__ == "__main__":
    args = parser().parse_args()
    try:
        if args.command == "make-registry":
            cli.write_registry(args)
            sys.exit(0)
        settings = load_or_exit(Settings, "simulator")
        logs.setup(settings.log_format, settings.log_level)
        asyncio.run(cli.main(args, settings))
    except (SimulatorError, RegistryError, AgentError) as exc:
        raise SystemExit(f"simulator: {exc}") from None
