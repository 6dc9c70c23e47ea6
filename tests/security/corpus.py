"""The hostile corpus (``tests/security/hostile/``): its manifest read into cases with concrete payloads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from telemetry.contract import TELEMETRY_KINDS, TOPIC_ROOT

HOSTILE = Path(__file__).with_name("hostile")
STATION = "PL-KT-001"
_CONTROL = dict.fromkeys([*range(32), 127], "\ufffd")


class _Generate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repeat: list[tuple[str, int]] | None = None
    batch: Annotated[int, Field(ge=1)] | None = None
    pad_to: int | None = None

    def bytes(self, ts: int) -> bytes:
        if self.repeat is not None:
            return b"".join(text.encode() * times for text, times in self.repeat)
        assert self.batch is not None
        body = ("[" + ",".join(f'{{"ts":{ts - i},"seq":{i + 1},"people":{i % 7}}}' for i in range(self.batch))
                + "]").encode()
        if self.pad_to is not None:
            assert len(body) <= self.pad_to, f"a batch of {self.batch} is {len(body)} bytes, over {self.pad_to}"
            body += b" " * (self.pad_to - len(body))
        return body


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    file: str | None = None
    payload: str | None = None
    generate: _Generate | None = None
    kind: str = "occupancy"
    station: str = STATION
    station_repeat: tuple[str, int] | None = None
    topic: str | None = None
    reject: str | None = None
    detail: str | None = None
    detail_re: str | None = None
    rejects: list[tuple[str, str]] | None = None
    stored: dict[str, Any] | None = None
    ignored: bool = False
    not_delivered: bool = False
    broker: Literal["protocol_error", "malformed"] | None = None
    http: bool = True
    http_detail: str | None = None

    @model_validator(mode="after")
    def _one_payload_one_outcome(self) -> _Entry:
        assert sum(x is not None for x in (self.file, self.payload, self.generate)) == 1, self.name
        outcomes = [self.reject is not None, self.rejects is not None, self.stored is not None, self.ignored,
                    self.not_delivered, self.broker is not None]
        assert sum(outcomes) == 1, f"{self.name}: exactly one outcome"
        assert self.reject is None or (self.detail is None) != (self.detail_re is None), self.name
        return self


@dataclass(frozen=True)
class Expected:
    """One reject: its reason, and its detail as the decoder gives it (exact, or a regex)."""

    reason: str
    detail: str | None = None
    pattern: str | None = None

    def matches(self, reason: str, detail: str, *, stored: bool) -> bool:
        """``stored``: ``detail`` was read back from InfluxDB, where control characters became U+FFFD."""
        if reason != self.reason:
            return False
        if self.pattern is not None:
            return re.fullmatch(self.pattern, detail) is not None
        assert self.detail is not None
        return detail == (self.detail.translate(_CONTROL) if stored else self.detail)


@dataclass(frozen=True)
class Case:
    name: str
    topic: str
    station: str
    payload: bytes
    ts: int
    """The case's own timestamp: ``__NOW__`` in its payload, the newest reading of a generated batch."""
    rejects: tuple[Expected, ...]
    stored: dict[str, Any] | None
    ignored: bool
    delivered: bool
    broker: str | None
    http: bool
    http_detail: str | None

    @property
    def kind(self) -> str:
        return self.topic.rsplit("/", 1)[-1]

    @property
    def reaches_ingest(self) -> bool:
        return self.delivered and self.broker is None

    @property
    def reject_station(self) -> str:
        """The ``station`` field of this case's reject points: the topic's station id, clipped like details."""
        return self.station if len(self.station) <= 256 else self.station[:255] + "…"


def load(now_ms: int) -> list[Case]:
    """Every case; case ``i`` is stamped ``now_ms - 2000 * (i + 1)``, so no two share a timestamp."""
    entries = [_Entry.model_validate(e) for e in yaml.safe_load((HOSTILE / "manifest.yaml").read_text("utf-8"))]
    names = [e.name for e in entries]
    assert len(set(names)) == len(names), "case names must be unique"
    return [_case(e, now_ms - 2000 * (i + 1)) for i, e in enumerate(entries)]


def _case(e: _Entry, ts: int) -> Case:
    if e.file is not None:
        raw = (HOSTILE / e.file).read_bytes()
    elif e.payload is not None:
        raw = e.payload.encode()
    else:
        assert e.generate is not None
        raw = e.generate.bytes(ts)
    station = e.station_repeat[0] * e.station_repeat[1] if e.station_repeat else e.station
    topic = e.topic or f"{TOPIC_ROOT}/{station}/{e.kind}"
    if e.reject is not None:
        rejects: tuple[Expected, ...] = (Expected(e.reject, e.detail, e.detail_re),)
    else:
        rejects = tuple(Expected(reason, detail) for reason, detail in e.rejects or ())
    http = (e.http and e.topic is None and station == STATION and e.kind in {k.value for k in TELEMETRY_KINDS}
            and (bool(rejects) or e.stored is not None))
    return Case(e.name, topic, station, raw.replace(b"__NOW__", str(ts).encode()), ts, rejects, e.stored,
                e.ignored, not e.not_delivered, e.broker, http, e.http_detail)
