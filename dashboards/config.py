"""Settings of ``python -m dashboards``, from the environment (see docs/dashboards.md).

``build`` needs none (``STATIONS_FILE`` chooses the registry). ``push`` needs ``GRAFANA_URL`` and
``GRAFANA_TOKEN`` (a service account token with the Admin role), and configures the datasource
from the shared ``INFLUX_*`` settings as Grafana must reach InfluxDB. ``report`` and
``report-scheduler`` read the rollups with the ``INFLUX_*`` settings; the ``REPORT*`` settings
are described in docs/reports.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr

from telemetry.settings import HttpUrl, InfluxSettings, LogSettings, RegistrySettings


class Settings(InfluxSettings, RegistrySettings, LogSettings):
    grafana_url: HttpUrl | None = None
    grafana_token: SecretStr | None = None
    grafana_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    alert_webhook_url: HttpUrl | None = None
    reports_dir: Path = Path("reports")
    """Where ``report-scheduler`` writes ``YYYY-MM.pdf`` (the gateway serves them from there)."""
    report_font_file: Path = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
    report_delay_s: Annotated[float, Field(ge=0, le=7 * 86400)] = 7200.0
    """How long after a month ends its report is made: the last hours' rollups must be written first."""
    report_check_interval_s: Annotated[float, Field(gt=0, le=86400)] = 600.0
    report_backfill_months: Annotated[int, Field(ge=0, le=120)] = 12
    """How many months before the due one ``report-scheduler`` makes when missing (those with data)."""

