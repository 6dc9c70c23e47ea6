"""The station registry: which stations exist, where they are and what they have.

The registry of Pingliang's 142 stations ships as ``stations.yaml`` beside this module;
``STATIONS_FILE`` points to another file of the same format. Loading validates the whole file
and raises :class:`RegistryError` naming the station of every problem, so a service refuses to
start on a bad registry.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_FILE: Final = Path(__file__).with_name("stations.yaml")

DISTRICT_CODES: Final = {
    "kongtong": "KT",
    "huating": "HT",
    "jingchuan": "JC",
    "lingtai": "LT",
    "chongxin": "CX",
    "zhuanglang": "ZL",
    "jingning": "JN",
}
_ID = re.compile(r"PL-(KT|HT|JC|LT|CX|ZL|JN)-\d{3,6}")
_NAME = r"^[A-Za-z0-9_.-]{1,32}$"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads 50,000 stations in seconds


class RegistryError(Exception):
    """The registry file is missing, malformed, or names a station wrongly."""


class StationKind(StrEnum):
    SMART = "smart"
    VISUAL = "visual"
    BASIC = "basic"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(_Model):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class ChargerSpec(_Model):
    id: Annotated[str, Field(pattern=_NAME)]
    sockets: Annotated[int, Field(ge=1, le=1000)]


class Station(_Model):
    """One rest station (驿站)."""

    id: str
    name: Annotated[str, Field(min_length=1, max_length=128)]
    district: str
    kind: StationKind
    capacity: Annotated[int, Field(ge=0, le=1000)]
    location: Location
    chargers: tuple[ChargerSpec, ...] = ()
    sensors: tuple[Annotated[str, Field(pattern=_NAME)], ...] = ()

    @field_validator("id")
    @classmethod
    def _id_format(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("malformed id: expected PL-<district code>-<NNN>, codes " + " ".join(
                DISTRICT_CODES.values()))
        return value

    @field_validator("district")
    @classmethod
    def _known_district(cls, value: str) -> str:
        if value not in DISTRICT_CODES:
            raise ValueError(f"unknown district {value!r}: expected one of {', '.join(DISTRICT_CODES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Station:
        if self.id.split("-")[1] != DISTRICT_CODES[self.district]:
            raise ValueError(f"id {self.id} does not carry the code {DISTRICT_CODES[self.district]} "
                             f"of district {self.district}")
        for what, names in (("charger", [c.id for c in self.chargers]), ("sensor", list(self.sensors))):
            dup = [n for n, k in Counter(names).items() if k > 1]
            if dup:
                raise ValueError(f"duplicate {what} {dup[0]}")
        return self

    @property
    def reports(self) -> bool:
        """Only smart and visual stations are instrumented and report telemetry."""
        return self.kind is not StationKind.BASIC

    def sockets(self, charger_id: str) -> int | None:
        """Sockets of one charger, or None when the station has no such charger."""
        return next((c.sockets for c in self.chargers if c.id == charger_id), None)


class Registry:
    """All stations, by id, in file order."""

    __slots__ = ("by_id", "stations")

    def __init__(self, stations: list[Station]) -> None:
        self.stations: Final = tuple(stations)
        self.by_id: Final = {s.id: s for s in stations}

    def __len__(self) -> int:
        return len(self.stations)

    def get(self, station_id: str) -> Station | None:
        return self.by_id.get(station_id)

    @property
    def reporting(self) -> tuple[Station, ...]:
        """The instrumented stations (smart and visual), which report telemetry."""
        return tuple(s for s in self.stations if s.reports)


def _load_document(text: str) -> object:
    """YAML; a registry written as JSON (which is YAML too) is read by the JSON parser.

    PyYAML builds every node in Python even with libyaml: 50,000 stations took 21 s and 800 MB;
    the same registry as JSON loads in well under a second.
    """
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style, not JSON
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, the C one when available


def parse(text: str, source: str = "<registry>") -> Registry:
    """Validate a registry document; every problem is listed, each naming its station."""
    try:
        doc = _load_document(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("stations"), list):
        raise RegistryError(f"{source}: expected a mapping with a 'stations' list")
    problems: list[str] = []
    stations: list[Station] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(doc["stations"]):
        label = f"station #{index + 1}"
        if isinstance(item, dict) and "id" in item:
            label += f" ({item['id']})"
        try:
            station = Station.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"{label}: {where + ': ' if where else ''}{err['msg']}")
            continue
        if station.id in seen:
            problems.append(f"{label}: duplicate id {station.id} (first at station #{seen[station.id]})")
            continue
        seen[station.id] = index + 1
        stations.append(station)
    if problems:
        raise RegistryError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return Registry(stations)


def load(path: Path | None = None) -> Registry:
    """Load and validate the registry at ``path`` (default: the shipped Pingliang registry)."""
    path = path or DEFAULT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: cannot read the station registry: {exc}") from exc
    return parse(text, str(path))
