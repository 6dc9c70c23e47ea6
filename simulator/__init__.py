"""The city simulator (``python -m simulator``): many real agents on simulated drivers and time."""

from __future__ import annotations
