"""Errors of the station agent::

    AgentError
     ├── DriverError       a driver could not read its device; the reading is skipped and counted
     ├── ConnectError      the broker could not be reached or refused the connection; retried
     └── BufferFileError   the buffer database cannot be opened or is not an agent buffer

None of them stops a running agent: driver errors go into ``driver_errors`` of the status,
connection errors into the reconnect backoff. Only a buffer that cannot be opened stops
``python -m firmware_stubs`` at start.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of the agent's errors."""


class DriverError(AgentError):
    """A driver could not read its device.

    Attributes:
        device: what failed, as the status and logs name it (``occupancy``, ``charger C1``, ...).
    """

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device


class ConnectError(AgentError):
    """The broker could not be reached, or answered CONNECT with a refusal.

    Attributes:
        reason: a short description (the socket error or the CONNACK reason).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BufferFileError(AgentError):
    """The buffer database cannot be opened, or holds something other than agent buffers."""
