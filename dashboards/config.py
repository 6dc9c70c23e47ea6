"""Settings of ``python -m dashboards``, from the environment (see docs/dashboards.md).

``build`` needs none (``STATIONS_FILE`` chooses the registry). ``push`` needs ``GRAFANA_URL`` and
``GRAFANA_TOKEN`` (a service account token with the Admin role), and configures the datasource
from the shared ``INFLUX_*`` settings as Grafana must reach InfluxDB.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr

from telemetry.settings import HttpUrl, InfluxSettings, LogSettings, RegistrySettings


class Settings(InfluxSettings, RegistrySettings, LogSettings):
    grafana_url: HttpUrl | None = None
    grafana_token: SecretStr | None = None
    grafana_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    alert_webhook_url: HttpUrl | None = None

