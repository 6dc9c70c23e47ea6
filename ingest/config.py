"""Settings of the ingest service, from the environment (see docs/configuration.md)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import Field, field_validator, model_validator

from ingest.amqp_url import AmqpUrl
from telemetry.contract import SUBSCRIPTION
from telemetry.settings import InfluxSettings, ListenAddr, LogSettings, MqttSettings, RegistrySettings, _readable
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
    ingest_mqtt_keepalive_seconds: Annotated[int, Field(ge=2, le=300)] = 30
    ingest_mqtt_hold_mb: Annotated[float, Field(gt=0, le=4096)] = 32
    ingest_write_concurrency: Annotated[int, Field(ge=1, le=16)] = 2
    ingest_summary_seconds: Annotated[float, Field(gt=0)] = 60.0
    ingest_stats_seconds: Annotated[float, Field(gt=0)] = 10.0
    ingest_station_stats_seconds: Annotated[float, Field(gt=0)] = 60.0
    ingest_retention_raw_days: Annotated[int, Field(ge=1)] = 400
    ingest_retention_rollup_days: Annotated[int, Field(ge=1)] = 3650
    ingest_retention_monitor_days: Annotated[int, Field(ge=1)] = 30
    ingest_rollup_grace_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0
    ingest_rollup_tick_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0
    ingest_rollup_settle_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # The AMQP source (a RabbitMQ quorum queue) instead of MQTT when AMQP_URL is set.
    amqp_url: str = ""
    amqp_ca_file: Path | None = None
    amqp_cert_file: Path | None = None
    amqp_key_file: Path | None = None
    ingest_queue: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:-]+$")] = (
        "yizhan.ingest")
    ingest_amqp_prefetch: Annotated[int, Field(ge=1, le=65535)] = 2000
    ingest_amqp_heartbeat_seconds: Annotated[int, Field(ge=2, le=600)] = 30

    @field_validator("amqp_url")
    @classmethod
    def _valid_amqp_url(cls, value: str) -> str:
        if value.strip():
            AmqpUrl.parse_list(value)
        return value.strip()

    @field_validator("ingest_queue")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith("amq."):
            raise ValueError("queue names starting with amq. are reserved by RabbitMQ")
        return value

    @field_validator("amqp_ca_file", "amqp_cert_file", "amqp_key_file")
    @classmethod
    def _readable_amqp_file(cls, value: Path | None) -> Path | None:
        return _readable(value)

    @model_validator(mode="after")
    def _amqp_key_needs_cert(self) -> Settings:
        if self.amqp_key_file is not None and self.amqp_cert_file is None:
            raise ValueError("AMQP_KEY_FILE is set without AMQP_CERT_FILE (the client certificate it belongs to)")
        return self

    @property
    def amqp_urls(self) -> list[AmqpUrl]:
        """The nodes of ``AMQP_URL`` in order; empty: the MQTT source."""
        return AmqpUrl.parse_list(self.amqp_url) if self.amqp_url else []

    def amqp_tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``amqps://`` nodes (system CAs unless ``AMQP_CA_FILE``), else None."""
        if not any(url.tls for url in self.amqp_urls):
            return None
        ctx = ssl.create_default_context(cafile=str(self.amqp_ca_file) if self.amqp_ca_file else None)
        if self.amqp_cert_file:
            ctx.load_cert_chain(self.amqp_cert_file, self.amqp_key_file)
        return ctx

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

