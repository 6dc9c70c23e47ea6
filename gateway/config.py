"""Settings of the gateway, from the environment (see docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field

from telemetry.settings import InfluxSettings, ListenAddr, LogSettings, MqttSettings, RegistrySettings


def _default_tokens() -> Path:
    return platformdirs.user_config_path("yizhan") / "gateway-tokens.yaml"


class Settings(MqttSettings, InfluxSettings, RegistrySettings, LogSettings):
    gateway_addr: ListenAddr = "127.0.0.1:8000"
    gateway_tokens_file: Path = Field(default_factory=_default_tokens)
    station_password_file: Path | None = None
    """Mosquitto's password file (``python -m gateway provision``): HTTP ingress checks station passwords in it."""
    gateway_reports_dir: Path = Path("reports")
    """The monthly reports (``YYYY-MM.pdf``) that ``python -m dashboards report-scheduler`` writes."""
    gateway_mqtt_client_id: str = ""
    """Empty: a random id. The gateway keeps no session; its state comes from retained messages and InfluxDB."""

