"""Remote configuration: the intervals the agent runs, set by the retained config topic.

A config that fails validation is refused: the old one stays, and :attr:`RemoteConfig.error`
says why until a valid one arrives (the status carries it). An accepted config is saved in the
buffer file, so a station that boots offline runs it. An empty payload means the defaults.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from firmware_stubs.buffer import Buffer
from telemetry.codec import clip, describe
from telemetry.contract import AgentConfig

logger = logging.getLogger(__name__)


class RemoteConfig:
    """The config one agent runs, and why the last one received was refused.

    Args:
        buffer: keeps the last config accepted.
        config: the config to start with; by default the saved one, else the contract's defaults.
        name: the station, for logs.
    """

    __slots__ = ("_buffer", "_name", "config", "error")

    def __init__(self, *, buffer: Buffer, config: AgentConfig | None = None, name: str) -> None:
        self._buffer, self._name = buffer, name
        self.config: AgentConfig = config or self._saved()
        self.error: str | None = None

    def _saved(self) -> AgentConfig:
        saved = self._buffer.config()
        if saved:
            try:
                return AgentConfig.model_validate_json(saved)
            except ValidationError:
                logger.warning("%s: the saved config is not valid; using the defaults", self._name)
        return AgentConfig()

    def receive(self, payload: bytes) -> AgentConfig | None:
        """Validate a config message; returns the new config when it was accepted and differs."""
        try:
            config = AgentConfig.model_validate_json(payload) if payload.strip() else AgentConfig()
        except ValidationError as exc:
            self.error = clip(f"config refused: {describe(exc)}")
            logger.warning("%s: %s; keeping config %s", self._name, self.error, self.config.rev)
            return None
        self.error = None
        if config == self.config:
            return None
        self.config = config
        self._buffer.save_config(config.model_dump_json())
        logger.info("%s: config %s applied", self._name, config.rev)
        return config
