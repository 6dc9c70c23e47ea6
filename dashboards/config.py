"""Settings of ``python -m dashboards``, from the environment (see docs/dashboards.md).

``build`` needs none (``STATIONS_FILE`` chooses the registry). ``push`` needs ``GRAFANA_URL`` and
``GRAFANA_TOKEN`` (a service account token with the Admin role), and configures the datasource
from the shared ``INFLUX_*`` settings as Grafana must reach InfluxDB.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from telemetry.settings import InfluxSettings, LogSettings, RegistrySettings


class Settings(InfluxSettings, RegistrySettings, LogSettings):
    grafana_url: str | None = None
    grafana_token: SecretStr | None = None
    grafana_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    alert_webhook_url: str | None = None

    @field_validator("grafana_url", "alert_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")
