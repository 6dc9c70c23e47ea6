"""``python -m firmware_stubs --station PL-KT-001``: one station's agent on stub drivers.

Read settings, set up logging, run the agent until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from firmware_stubs.agent import serve
from firmware_stubs.config import Settings
from firmware_stubs.exceptions import AgentError
from telemetry import logs
from telemetry.registry import RegistryError
from telemetry.settings import load_or_exit


async def main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop=stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m firmware_stubs", description=__doc__.splitlines()[0])
    parser.add_argument("--station", help="the station's id (default: STATION_ID)")
    args = parser.parse_args()
    settings = load_or_exit(Settings, "firmware_stubs")
    if args.station:
        settings = settings.model_copy(update={"station_id": args.station})
    logs.setup(settings.log_format, settings.log_level)
    try:
        asyncio.run(main(settings))
    except (AgentError, RegistryError) as exc:
        raise SystemExit(f"firmware_stubs: {exc}") from None
