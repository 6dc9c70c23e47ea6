"""``/v1/summary``: totals per district and for the city."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Response

from gateway.api import problems
from gateway.api.deps import ServicesDep, Viewer
from gateway.api.models import Coldest, DistrictTotals, Summary, Totals
from gateway.live import LiveState, free_seats, indoor_celsius, sockets_in_use, sockets_total
from gateway.services import Services
from telemetry.registry import DISTRICT_CODES, Station

router = APIRouter(tags=["summary"], responses=problems.responses(401))


def _totals(stations: list[Station], live: LiveState) -> tuple[dict[str, int], Coldest | None]:
    online = offline = people = free = in_use = 0
    coldest: Coldest | None = None
    for station in stations:
        if not station.reports:
            continue
        state = live.get(station.id)
        online += state.online is True
        offline += state.online is False
        people += state.people or 0
        free += free_seats(station, state) or 0
        in_use += sockets_in_use(station, state) or 0
        celsius = indoor_celsius(state)
        if state.online and celsius is not None and (coldest is None or celsius < coldest.celsius):
            coldest = Coldest(station=station.id, celsius=celsius)
    reporting = sum(s.reports for s in stations)
    return {"stations": len(stations), "reporting": reporting, "online": online, "offline": offline,
            "unknown": reporting - online - offline, "people": people,
            "capacity": sum(s.capacity for s in stations if s.reports), "free_seats": free,
            "sockets_total": sum(sockets_total(s) for s in stations), "sockets_in_use": in_use}, coldest


@router.get("/v1/summary", summary="Stations online, people, free seats, sockets in use, coldest station",
            response_model=Summary)
async def summary(services: ServicesDep, _: Viewer) -> Response:
    """Computed at most once a second, by one request while the others wait for it (single flight):
    with tens of thousands of stations it walks them all."""
    cached = services.summary
    if cached is None or time.monotonic() - cached[0] >= 1.0:
        async with services.summary_lock:
            cached = services.summary
            if cached is None or time.monotonic() - cached[0] >= 1.0:
                body = await asyncio.to_thread(lambda: _summary(services).model_dump_json().encode())
                cached = services.summary = (time.monotonic(), body)
    return Response(cached[1], media_type="application/json")


def _summary(services: Services) -> Summary:
    """One pass over the stations, by district; the city is the sum of its districts."""
    by_district: dict[str, list[Station]] = {d: [] for d in DISTRICT_CODES}
    order: dict[str, int] = {}
    for i, station in enumerate(services.registry.stations):
        by_district[station.district].append(station)
        order[station.id] = i
    parts = {d: _totals(stations, services.live) for d, stations in by_district.items()}
    city = {k: sum(counts[k] for counts, _ in parts.values()) for k in next(iter(parts.values()))[0]}
    colds = [coldest for _, coldest in parts.values() if coldest is not None]
    # the first in registry order among equally cold stations, as one pass over the city would find
    coldest = min(colds, key=lambda c: (c.celsius, order[c.station])) if colds else None
    return Summary(city=Totals.model_validate({**city, "coldest": coldest}),
                   districts=[DistrictTotals.model_validate({"district": d, **counts, "coldest": cold})
                              for d, (counts, cold) in parts.items()])
