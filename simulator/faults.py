"""Fault scenarios: what goes wrong, at which station, when (simulated time since ``--start``).

From a YAML file (``--scenario``) or flags (see ``python -m simulator --help``)::

    malformed:
      rate: 0.01        # fraction of readings followed by one malformed payload
      kinds: [bad_json, schema, unknown_kind, unknown_station, too_large, ts_out_of_range, bad_topic]
    faults:
      - {kind: network_loss, station: PL-KT-001, at: 30m, for: 30m}
      - {kind: reboot, station: PL-KT-002, at: 1h, for: 45s}      # for: how long it stays off
      - {kind: sensor_flatline, station: PL-KT-003, sensor: outdoor, at: 20m, for: 2h}
      - {kind: sensor_dropout, station: PL-KT-004, sensor: indoor, at: 1h, for: 15m}
      - {kind: heating_failure, station: PL-KT-005, at: 0s, for: 6h}
      - {kind: charger_fault, station: PL-KT-006, charger: C2, code: E07, at: 1h, for: 2h}
      - {kind: clock_skew, station: PL-KT-007, skew: 4m}          # from the start, for ever

Durations: ``90s``, ``30m``, ``1h30m``, ``2d``, or seconds as a number; a skew may be negative.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Final, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from simulator.exceptions import ScenarioError
from simulator.model import StationFaults, Window
from telemetry.contract import MAX_AGE_MS, Name, RejectReason
from telemetry.registry import Station

MALFORMED_KINDS: Final = (
    RejectReason.BAD_JSON, RejectReason.SCHEMA, RejectReason.UNKNOWN_KIND, RejectReason.UNKNOWN_STATION,
    RejectReason.TOO_LARGE, RejectReason.TS_OUT_OF_RANGE, RejectReason.BAD_TOPIC,
)
"""Every reject ingest gives a message (``write_rejected`` is InfluxDB's, not a payload's)."""

MAX_AGE_DAYS: Final = MAX_AGE_MS // 86_400_000

_DURATION = re.compile(r"([+-]?)((?:\d+(?:\.\d+)?[dhms])+)")
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS: Final = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: object) -> float:
    """``1h30m``, ``90s``, ``-4m``, ``2.5h`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip().replace(" ", ""))):
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(m.group(2)))
        seconds = -seconds if m.group(1) == "-" else seconds
    else:
        raise ValueError(f"not a duration: {value!r} (examples: 90s, 30m, 1h30m)")
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Span = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    station: str
    at: Span = 0.0
    for_: Span = Field(default=math.inf, alias="for")

    def window(self, start: float) -> Window:
        return Window(start + self.at, start + self.at + self.for_)


class NetworkLoss(_Fault):
    kind: Literal["network_loss"] = "network_loss"


class Reboot(_Fault):
    kind: Literal["reboot"] = "reboot"
    for_: Span = Field(default=30.0, alias="for")


class SensorFlatline(_Fault):
    kind: Literal["sensor_flatline"] = "sensor_flatline"
    sensor: str


class SensorDropout(_Fault):
    kind: Literal["sensor_dropout"] = "sensor_dropout"
    sensor: str


class HeatingFailure(_Fault):
    kind: Literal["heating_failure"] = "heating_failure"


class ChargerFault(_Fault):
    kind: Literal["charger_fault"] = "charger_fault"
    charger: str
    code: Name = "E07"


class ClockSkew(_Fault):
    kind: Literal["clock_skew"] = "clock_skew"
    skew: Duration


Fault = Annotated[NetworkLoss | Reboot | SensorFlatline | SensorDropout | HeatingFailure | ChargerFault | ClockSkew,
                  Field(discriminator="kind")]


class Malformed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    kinds: tuple[RejectReason, ...] = MALFORMED_KINDS


class Scenario(BaseModel):
    """Faults and malformed payloads of one run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    faults: tuple[Fault, ...] = ()
    malformed: Malformed = Malformed()

    def merged(self, other: Scenario) -> Scenario:
        """This scenario's faults and ``other``'s; ``other``'s malformed settings when it has any."""
        malformed = other.malformed if other.malformed.rate else self.malformed
        return Scenario(faults=self.faults + other.faults, malformed=malformed)

    def check(self, stations: Sequence[Station]) -> None:
        """Raise ScenarioError naming every fault whose station or device does not exist."""
        by_id = {s.id: s for s in stations}
        problems = []
        for i, fault in enumerate(self.faults, start=1):
            station = by_id.get(fault.station)
            where = f"fault #{i} ({fault.kind} {fault.station})"
            if station is None:
                problems.append(f"{where}: the station is not among the simulated stations")
            elif isinstance(fault, SensorFlatline | SensorDropout) and fault.sensor not in station.sensors:
                problems.append(f"{where}: no sensor {fault.sensor!r} (it has {', '.join(station.sensors) or 'none'})")
            elif isinstance(fault, ChargerFault) and station.sockets(fault.charger) is None:
                problems.append(f"{where}: no charger {fault.charger!r}")
        if bad := [k for k in self.malformed.kinds if k not in MALFORMED_KINDS]:
            problems.append(f"malformed kinds {', '.join(bad)}: only {', '.join(MALFORMED_KINDS)}")
        if problems:
            raise ScenarioError("invalid scenario:\n  " + "\n  ".join(problems))

    def station_faults(self, station_id: str, start: float) -> StationFaults:
        """The hardware fault windows of one station, in absolute simulated time."""
        out = StationFaults()
        for f in self.of(station_id):
            match f:
                case HeatingFailure():
                    out.heating.append(f.window(start))
                case ChargerFault():
                    out.chargers.setdefault(f.charger, []).append((f.window(start), f.code))
                case SensorFlatline():
                    out.flatline.setdefault(f.sensor, []).append(f.window(start))
                case SensorDropout():
                    out.dropout.setdefault(f.sensor, []).append(f.window(start))
        return out

    def of(self, station_id: str) -> list[Fault]:
        return [f for f in self.faults if f.station == station_id]


def load_scenario(path: Path) -> Scenario:
    try:
        return Scenario.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario: {exc}") from exc
    except ValidationError as exc:
        raise ScenarioError(f"{path}: invalid scenario: {exc}") from exc


_FLAG = re.compile(r"(?P<station>[^/@=:]+)(?:/(?P<device>[^/@=:]+)(?::(?P<code>[^@]+))?)?"
                   r"(?:=(?P<skew>[^@]+))?(?:@(?P<at>[^+]+)(?:\+(?P<for>.+))?)?")


def parse_fault_flag(kind: str, text: str) -> Fault:
    """One fault flag: ``STATION[/DEVICE[:CODE]][=SKEW][@AT[+FOR]]`` (see ``--help``)."""
    m = _FLAG.fullmatch(text.strip())
    if m is None:
        raise ScenarioError(f"--{kind.replace('_', '-')} {text}: expected STATION[/DEVICE][@AT[+FOR]]")
    doc: dict[str, object] = {"kind": kind, "station": m["station"]}
    if m["at"] is not None:
        doc["at"] = m["at"]
    if m["for"] is not None:
        doc["for"] = m["for"]
    if m["device"] is not None:
        doc["charger" if kind == "charger_fault" else "sensor"] = m["device"]
    if m["code"] is not None:
        doc["code"] = m["code"]
    if m["skew"] is not None:
        doc["skew"] = m["skew"]
    try:
        return Scenario.model_validate({"faults": [doc]}).faults[0]
    except ValidationError as exc:
        raise ScenarioError(f"--{kind.replace('_', '-')} {text}: {exc}") from exc


def scenario_from_flags(flags: Iterable[tuple[str, str]], malformed_rate: float | None = None) -> Scenario:
    """A scenario from ``(fault kind, flag text)`` pairs and ``--malformed-rate``."""
    faults = tuple(parse_fault_flag(kind, text) for kind, text in flags)
    try:
        return Scenario(faults=faults, malformed=Malformed(rate=malformed_rate or 0.0))
    except ValidationError as exc:
        raise ScenarioError(f"--malformed-rate {malformed_rate}: {exc}") from exc
