"""Remote configuration: the intervals the agent runs, set by the retained config topic.

Every config carries a ``generation`` that only grows (the gateway assigns it). What a message
does, against the config running (``running``, generation ``g``)::

    empty payload (a cleared retained config)   nothing changes
    not a valid AgentConfig                     refused: error says why, running stays
    generation < g   (a stale retained copy)    ignored with a warning; running and error stay
    generation == g, the same config            nothing to do; error cleared
    generation == g, other settings             refused: error says why, running stays
    generation > g                              applied and saved; error cleared

A stale copy comes from a node of a cluster that missed a push, or a broker restored from an
old persistence file; ignoring it keeps the station on the newest config it ever ran. The config
accepted is saved in the buffer file (with its generation), so a station that boots offline runs
it, and one that boots on a stale broker does not go back.
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
        """Apply a config message (see the module's table); returns the new config when it was applied."""
        running = self.config
        if not payload.strip():
            logger.info("%s: empty config message (a cleared retained config): config %s stays", self._name,
                        running.rev)
            return None
        try:
            config = AgentConfig.model_validate_json(payload)
        except ValidationError as exc:
            self._refuse(f"config refused: {describe(exc)}")
            return None
        if config.generation < running.generation:
            logger.warning("%s: config %s of generation %d is older than config %s of generation %d: ignored",
                           self._name, config.rev, config.generation, running.rev, running.generation)
            return None
        if config.generation == running.generation:
            if config == running:
                self.error = None
                return None
            self._refuse(f"config refused: generation {config.generation} is the generation of the config "
                                f"running ({running.rev}) with other settings; a new config needs a greater one")
            return None
        self.error = None
        self.config = config
        self._buffer.save_config(config.model_dump_json())
        logger.info("%s: config %s (generation %d) applied", self._name, config.rev, config.generation)
        return config

    def _refuse(self, reason: str) -> None:
        self.error = clip(reason)
        logger.warning("%s: %s; keeping config %s", self._name, self.error, self.config.rev)
