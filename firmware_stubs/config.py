"""Settings of the station agent, from the environment (table in docs/agent.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import BaseModel, Field, field_validator

from firmware_stubs.drivers import parse_stub_document
from telemetry.settings import LogSettings, MqttSettings, RegistrySettings


def default_buffer_path() -> Path:
    return platformdirs.user_data_path("yizhan") / "agent-buffer.sqlite3"


class ReplaySettings(BaseModel):
    """How an agent keeps and replays its backlog: the agent's settings, and the simulator's for its agents."""

    agent_replay_rate: Annotated[float, Field(gt=0, le=100_000)] = 50.0
    agent_buffer_max: Annotated[int, Field(ge=1)] = 500_000


class Settings(MqttSettings, RegistrySettings, LogSettings, ReplaySettings):
    station_id: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    station_password: str | None = None
    agent_buffer_path: Path = Field(default_factory=default_buffer_path)
    agent_stub_file: Path | None = None
    agent_stub_values: str | None = None

    @field_validator("agent_stub_values")
    @classmethod
    def _valid_stub_values(cls, value: str | None) -> str | None:
        if value:
            parse_stub_document(value, "AGENT_STUB_VALUES")
        return value
