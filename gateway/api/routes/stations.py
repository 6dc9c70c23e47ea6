"""``/v1/stations``: the registry with live state, one station in full, its history, the nearest open ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response

from gateway import queries
from gateway.api import problems
from gateway.api.deps import ServicesDep, StationDep, Viewer, aware
from gateway.api.models import (
    History,
    HistorySeries,
    NearbyStation,
    Point,
    StationDetail,
    StationPage,
    detail_of,
    json_response,
    summary_of,
)
from gateway.api.problems import Problem
from gateway.live import StationNow, free_seats, sockets_in_use, sockets_total
from gateway.queries import HistoryKind
from telemetry.registry import DISTRICT_CODES, Station, StationKind

router = APIRouter(prefix="/v1/stations", tags=["stations"], responses=problems.responses(401, 404, 422, 503))

District = Annotated[str | None, Query(pattern="^(" + "|".join(DISTRICT_CODES) + ")$",
                                       description="One of " + ", ".join(DISTRICT_CODES))]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@router.get("", summary="Stations with live state", response_model=StationPage)
def list_stations(services: ServicesDep, _: Viewer, district: District = None, kind: StationKind | None = None,
                  online: bool | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Response:
    live = services.live
    matched = [s for s in services.registry.stations
               if (district is None or s.district == district) and (kind is None or s.kind is kind)
               and (online is None or live.get(s.id).online is online)]
    page = [summary_of(s, live.get(s.id)) for s in matched[offset:offset + limit]]
    return json_response({"items": page, "total": len(matched), "limit": limit, "offset": offset})


@router.get("/nearest", summary="The nearest open stations with free seats (and a free socket)",
            response_model=list[NearbyStation])
def nearest(services: ServicesDep, _: Viewer, lat: Annotated[float, Query(ge=-90, le=90)],
            lon: Annotated[float, Query(ge=-180, le=180)], limit: Annotated[int, Query(ge=1, le=50)] = 5,
            charge: Annotated[bool, Query(description="Only stations with a free charger socket")] = False,
            ) -> Response:
    live = services.live

    def open_now(station: Station) -> bool:
        state = live.get(station.id)
        return (state.online is True and bool(free_seats(station, state))
                and (not charge or _socket_free(station, state)))

    closest = services.geo.nearest(lat, lon, limit, open_now)
    return json_response([{**summary_of(station, services.live.get(station.id)), "distance_m": round(distance, 1)}
                          for distance, station in closest])


def _socket_free(station: Station, state: StationNow) -> bool:
    in_use = sockets_in_use(station, state)
    return in_use is not None and in_use < sockets_total(station)


@router.get("/{station_id}", summary="One station, with every charger and sensor")
def get_station(services: ServicesDep, _: Viewer, station: StationDep) -> StationDetail:
    return detail_of(station, services.live.get(station.id))


@router.get("/{station_id}/readings", summary="History from InfluxDB, downsampled")
async def readings(services: ServicesDep, _: Viewer, station: StationDep, kind: HistoryKind,
                   start: Annotated[datetime | None, Query(description="Default: 24 h before end")] = None,
                   end: Annotated[datetime | None, Query(description="Default: now")] = None,
                   every: Annotated[str | None, Query(pattern=r"^[1-9]\d{0,5}[smhd]$",
                                                      description="Interval, e.g. 30s, 5m, 1h, 1d")] = None,
                   ) -> History:
    end = aware(end, "end") or datetime.now(UTC)
    start = aware(start, "start") or end - timedelta(hours=24)
    if start >= end:
        raise Problem(422, "start must be before end")
    if end - start > timedelta(days=400):
        raise Problem(422, "at most 400 days per request")
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    asked = int(every[:-1]) * _UNITS[every[-1]] * 1000 if every else None
    interval = queries.every_ms(start_ms, end_ms, asked)
    series = await services.influx.query(queries.history_query(station.id, kind, start_ms, end_ms, interval))
    out = [HistorySeries(tags=dict(s.tags),
                         points=[Point.model_validate({**row, "time": datetime.fromtimestamp(row["time"] / 1000, UTC)})
                                 for row in s.rows()])
           for s in series]
    return History(station=station.id, kind=kind.value, start=start, end=end, every_s=interval / 1000, series=out)

