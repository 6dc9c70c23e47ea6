"""The wire contract between stations and the cloud: topics, payload models, units and limits.

Every package imports this module; nothing of the contract is written anywhere else. The JSON
Schema for firmware teams is generated from these models (``python -m telemetry schema``) and
documented in ``docs/contract.md``.

Topics (``{id}`` is a station id of the registry)::

    stations/v1/{id}/occupancy     device -> cloud, QoS 1     Occupancy
    stations/v1/{id}/charger       device -> cloud, QoS 1     Charger
    stations/v1/{id}/temperature   device -> cloud, QoS 1     Temperature
    stations/v1/{id}/status        device -> cloud, retained  Status (also the last will)
    stations/v1/{id}/config        cloud -> device, retained  AgentConfig

A telemetry payload is UTF-8 JSON of at most 64 KiB: one reading object, or an array of 1 to
1000 reading objects (a batch, used for store-and-forward replay).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

TOPIC_ROOT: Final = "stations/v1"
SUBSCRIPTION: Final = f"{TOPIC_ROOT}/+/+"
MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_BATCH: Final = 1000
MAX_FUTURE_MS: Final = 5 * 60 * 1000
MAX_AGE_MS: Final = 30 * 24 * 3600 * 1000
"""The oldest reading ingest stores; the agent drops (and counts) what its buffer holds past it."""
INT64_MAX: Final = 2**63 - 1
STRING_FIELD_MAX: Final = 256


class Kind(StrEnum):
    """The last level of a station topic."""

    OCCUPANCY = "occupancy"
    CHARGER = "charger"
    TEMPERATURE = "temperature"
    STATUS = "status"
    CONFIG = "config"


TELEMETRY_KINDS: Final = frozenset({Kind.OCCUPANCY, Kind.CHARGER, Kind.TEMPERATURE})


class RejectReason(StrEnum):
    """Why a message, or one reading of a batch, was not stored."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_STATION = "unknown_station"
    UNKNOWN_KIND = "unknown_kind"
    BAD_JSON = "bad_json"
    SCHEMA = "schema"
    TOO_LARGE = "too_large"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    WRITE_REJECTED = "write_rejected"
    """InfluxDB refused the point (a field type conflict, say); produced by ingest's writer."""


def topic(station_id: str, kind: Kind) -> str:
    """The topic a station uses for ``kind``."""
    return f"{TOPIC_ROOT}/{station_id}/{kind.value}"


# --- field types -----------------------------------------------------------------------------

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)")
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


def _epoch_ms(value: Any) -> int:
    """``ts``: RFC 3339 with an offset, or integer epoch milliseconds; returns epoch ms."""
    if isinstance(value, bool):  # pydantic reports ValueError, not TypeError, as a validation error
        raise ValueError(  # noqa: TRY004
            "ts must be an RFC 3339 string with offset or integer epoch milliseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        text = value.replace("z", "Z").replace("t", "T")
        frac = re.search(r"\.(\d+)", text)
        if frac and len(frac.group(1)) > 6:  # datetime keeps microseconds; drop finer digits
            text = text.replace(frac.group(0), "." + frac.group(1)[:6])
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    raise ValueError("ts must be an RFC 3339 string with offset or integer epoch milliseconds")


EpochMs = Annotated[
    int,
    BeforeValidator(_epoch_ms),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "format": "date-time", "description": "RFC 3339 with offset"},
                {"type": "integer", "description": "epoch milliseconds"},
            ]
        }
    ),
]
Counter = Annotated[int, Field(ge=0, le=INT64_MAX)]
Name = Annotated[str, Field(min_length=1, max_length=32, pattern=_NO_CONTROL)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class _Reading(_Model):
    ts: EpochMs = Field(description="Device time of the reading")
    seq: Counter = Field(description="Per station, +1 per reading for the station's life")


class Occupancy(_Reading):
    """People inside the station; ``entries``/``exits`` are cumulative door counters."""

    people: Annotated[int, Field(ge=0, le=1000)]
    entries: Counter | None = None
    exits: Counter | None = None


class Charger(_Reading):
    """One e-bike charger: sockets in use, power now, cumulative energy meter."""

    charger_id: Name = Field(description="One of the station's chargers in the registry")
    sockets_in_use: Annotated[int, Field(ge=0, le=1000)] = Field(description="0 .. that charger's sockets")
    power_w: Annotated[float, Field(ge=0)]
    energy_wh: Annotated[float, Field(ge=0)]
    fault: Name | None = Field(default=None, description="Fault code, when the charger reports one")


class Temperature(_Reading):
    """One temperature sensor."""

    sensor: Name = Field(description="One of the station's sensors in the registry")
    celsius: Annotated[float, Field(ge=-60, le=80)]
    humidity_pct: Annotated[float, Field(ge=0, le=100)] | None = None


Reading = Occupancy | Charger | Temperature


class Status(_Model):
    """Retained on ``stations/v1/{id}/status``; ``{"state": "offline"}`` is also the last will."""

    state: Literal["online", "offline"]
    ts: EpochMs | None = None
    fw: Annotated[str, Field(max_length=64, pattern=_NO_CONTROL)] | None = None
    uptime_s: Counter | None = None
    buffered: Counter | None = Field(default=None, description="Readings waiting in the agent's buffer")
    dropped: Counter | None = Field(default=None, description="Readings dropped at the buffer's bound")
    driver_errors: Counter | None = None
    config_rev: Annotated[str, Field(max_length=64, pattern=_NO_CONTROL)] | None = Field(
        default=None, description="``rev`` of the config the agent runs"
    )
    error: Annotated[str, Field(max_length=STRING_FIELD_MAX)] | None = Field(
        default=None, description="Why the last config was refused, when it was"
    )


Interval = Annotated[int, Field(ge=1, le=86400)]


class AgentConfig(_Model):
    """Retained on ``stations/v1/{id}/config``: how often the agent reports, in seconds.

    ``generation`` only grows: an agent applies a config only when its generation is greater than
    the one it runs, so a stale retained copy (a node that missed a push, a broker restored from an
    old persistence file) never takes a station back.
    """

    rev: Annotated[str, Field(min_length=1, max_length=64, pattern=_NO_CONTROL)] = "default"
    generation: Counter = Field(
        default=0, description="Grows with every push (the gateway assigns it); the agent refuses to go back")
    occupancy_interval_s: Interval = 60
    charger_interval_s: Interval = 30
    temperature_interval_s: Interval = 60
    status_interval_s: Interval = 60


MODELS: Final[dict[Kind, type[_Model]]] = {
    Kind.OCCUPANCY: Occupancy,
    Kind.CHARGER: Charger,
    Kind.TEMPERATURE: Temperature,
    Kind.STATUS: Status,
    Kind.CONFIG: AgentConfig,
}
