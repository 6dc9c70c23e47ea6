"""Settings of the ingest service, from the environment (see docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import Field

from telemetry.contract import SUBSCRIPTION
from telemetry.settings import InfluxSettings, ListenAddr, LogSettings, MqttSettings, RegistrySettings
from telemetry.storage import Tier


def _default_spool() -> Path:
    return platformdirs.user_data_path("yizhan") / "ingest-spool"


class Settings(MqttSettings, InfluxSettings, RegistrySettings, LogSettings):
    mqtt_client_id: Annotated[str, Field(min_length=1, max_length=128)] = "yizhan-ingest"
    ingest_http_addr: ListenAddr = "127.0.0.1:9101"
    # Off by default: Mosquitto 2.0.11 does not restore shared subscriptions from persistence, so what
    # is published between a broker restart and ingest's reconnection is dropped (docs/scaling.md).
    ingest_share_group: Annotated[str, Field(max_length=64, pattern=r"^[^/+#\s]*$")] = ""
    ingest_spool_dir: Path = Field(default_factory=_default_spool)
    ingest_spool_max_mb: Annotated[float, Field(gt=0)] = 1024
    ingest_batch_points: Annotated[int, Field(ge=1, le=100_000)] = 5000
    ingest_batch_seconds: Annotated[float, Field(gt=0, le=60)] = 0.2
    ingest_batch_idle_seconds: Annotated[float, Field(gt=0, le=60)] = 0.02
    ingest_write_concurrency: Annotated[int, Field(ge=1, le=16)] = 2
    ingest_summary_seconds: Annotated[float, Field(gt=0)] = 60.0
    ingest_stats_seconds: Annotated[float, Field(gt=0)] = 10.0
    ingest_station_stats_seconds: Annotated[float, Field(gt=0)] = 60.0
    ingest_retention_raw_days: Annotated[int, Field(ge=1)] = 400
    ingest_retention_rollup_days: Annotated[int, Field(ge=1)] = 3650
    ingest_retention_monitor_days: Annotated[int, Field(ge=1)] = 30
    ingest_rollup_grace_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0
    ingest_rollup_tick_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0

    @property
    def retention_days(self) -> dict[Tier, int]:
        return {Tier.RAW: self.ingest_retention_raw_days, Tier.ROLLUP: self.ingest_retention_rollup_days,
                Tier.MONITOR: self.ingest_retention_monitor_days}

    @property
    def journal_file(self) -> Path:
        """The touched hours not yet rolled up, next to the spool."""
        return self.ingest_spool_dir / "rollup.journal"

    @property
    def rebuild_checkpoint(self) -> Path:
        return self.ingest_spool_dir / "rollup-rebuild.json"

    @property
    def topic_filter(self) -> str:
        """``$share/<group>/stations/v1/+/+`` so that N ingest processes split one stream; plain when empty."""
        return f"$share/{self.ingest_share_group}/{SUBSCRIPTION}" if self.ingest_share_group else SUBSCRIPTION

