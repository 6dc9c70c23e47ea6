"""The gateway's JSON bodies (OpenAPI 3.1 is generated from them), and how a station view is built."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.live import StationNow, free_seats, indoor_celsius, sockets_in_use, sockets_total
from telemetry.contract import AgentConfig
from telemetry.registry import Station


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


def _dt(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


class Location(_Out):
    lat: float
    lon: float


class StationSummary(_Out):
    """Registry data and live state of one station; live fields are null while unknown."""

    id: str
    name: str
    district: str
    kind: Literal["smart", "visual", "basic"]
    capacity: int
    location: Location
    reports: bool = Field(description="Only smart and visual stations report telemetry")
    online: bool | None
    last_seen: datetime | None
    people: int | None
    free_seats: int | None
    sockets_total: int
    sockets_in_use: int | None
    sockets_free: int | None
    indoor_celsius: float | None


class ChargerView(_Out):
    id: str
    sockets: int
    sockets_in_use: int | None
    power_w: float | None
    energy_wh: float | None
    fault: str | None
    updated: datetime | None


class SensorView(_Out):
    name: str
    celsius: float | None
    humidity_pct: float | None
    updated: datetime | None


class StatusView(_Out):
    state: Literal["online", "offline"]
    at: datetime | None
    fw: str | None
    uptime_s: int | None
    buffered: int | None
    dropped: int | None
    driver_errors: int | None
    config_rev: str | None
    error: str | None


class StationDetail(StationSummary):
    entries: int | None
    exits: int | None
    chargers: list[ChargerView]
    sensors: list[SensorView]
    status: StatusView | None
    config: AgentConfig | None = Field(description="The config retained for the station, if any")


class StationPage(_Out):
    items: list[StationSummary]
    total: int
    limit: int
    offset: int


class NearbyStation(StationSummary):
    distance_m: float


class Coldest(_Out):
    station: str
    celsius: float


class Totals(_Out):
    stations: int
    reporting: int
    online: int
    offline: int
    unknown: int
    people: int
    capacity: int
    free_seats: int
    sockets_total: int
    sockets_in_use: int
    coldest: Coldest | None


class DistrictTotals(Totals):
    district: str


class Summary(_Out):
    city: Totals
    districts: list[DistrictTotals]


class Point(_Out):
    model_config = ConfigDict(frozen=True, extra="allow")
    time: datetime


class HistorySeries(_Out):
    tags: dict[str, str]
    points: list[Point]


class History(_Out):
    station: str
    kind: str
    start: datetime
    end: datetime
    every_s: float = Field(description="The interval used; coarser than asked when the range needs it")
    source: Literal["raw", "rollup"] = Field(description="rollup for ranges over 3 days: whole hours, means, "
                                             "maxima and minima only (no last entries, exits, energy or humidity)")
    series: list[HistorySeries]


class VisitsBucket(_Out):
    start: datetime = Field(description="The bucket's start: an hour, a Beijing day or a Beijing month")
    visits: int


class VisitsSeries(_Out):
    key: str = Field(description="The district or station id; `city` for the whole city")
    total: int
    buckets: list[VisitsBucket] = Field(description="Buckets with readings, oldest first")


class Visits(_Out):
    start: datetime = Field(description="The range's start, at its first bucket's start")
    end: datetime = Field(description="The range's end (exclusive): an hour, or now when the range reaches it")
    by: Literal["city", "district", "station"]
    every: Literal["hour", "day", "month"]
    total: int
    series: list[VisitsSeries]


class ConfigResult(_Out):
    station: str
    config: AgentConfig
    acknowledged: bool = Field(description="The station's latest status reports this config's rev")
    applied_rev: str | None = Field(description="The config rev the station reports running")
    error: str | None = Field(description="Why the station refused its last config, if it did")


class IngressResult(_Out):
    station: str
    kind: str
    readings: int
    published: bool = Field(description="The broker acknowledged the message (QoS 1)")


class Ready(_Out):
    mqtt: bool
    influxdb: bool


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON: {type(value).__name__}")


def json_response(content: object) -> Response:
    """Plain data straight to JSON, for the busiest routes (the route's response_model documents it;
    schemathesis checks the two agree)."""
    return Response(json.dumps(content, default=_encode, ensure_ascii=False, separators=(",", ":")),
                    media_type="application/json")


def summary_of(station: Station, state: StationNow) -> dict[str, object]:
    in_use = sockets_in_use(station, state)
    total = sockets_total(station)
    return {
        "id": station.id, "name": station.name, "district": station.district, "kind": station.kind.value,
        "capacity": station.capacity, "location": {"lat": station.location.lat, "lon": station.location.lon},
        "reports": station.reports, "online": state.online, "last_seen": _dt(state.last_seen_ms),
        "people": state.people, "free_seats": free_seats(station, state), "sockets_total": total,
        "sockets_in_use": in_use, "sockets_free": None if in_use is None else max(total - in_use, 0),
        "indoor_celsius": indoor_celsius(state),
    }


def detail_of(station: Station, state: StationNow) -> StationDetail:
    chargers = []
    for spec in station.chargers:
        now = state.chargers.get(spec.id)
        chargers.append(ChargerView(id=spec.id, sockets=spec.sockets,
                                    sockets_in_use=now.sockets_in_use if now else None,
                                    power_w=now.power_w if now else None, energy_wh=now.energy_wh if now else None,
                                    fault=now.fault if now else None, updated=_dt(now.ts) if now else None))
    sensors = []
    for name in station.sensors:
        sensor = state.sensors.get(name)
        sensors.append(SensorView(name=name, celsius=sensor.celsius if sensor else None,
                                  humidity_pct=sensor.humidity_pct if sensor else None,
                                  updated=_dt(sensor.ts) if sensor else None))
    s = state.status
    status = None if s is None else StatusView(
        state=s.state, at=_dt(state.status_ms), fw=s.fw, uptime_s=s.uptime_s, buffered=s.buffered,
        dropped=s.dropped, driver_errors=s.driver_errors, config_rev=s.config_rev, error=s.error)
    return StationDetail.model_validate({**summary_of(station, state), "entries": state.entries,
                                         "exits": state.exits, "chargers": chargers, "sensors": sensors,
                                         "status": status, "config": state.desired_config})


class ReportFile(_Out):
    period: str = Field(description="YYYY-MM for a month's report, YYYY for a year's")
    month: str | None = Field(description="YYYY-MM; null for a year's report")
    url: str
    bytes: int
    created: datetime


class ReportList(_Out):
    reports: list[ReportFile]
