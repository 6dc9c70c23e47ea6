"""The driver interfaces between the agent and a station's hardware, and the stub drivers.

The agent knows its hardware only through three protocols: an :class:`OccupancyCounter` (the
door counter), one :class:`ChargerController` per e-bike charger and one
:class:`TemperatureSensor` per sensor of the registry. A driver returns plain values or raises;
the agent turns any exception into a counted driver error and skips that reading, so a driver
never needs to catch its own failures. ``read`` must return quickly (it runs on the agent's
event loop): a driver whose device is slow caches the last value in its own thread.

The stub drivers here read their values from a JSON or YAML document (a file, re-read whenever it
changes, or text from the environment); the simulator ships simulated drivers of its own. The
document (every part optional)::

    occupancy: {people: 3, entries: 120, exits: 117}
    chargers:
      C1: {sockets_in_use: 2, power_w: 410.0, energy_wh: 1234.5}
      C2: {error: "no answer on RS-485"}          # this charger fails: a driver error
    temperature:
      indoor: {celsius: 18.5, humidity_pct: 40}
      outdoor: {celsius: -6.0}

A device the document does not mention reads as idle: 0 people, a charger with nothing plugged
in, 18 °C (-5 °C for a sensor named ``outdoor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firmware_stubs.exceptions import DriverError
from telemetry.registry import Station

# --- what drivers return ---------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class PeopleCount:
    """People inside now; ``entries``/``exits`` are the door's cumulative counters, if it has them."""

    people: int
    entries: int | None = None
    exits: int | None = None


@dataclass(slots=True, frozen=True)
class ChargerState:
    """One charger now: sockets in use, power drawn, its cumulative energy meter, a fault code."""

    sockets_in_use: int
    power_w: float
    energy_wh: float
    fault: str | None = None


@dataclass(slots=True, frozen=True)
class TemperatureSample:
    celsius: float
    humidity_pct: float | None = None


# --- the interfaces --------------------------------------------------------------------------


class OccupancyCounter(Protocol):
    """The door counter. The agent reports its count periodically and whenever it changes."""

    def read(self) -> PeopleCount:
        """The count now; raises when the counter cannot be read."""
        ...

    def next_change(self) -> float | None:
        """When the count may next change (seconds on the agent's clock), if the counter knows.

        None: the agent polls :meth:`read` every ``occupancy_poll_s`` for changes. A counter that
        knows (the simulator's) saves the polling.
        """
        ...


class ChargerController(Protocol):
    """One e-bike charger of the registry."""

    @property
    def charger_id(self) -> str: ...

    def read(self) -> ChargerState:
        """The charger now; raises when it does not answer."""
        ...


class TemperatureSensor(Protocol):
    """One temperature sensor of the registry."""

    @property
    def sensor(self) -> str: ...

    def read(self) -> TemperatureSample:
        """The temperature now; raises when the sensor does not answer."""
        ...


@dataclass(slots=True, frozen=True)
class Drivers:
    """The hardware of one station, as the agent sees it."""

    occupancy: OccupancyCounter | None = None
    chargers: tuple[ChargerController, ...] = ()
    sensors: tuple[TemperatureSensor, ...] = ()


# --- stub drivers ----------------------------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Device(_Doc):
    error: Annotated[str, Field(min_length=1)] | None = None
    """When set, reading the device raises a DriverError with this message."""


class _StubOccupancy(_Device):
    people: Annotated[int, Field(ge=0)] = 0
    entries: Annotated[int, Field(ge=0)] | None = None
    exits: Annotated[int, Field(ge=0)] | None = None


class _StubCharger(_Device):
    sockets_in_use: Annotated[int, Field(ge=0)] = 0
    power_w: Annotated[float, Field(ge=0)] = 0.0
    energy_wh: Annotated[float, Field(ge=0)] = 0.0
    fault: str | None = None


class _StubTemperature(_Device):
    celsius: float | None = None
    humidity_pct: float | None = None


class StubDocument(_Doc):
    """The stub drivers' values (see the module docstring)."""

    occupancy: _StubOccupancy = _StubOccupancy()
    chargers: dict[str, _StubCharger] = {}
    temperature: dict[str, _StubTemperature] = {}


def parse_stub_document(text: str, source: str = "<stub values>") -> StubDocument:
    """Validate a stub document (JSON is YAML); raises ValueError naming ``source``."""
    try:
        doc = yaml.safe_load(text)
        return StubDocument.model_validate(doc or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{source}: not a valid stub document: {exc}") from exc


class StubValues:
    """Where the stub drivers read: a file (re-read when it changes) or a fixed text.

    Args:
        path: a JSON or YAML file; while it is missing or invalid every read is a driver error.
        text: the document itself (``AGENT_STUB_VALUES``), used when there is no ``path``.
    """

    def __init__(self, *, path: Path | None = None, text: str | None = None) -> None:
        self._path = path
        self._doc = parse_stub_document(text, "AGENT_STUB_VALUES") if text else StubDocument()
        self._stamp: tuple[int, int] | None = None
        self._error: str | None = None

    def current(self, device: str) -> StubDocument:
        """The values now; raises DriverError naming ``device`` when the file cannot be used."""
        if self._path is not None:
            self._reload()
        if self._error is not None:
            raise DriverError(device, self._error)
        return self._doc

    def _reload(self) -> None:
        assert self._path is not None  # noqa: S101 - checked by the caller
        try:
            st = self._path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            text = self._path.read_text(encoding="utf-8")
            self._doc = parse_stub_document(text, str(self._path))
            self._error = None
            self._stamp = stamp
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self._error = str(exc)
            self._stamp = None


@dataclass(slots=True, frozen=True)
class StubOccupancy:
    values: StubValues

    def read(self) -> PeopleCount:
        v = self.values.current("occupancy").occupancy
        if v.error:
            raise DriverError("occupancy", v.error)
        return PeopleCount(v.people, v.entries, v.exits)

    def next_change(self) -> float | None:
        return None


@dataclass(slots=True, frozen=True)
class StubCharger:
    charger_id: str
    values: StubValues

    def read(self) -> ChargerState:
        device = f"charger {self.charger_id}"
        v = self.values.current(device).chargers.get(self.charger_id, _StubCharger())
        if v.error:
            raise DriverError(device, v.error)
        return ChargerState(v.sockets_in_use, v.power_w, v.energy_wh, v.fault)


@dataclass(slots=True, frozen=True)
class StubTemperature:
    sensor: str
    values: StubValues

    def read(self) -> TemperatureSample:
        device = f"sensor {self.sensor}"
        v = self.values.current(device).temperature.get(self.sensor, _StubTemperature())
        if v.error:
            raise DriverError(device, v.error)
        default = -5.0 if self.sensor == "outdoor" else 18.0
        return TemperatureSample(default if v.celsius is None else v.celsius, v.humidity_pct)


def stub_drivers(station: Station, values: StubValues) -> Drivers:
    """Stub drivers for every device of ``station`` in the registry."""
    return Drivers(
        occupancy=StubOccupancy(values),
        chargers=tuple(StubCharger(c.id, values) for c in station.chargers),
        sensors=tuple(StubTemperature(s, values) for s in station.sensors),
    )
