"""What each station is doing now, from its MQTT messages (and InfluxDB's last values at start).

Fed with every status, reading and retained config the gateway's subscription sees, after the
same validation ingest applies (``telemetry.codec``). A reading older than the one held does not
replace it, so a replayed backlog never hides the present.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from telemetry.codec import Decoder
from telemetry.contract import AgentConfig, Charger, Kind, Occupancy, Status, Temperature
from telemetry.registry import Registry, Station


@dataclass(slots=True)
class ChargerNow:
    ts: int = 0
    sockets_in_use: int | None = None
    power_w: float | None = None
    energy_wh: float | None = None
    fault: str | None = None


@dataclass(slots=True)
class SensorNow:
    ts: int = 0
    celsius: float | None = None
    humidity_pct: float | None = None


@dataclass(slots=True)
class StationNow:
    online: bool | None = None
    last_seen_ms: int | None = None
    status: Status | None = None
    status_ms: int | None = None
    people_ts: int = 0
    people: int | None = None
    entries: int | None = None
    exits: int | None = None
    chargers: dict[str, ChargerNow] = field(default_factory=dict)
    sensors: dict[str, SensorNow] = field(default_factory=dict)
    desired_config: AgentConfig | None = None

    def seen(self, ms: int) -> None:
        if self.last_seen_ms is None or ms > self.last_seen_ms:
            self.last_seen_ms = ms


class LiveState:
    """Per-station state, updated from MQTT messages; read by the API."""

    def __init__(self, registry: Registry, decoder: Decoder) -> None:
        self._decoder = decoder
        self.stations: dict[str, StationNow] = {s.id: StationNow() for s in registry.stations}
        self.messages = 0

    def get(self, station_id: str) -> StationNow:
        return self.stations[station_id]

    def on_message(self, topic: str, payload: bytes) -> None:
        """Apply one MQTT message; invalid ones are ignored here (ingest counts them)."""
        now_ms = int(time.time() * 1000)
        self.messages += 1
        decoded = self._decoder.decode(topic, payload)
        station = decoded.station
        if station is None:
            return
        state = self.stations[station.id]
        if decoded.kind is Kind.CONFIG:
            return  # the desired config is the cluster link's to decide (:meth:`desire`): it sees every node
        if decoded.status is not None:
            self.apply_status(state, decoded.status, now_ms)
        for reading in decoded.readings:
            self.apply_reading(state, reading)
        if decoded.readings:
            state.seen(now_ms)

    def desire(self, station_id: str, config: AgentConfig) -> None:
        """The newest config pushed to a station (from the gateway's own pushes and the nodes' retained ones)."""
        self.stations[station_id].desired_config = config

    @staticmethod
    def apply_status(state: StationNow, status: Status, at_ms: int) -> None:
        ts = status.ts if status.ts is not None else at_ms
        if state.status_ms is not None and ts < state.status_ms:
            return
        state.status, state.status_ms = status, ts
        state.online = status.state == "online"
        state.seen(at_ms)

    @staticmethod
    def apply_reading(state: StationNow, reading: Occupancy | Charger | Temperature) -> None:
        match reading:
            case Occupancy():
                if reading.ts >= state.people_ts:
                    state.people_ts, state.people = reading.ts, reading.people
                    state.entries, state.exits = reading.entries, reading.exits
            case Charger():
                now = state.chargers.setdefault(reading.charger_id, ChargerNow())
                if reading.ts >= now.ts:
                    now.ts, now.sockets_in_use = reading.ts, reading.sockets_in_use
                    now.power_w, now.energy_wh, now.fault = reading.power_w, reading.energy_wh, reading.fault
            case Temperature():
                sensor = state.sensors.setdefault(reading.sensor, SensorNow())
                if reading.ts >= sensor.ts:
                    sensor.ts, sensor.celsius, sensor.humidity_pct = reading.ts, reading.celsius, reading.humidity_pct


def free_seats(station: Station, state: StationNow) -> int | None:
    return None if state.people is None else max(station.capacity - state.people, 0)


def sockets_in_use(station: Station, state: StationNow) -> int | None:
    if not station.chargers:
        return 0
    known = [state.chargers[c.id].sockets_in_use for c in station.chargers if c.id in state.chargers]
    if len(known) < len(station.chargers) or any(v is None for v in known):
        return None
    return sum(v for v in known if v is not None)


def sockets_total(station: Station) -> int:
    return sum(c.sockets for c in station.chargers)


def indoor_celsius(state: StationNow) -> float | None:
    sensor = state.sensors.get("indoor")
    return sensor.celsius if sensor else None
