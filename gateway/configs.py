"""The desired configs: the newest config of each station, and which broker node holds it retained.

RabbitMQ 3.10 keeps retained messages per node, not replicated, and a node that was down during a
push still holds the older copy when it comes back. The gateway publishes every pushed config
retained to every node it is linked to, and keeps here, per node, the generation of the copy that
node holds, so that it can publish the newest again where it is missing. No file: the cluster is
the store. After a restart the gateway reads the retained configs back from every node (one exact
subscription per station: RabbitMQ sends no retained message to a wildcard subscription) and takes
the greatest generation. No I/O here; the links (``gateway/mqtt.py``) feed it and do what it says::

    pushed(s, c)               a push acknowledged by at least one node: c is the newest of s
    stored(node, s, c)         node acknowledged c retained (the gateway's own publish)
    seen(node, s, c, retained) a config message from node: the newest of s if its generation is
                               greater; retained (read back at subscribe): what node holds.
                               Returns c' when node holds an older copy than the newest c' (publish
                               c' there again)
    reset(node)                the link to node is gone: what it holds is unknown until read back
    behind(node)               (s, c) of every station whose newest c node does not hold: published
                               there once the read-back has settled after the link came up
    next_generation(s, now)    max(now in ms, newest generation + 1): grows across restarts too
"""

from __future__ import annotations

from dataclasses import dataclass, field

from telemetry.contract import AgentConfig


@dataclass(slots=True)
class DesiredConfigs:
    """The newest config per station, and per node the generation it holds retained."""

    newest: dict[str, AgentConfig] = field(default_factory=dict)
    held: dict[int, dict[str, int]] = field(default_factory=dict)

    def next_generation(self, station: str, now_ms: int) -> int:
        """The generation of a new push: the clock's ms, or one more than the newest when that is ahead.

        Across a gateway restart the newest is read back from the nodes; until it is, the clock
        alone is still ahead of every generation assigned before (unless the clock went back).
        """
        known = self.newest.get(station)
        return max(now_ms, known.generation + 1 if known else 0)

    def pushed(self, station: str, config: AgentConfig) -> None:
        self._newer(station, config)

    def stored(self, node: int, station: str, config: AgentConfig) -> None:
        held = self.held.setdefault(node, {})
        held[station] = max(held.get(station, -1), config.generation)

    def seen(self, node: int, station: str, config: AgentConfig, *, retained: bool) -> AgentConfig | None:
        """A config message from ``node``; returns the newest config when ``node`` holds an older one."""
        self._newer(station, config)
        if not retained:
            return None
        self.held.setdefault(node, {})[station] = config.generation
        newest = self.newest[station]
        return newest if newest.generation > config.generation else None

    def reset(self, node: int) -> None:
        self.held.pop(node, None)

    def behind(self, node: int) -> list[tuple[str, AgentConfig]]:
        held = self.held.get(node, {})
        return [(s, c) for s, c in self.newest.items() if held.get(s, -1) < c.generation]

    def _newer(self, station: str, config: AgentConfig) -> None:
        known = self.newest.get(station)
        if known is None or config.generation > known.generation:
            self.newest[station] = config

