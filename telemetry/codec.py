"""Decode one MQTT message (topic and payload bytes) into valid readings and rejects.

Used by ingest for every message and by the gateway's HTTP ingress, so both give the same
reject reasons. A reject is a value, never an exception: whatever bytes arrive, :meth:`Decoder.decode`
returns readings, rejects, or both (one bad reading of a batch rejects that reading only).
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from telemetry.contract import (
    MAX_AGE_MS,
    MAX_BATCH,
    MAX_FUTURE_MS,
    MAX_PAYLOAD_BYTES,
    STRING_FIELD_MAX,
    TOPIC_ROOT,
    Charger,
    Kind,
    Occupancy,
    Reading,
    RejectReason,
    Status,
    Temperature,
)
from telemetry.registry import Registry, Station

_ROOT0, _ROOT1 = TOPIC_ROOT.split("/")
_FIELDS_SET = operator.attrgetter("__pydantic_fields_set__")
_STRING_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.OCCUPANCY: (),
    Kind.CHARGER: ("charger_id", "fault"),
    Kind.TEMPERATURE: ("sensor",),
}
_READING_MODELS: dict[Kind, type[Occupancy | Charger | Temperature]] = {
    Kind.OCCUPANCY: Occupancy,
    Kind.CHARGER: Charger,
    Kind.TEMPERATURE: Temperature,
}
# A whole batch in one call (the common case: every reading valid); per reading only on failure.
_BATCH_ADAPTERS: dict[Kind, TypeAdapter[list[Reading]]] = {
    kind: TypeAdapter(list[model]) for kind, model in _READING_MODELS.items()  # type: ignore[valid-type]
}
# The fast path: bytes to models in one pass of pydantic-core (UTF-8, JSON and validation in Rust),
# called on the core validator itself (TypeAdapter.validate_json adds 0.2 µs a call).
_JSON_VALIDATORS: dict[Kind, Callable[[bytes], Any]] = {
    kind: TypeAdapter(model | list[model]).validator.validate_json  # type: ignore[valid-type,arg-type]
    for kind, model in _READING_MODELS.items()
}
# Messages of one reading that arrive together, validated as one JSON array (see Decoder.decode_grouped).
_GROUP_VALIDATORS: dict[Kind, Callable[[bytes], Any]] = {
    kind: TypeAdapter(list[model]).validator.validate_json  # type: ignore[valid-type]
    for kind, model in _READING_MODELS.items()
}
_KINDS = {kind.value: kind for kind in Kind}


@dataclass(slots=True, frozen=True)
class Reject:
    """Why (part of) a message was not stored."""

    reason: RejectReason
    station: str
    topic: str
    detail: str


@dataclass(slots=True)
class Decoded:
    """The outcome of one message. ``station`` and ``kind`` are set when the topic was valid."""

    station: Station | None = None
    kind: Kind | None = None
    readings: list[Reading] = field(default_factory=list)
    status: Status | None = None
    rejects: list[Reject] = field(default_factory=list)


def _string_values(kind: Kind, readings: list[Reading]) -> int:
    """How many string values (not null) the readings hold."""
    return sum(getattr(r, name) is not None for name in _STRING_FIELDS[kind] for r in readings)


def _quotes(kind: Kind, reading: Reading) -> int:
    """The quotes a reading's JSON object takes without escapes or duplicate keys: two per key and string."""
    strings = 0 if kind is Kind.OCCUPANCY else _string_values(kind, [reading])
    return 2 * (len(_FIELDS_SET(reading)) + strings)


class _BadJsonError(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _BadJsonError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _BadJsonError(f"duplicate key {dup!r}")
    return obj


def parse_json(payload: bytes) -> Any:
    """Strict JSON: UTF-8 without BOM, no NaN/Infinity, no duplicate keys. Raises ValueError."""
    try:
        text = payload.decode("utf-8")
        return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except RecursionError as exc:
        raise _BadJsonError("nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise _BadJsonError(f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise _BadJsonError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc


def describe(exc: ValidationError) -> str:
    """A short, stable description of a validation error: ``field: message; ...``."""
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "reading"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - 3
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def clip(text: str, limit: int = STRING_FIELD_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Decoder:
    """Validates messages against the contract and the registry.

    Args:
        registry: the stations that may report.
        clock: seconds since the epoch; ``ts`` must lie within 7 days before and 5 minutes after it.
    """

    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time, fast: bool = True) -> None:
        self._registry = registry
        self._reporting = {s.id: s for s in registry.reporting}
        self._clock = clock
        self._fast = fast
        # reading topics of reporting stations, checked once: bounded by the registry (3 per station)
        self._routes: dict[str, tuple[Station, Kind]] = {}

    def decode(self, topic: str, payload: bytes) -> Decoded:
        out = Decoded()
        route = self._routes.get(topic)
        if route is not None:
            out.station, out.kind = route
        else:
            station_id, kind_text = self._split(topic, out)
            if station_id is None:
                return out
            reject = self._check_topic(station_id, kind_text, out)
            if reject:
                out.rejects.append(Reject(reject[0], clip(station_id), clip(topic), reject[1]))
                return out
            if out.kind is Kind.CONFIG:  # cloud -> device; not ours to store
                return out
            if out.kind in _READING_MODELS and station_id in self._reporting:
                self._routes[topic] = (self._reporting[station_id], out.kind)
        if len(payload) > MAX_PAYLOAD_BYTES:
            self._reject(out, topic, RejectReason.TOO_LARGE,
                         f"payload is {len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}")
            return out
        if self._fast and out.kind is not Kind.STATUS and self._readings_fast(payload, topic, out):
            return out
        try:
            doc = parse_json(payload)
        except ValueError as exc:
            self._reject(out, topic, RejectReason.BAD_JSON, str(exc))
            return out
        if out.kind is Kind.STATUS:
            self._status(doc, topic, out)
        else:
            self._readings(doc, topic, out)
        return out

    def decode_many(self, messages: Sequence[tuple[str, bytes]]) -> list[Decoded]:
        """:meth:`decode` of each message, in order, with :meth:`decode_grouped` first."""
        grouped = self.decode_grouped(messages)
        return [out if out is not None else self.decode(topic, payload)
                for out, (topic, payload) in zip(grouped, messages, strict=True)]

    def decode_grouped(self, messages: Sequence[tuple[str, bytes]]) -> list[Decoded | None]:
        """:meth:`decode` of the messages of one reading that can be validated together; None for the rest.

        Messages on known reading topics whose payload is one JSON object (``{`` to ``}``, no
        backslash, an even number of quotes) are grouped by kind and validated as one JSON array,
        which costs a third of validating them one by one. The grouping cannot change a verdict:
        with even quotes and no escapes every message boundary lies outside strings; each element's
        quotes must equal two per key and per string value, which only an object without a
        repeated key meets, so every value was validated (pydantic-core never sees the value a
        repeated key overwrites) and none is an object or an array (no field takes one). A boundary
        inside an element would need such a value, so each boundary lies between elements, and an
        array of as many elements as messages means one element per message. A group that fails
        any of this is left to :meth:`decode`, as is everything else (after one more try without the
        messages whose readings failed validation, so that one bad message does not cost the others).
        """
        results: list[Decoded | None] = [None] * len(messages)
        if self._fast and len(messages) > 1:
            groups: dict[Kind, list[tuple[int, int]]] = {}  # kind -> (message index, its quotes)
            routes = self._routes
            for i, (topic, payload) in enumerate(messages):
                route = routes.get(topic)
                if (route is not None and payload.startswith(b"{") and payload.endswith(b"}")
                        and len(payload) <= MAX_PAYLOAD_BYTES and b"\\" not in payload
                        and not (quotes := payload.count(b'"')) & 1):
                    groups.setdefault(route[1], []).append((i, quotes))
            for kind, members in groups.items():
                self._decode_group(kind, members, messages, results, retry=True)
        return results

    def _decode_group(self, kind: Kind, members: list[tuple[int, int]], messages: Sequence[tuple[str, bytes]],
                      results: list[Decoded | None], *, retry: bool) -> None:
        if len(members) < 2:
            return
        try:
            values: list[Reading] = _GROUP_VALIDATORS[kind](b"[" + b",".join(messages[i][1] for i, _ in members) + b"]")
        except ValidationError as exc:
            # the readings that failed are left to decode; the rest are tried together once more
            bad = {e["loc"][0] for e in exc.errors(include_url=False) if e["loc"] and isinstance(e["loc"][0], int)}
            if retry and bad:
                self._decode_group(kind, [m for n, m in enumerate(members) if n not in bad], messages, results,
                                   retry=False)
            return
        if len(values) != len(members) or any(q != _quotes(kind, v) for (_, q), v in zip(members, values, strict=True)):
            return
        now_ms = int(self._clock() * 1000)
        for (i, _), value in zip(members, values, strict=True):
            topic = messages[i][0]
            station, _ = self._routes[topic]
            out = Decoded(station, kind)
            self._check_one(value, now_ms, topic, out)
            results[i] = out

    def _split(self, topic: str, out: Decoded) -> tuple[str | None, str]:
        levels = topic.split("/")
        if len(levels) != 4 or levels[0] != _ROOT0 or levels[1] != _ROOT1 or not levels[2] or not levels[3]:
            out.rejects.append(Reject(RejectReason.BAD_TOPIC, "", clip(topic),
                                      f"expected {TOPIC_ROOT}/<station id>/<kind>"))
            return None, ""
        return levels[2], levels[3]

    def _check_topic(self, station_id: str, kind_text: str, out: Decoded) -> tuple[RejectReason, str] | None:
        kind = _KINDS.get(kind_text)
        if kind is None:
            return RejectReason.UNKNOWN_KIND, clip(
                f"unknown kind {kind_text!r}: expected one of {', '.join(k.value for k in Kind)}")
        out.kind = kind
        station = self._reporting.get(station_id)
        if station is not None:
            out.station = station
            return None
        station = self._registry.get(station_id)
        if station is None:
            return RejectReason.UNKNOWN_STATION, clip(f"station {station_id!r} is not in the registry")
        if not station.reports and out.kind is not Kind.CONFIG:
            return RejectReason.UNKNOWN_STATION, f"station {station_id} is {station.kind}: it has no telemetry"
        out.station = station
        return None

    def _reject(self, out: Decoded, topic: str, reason: RejectReason, detail: str) -> None:
        station = out.station.id if out.station else ""
        out.rejects.append(Reject(reason, station, clip(topic), clip(detail)))

    def _status(self, doc: Any, topic: str, out: Decoded) -> None:
        try:
            status = Status.model_validate(doc)
        except ValidationError as exc:
            self._reject(out, topic, RejectReason.SCHEMA, describe(exc))
            return
        if status.ts is not None and (why := self._ts_problem(status.ts, int(self._clock() * 1000))):
            self._reject(out, topic, RejectReason.TS_OUT_OF_RANGE, why)
            return
        out.status = status

    def _readings(self, doc: Any, topic: str, out: Decoded) -> None:
        if isinstance(doc, list):
            if not 1 <= len(doc) <= MAX_BATCH:
                self._reject(out, topic, RejectReason.SCHEMA,
                             f"a batch holds 1 to {MAX_BATCH} readings, this one {len(doc)}")
                return
            items = doc
        else:
            items = [doc]
        assert out.kind is not None  # noqa: S101 - set by _check_topic
        batch = isinstance(doc, list)
        try:
            valid: list[tuple[int, Reading]] = list(enumerate(_BATCH_ADAPTERS[out.kind].validate_python(items)))
        except ValidationError:
            valid = self._validate_each(_READING_MODELS[out.kind], items, batch, topic, out)
        self._check_readings(valid, batch, topic, out)

    def _readings_fast(self, payload: bytes, topic: str, out: Decoded) -> bool:
        """Decide a message whose readings are all valid in one pass; False leaves it to the reference path.

        pydantic-core keeps the last of duplicate keys where the reference path rejects them, so
        the fast path counts quotes: without backslashes (no escaped quotes), each key and each
        string value takes exactly two, so a payload with more than the readings' keys and string
        values account for holds a duplicate key (or something else the reference path must judge).
        """
        if b"\\" in payload:
            return False
        kind = out.kind
        assert kind is not None  # noqa: S101 - set by _check_topic
        try:
            value: Reading | list[Reading] = _JSON_VALIDATORS[kind](payload)
        except ValidationError:
            return False
        if not isinstance(value, list):  # one reading: the common message, so its own short way
            if payload.count(b'"') != _quotes(kind, value):
                return False
            self._check_one(value, int(self._clock() * 1000), topic, out)
            return True
        quotes = 2 * (sum(map(len, map(_FIELDS_SET, value))) + _string_values(kind, value))
        if not 1 <= len(value) <= MAX_BATCH or payload.count(b'"') != quotes:
            return False
        self._check_readings(list(enumerate(value)), True, topic, out)
        return True

    def _check_one(self, reading: Reading, now_ms: int, topic: str, out: Decoded) -> None:
        """:meth:`_check_readings` for a message of one reading, the common case first."""
        if now_ms - MAX_AGE_MS <= reading.ts <= now_ms + MAX_FUTURE_MS and (
                out.kind is Kind.OCCUPANCY or self._registry_problem(reading, out) is None):
            out.readings.append(reading)
        else:
            self._check_readings([(0, reading)], False, topic, out)

    def _check_readings(self, valid: list[tuple[int, Reading]], batch: bool, topic: str, out: Decoded) -> None:
        """What the models cannot know: the station's chargers and sensors, and the clock."""
        now_ms = int(self._clock() * 1000)
        lo, hi = now_ms - MAX_AGE_MS, now_ms + MAX_FUTURE_MS
        if out.kind is Kind.OCCUPANCY and all(lo <= r.ts <= hi for _, r in valid):  # the common case, quickly
            out.readings.extend(r for _, r in valid)
            return
        registry_bound = out.kind is not Kind.OCCUPANCY
        for index, reading in valid:
            if registry_bound and (why := self._registry_problem(reading, out)):
                self._reject(out, topic, RejectReason.SCHEMA, (f"[{index}] " if batch else "") + why)
            elif not lo <= reading.ts <= hi and (why := self._ts_problem(reading.ts, now_ms)):
                self._reject(out, topic, RejectReason.TS_OUT_OF_RANGE, (f"[{index}] " if batch else "") + why)
            else:
                out.readings.append(reading)

    def _validate_each(self, model: type[Reading], items: list[Any], batch: bool, topic: str,
                       out: Decoded) -> list[tuple[int, Reading]]:
        valid: list[tuple[int, Reading]] = []
        for index, item in enumerate(items):
            try:
                valid.append((index, model.model_validate(item)))
            except ValidationError as exc:
                self._reject(out, topic, RejectReason.SCHEMA, (f"[{index}] " if batch else "") + describe(exc))
        return valid

    @staticmethod
    def _registry_problem(reading: Reading, out: Decoded) -> str | None:
        station = out.station
        assert station is not None  # noqa: S101 - set by _check_topic
        if isinstance(reading, Charger):
            sockets = station.sockets(reading.charger_id)
            if sockets is None:
                return clip(f"charger_id: {reading.charger_id!r} is not a charger of {station.id}")
            if reading.sockets_in_use > sockets:
                return f"sockets_in_use: {reading.sockets_in_use} > the {sockets} sockets of {reading.charger_id}"
        elif isinstance(reading, Temperature) and reading.sensor not in station.sensors:
            return clip(f"sensor: {reading.sensor!r} is not a sensor of {station.id}")
        return None

    @staticmethod
    def _ts_problem(ts_ms: int, now_ms: int) -> str | None:
        if ts_ms > now_ms + MAX_FUTURE_MS:
            ahead = round((ts_ms - now_ms) / 1000) if ts_ms - now_ms < 2**53 else (ts_ms - now_ms) // 1000
            return clip(f"ts {ts_ms} is {ahead} s ahead of the server clock (at most 300 s)")
        if ts_ms < now_ms - MAX_AGE_MS:
            return f"ts {ts_ms} is more than {MAX_AGE_MS // 86_400_000} days old"
        return None
