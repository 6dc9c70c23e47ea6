"""The station's status message: online with its counters, or its own clean offline (the will is bare)."""

from __future__ import annotations

from typing import Final, Literal

from firmware_stubs.clock import next_ts
from telemetry.contract import AgentConfig, Status

WILL: Final = b'{"state":"offline"}'
"""The last will, retained on the status topic: what the broker publishes when the agent vanishes."""


class StatusReport:
    """Builds one agent's status payloads: ``ts`` never repeats, ``uptime_s`` counts from :meth:`started`.

    Args:
        fw: the firmware it reports.
    """

    __slots__ = ("_fw", "_started", "_ts")

    def __init__(self, *, fw: str) -> None:
        self._fw = fw
        self._started = 0.0
        self._ts = 0

    def started(self, now: float) -> None:
        self._started = now

    def payload(self, now: float, *, state: Literal["online", "offline"], buffered: int, dropped: int,
                driver_errors: int, config: AgentConfig, error: str | None) -> str:
        self._ts = next_ts(self._ts, round(now * 1000))
        status = Status(state=state, ts=self._ts, fw=self._fw, uptime_s=max(0, int(now - self._started)),
                        buffered=buffered, dropped=dropped, driver_errors=driver_errors, config_rev=config.rev,
                        error=error)
        return status.model_dump_json(exclude_none=True)
