"""``python -m ingest``: read settings, set up logging, run the service until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from ingest.config import Settings
from ingest.service import serve
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
    settings = load_or_exit(Settings, "ingest")
    logs.setup(settings.log_format, settings.log_level)
    try:
        asyncio.run(main(settings))
    except RegistryError as exc:
        raise SystemExit(f"ingest: {exc}") from None
