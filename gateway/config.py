"""Settings of the gateway, from the environment (see docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, field_validator

from telemetry.settings import InfluxSettings, LogSettings, MqttSettings, RegistrySettings, parse_addr


def _default_tokens() -> Path:
    return platformdirs.user_config_path("yizhan") / "gateway-tokens.yaml"


class Settings(MqttSettings, InfluxSettings, RegistrySettings, LogSettings):
    gateway_addr: str = "127.0.0.1:8000"
    gateway_tokens_file: Path = Field(default_factory=_default_tokens)
    station_password_file: Path | None = None
    """Mosquitto's password file (``python -m gateway provision``): HTTP ingress checks station passwords in it."""
    gateway_mqtt_client_id: str = ""
    """Empty: a random id. The gateway keeps no session; its state comes from retained messages and InfluxDB."""

    @field_validator("gateway_addr")
    @classmethod
    def _valid_gateway_addr(cls, value: str) -> str:
        parse_addr(value)
        return value
