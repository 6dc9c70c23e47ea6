"""Readings for tests, as the contract's JSON objects."""

from __future__ import annotations

import time
from typing import Any

from telemetry.contract import Kind, topic

Payload = dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


def occupancy(seq: int, people: int, *, ts: int | None = None, **extra: Any) -> Payload:
    return {"ts": ts if ts is not None else now_ms(), "seq": seq, "people": people, **extra}


def charger(seq: int, charger_id: str = "C1", sockets: int = 3, *, ts: int | None = None, power_w: float = 450.5,
            energy_wh: float = 1234.25, **extra: Any) -> Payload:
    return {"ts": ts if ts is not None else now_ms(), "seq": seq, "charger_id": charger_id,
            "sockets_in_use": sockets, "power_w": power_w, "energy_wh": energy_wh, **extra}


def temperature(seq: int, sensor: str = "indoor", celsius: float = 18.5, *, ts: int | None = None,
                **extra: Any) -> Payload:
    return {"ts": ts if ts is not None else now_ms(), "seq": seq, "sensor": sensor, "celsius": celsius, **extra}


def t(station: str, kind: str) -> str:
    return topic(station, Kind(kind))
