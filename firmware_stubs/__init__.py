"""The station agent (``python -m firmware_stubs``): drivers -> SQLite buffer -> MQTT (paho 2.x)."""

from __future__ import annotations

__version__ = "0.1.0"
