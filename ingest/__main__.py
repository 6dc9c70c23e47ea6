"""``python -m ingest``: read settings, set up logging, run the service until SIGTERM or SIGINT."""

from __future__ import annotations

from ingest.config import Settings
from ingest.service import serve
from telemetry import logs
from telemetry.registry import RegistryError
from telemetry.runner import run_until_signalled
from telemetry.settings import load_or_exit

if __name__ == "__main__":
    settings = load_or_exit(Settings, "ingest")
    logs.setup(settings.log_format, settings.log_level)
    try:
        run_until_signalled(lambda stop: serve(settings, stop=stop))
    except RegistryError as exc:
        raise SystemExit(f"ingest: {exc}") from None
