"""Encode validated readings as InfluxDB line protocol (millisecond precision).

Measurements and their keys are listed in ``docs/contract.md``. Tag values come from the
registry; string field values are escaped by the line-protocol rules, and the contract forbids
control characters in them, so no payload can add a tag, a field or a point.
"""

from __future__ import annotations

from typing import cast

from telemetry.codec import Reject
from telemetry.contract import Charger, Occupancy, Reading, Status, Temperature
from telemetry.registry import Station

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": "", "\r": ""})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_CONTROL = dict.fromkeys([*range(32), 127], "�")


def tag(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


def string_field(value: str) -> str:
    """A quoted string field value; control characters (absent from valid readings) become U+FFFD."""
    return '"' + value.translate(_CONTROL).replace("\\", "\\\\").replace('"', '\\"') + '"'


# measurement and tag set per (measurement, station, charger or sensor): bounded by the registry
_SERIES: dict[tuple[str, str, str], str] = {}


def _series(measurement: str, station: Station, extra: str = "") -> str:
    key = (measurement, station.id, extra)
    series = _SERIES.get(key)
    if series is None:
        series = _SERIES[key] = (f"{measurement.translate(_MEASUREMENT_ESCAPES)},station={tag(station.id)},"
                                 f"district={tag(station.district)},kind={tag(station.kind.value)}{extra}")
    return series


def reading(station: Station, r: Reading) -> str:
    """One reading as one line; every telemetry point carries its ``seq``."""
    match r:
        case Occupancy() if r.entries is not None and r.exits is not None:  # the common form, in one go
            return (f"{_series('occupancy', station)} people={r.people}i,capacity={station.capacity}i,"
                    f"entries={r.entries}i,exits={r.exits}i,seq={r.seq}i {r.ts}")
        case Occupancy():
            fields = f"people={r.people}i,capacity={station.capacity}i"
            if r.entries is not None:
                fields += f",entries={r.entries}i"
            if r.exits is not None:
                fields += f",exits={r.exits}i"
            return f"{_series('occupancy', station)} {fields},seq={r.seq}i {r.ts}"
        case Charger():
            fields = (f"sockets_in_use={r.sockets_in_use}i,sockets_total={station.sockets(r.charger_id)}i,"
                      f"power_w={float(r.power_w)!r},energy_wh={float(r.energy_wh)!r}")
            if r.fault is not None:
                fields += f",fault={string_field(r.fault)}"
            return f"{_series('charger', station, ',charger=' + tag(r.charger_id))} {fields},seq={r.seq}i {r.ts}"
        case Temperature():
            fields = f"celsius={float(r.celsius)!r}"
            if r.humidity_pct is not None:
                fields += f",humidity_pct={float(r.humidity_pct)!r}"
            return f"{_series('temperature', station, ',sensor=' + tag(r.sensor))} {fields},seq={r.seq}i {r.ts}"
    raise TypeError(f"not a reading: {type(r).__name__}")


def readings(station: Station, rs: list[Reading]) -> list[str]:
    """The lines of one message's readings (all of one kind); the hot path, so occupancy has its own loop."""
    if rs and isinstance(rs[0], Occupancy):
        occupancy = cast("list[Occupancy]", rs)  # one message holds one kind
        prefix = _series("occupancy", station) + " people="
        capacity = f"i,capacity={station.capacity}i"
        lines = []
        for r in occupancy:
            if r.entries is not None and r.exits is not None:
                lines.append(f"{prefix}{r.people}{capacity},entries={r.entries}i,exits={r.exits}i,seq={r.seq}i {r.ts}")
            elif r.entries is None and r.exits is None:
                lines.append(f"{prefix}{r.people}{capacity},seq={r.seq}i {r.ts}")
            else:
                lines.append(reading(station, r))
        return lines
    return [reading(station, r) for r in rs]


def status(station: Station, s: Status, arrival_ms: int) -> str:
    """``station_status`` at the status's ``ts``, or its arrival when it has none (the last will)."""
    fields = [f"online={'true' if s.state == 'online' else 'false'}"]
    for name in ("uptime_s", "buffered", "dropped", "driver_errors"):
        value = getattr(s, name)
        if value is not None:
            fields.append(f"{name}={value}i")
    for name in ("fw", "config_rev", "error"):
        value = getattr(s, name)
        if value is not None:
            fields.append(f"{name}={string_field(value)}")
    return f"{_series('station_status', station)} {','.join(fields)} {s.ts if s.ts is not None else arrival_ms}"


def reject(r: Reject, ts_ms: int) -> str:
    """``ingest_rejects``: tag reason; string fields station, topic, detail (already clipped)."""
    return (f"ingest_rejects,reason={tag(r.reason.value)} station={string_field(r.station)},"
            f"topic={string_field(r.topic)},detail={string_field(r.detail)} {ts_ms}")
