"""``/v1/visits``: visits (人次) per hour, Beijing day or month, for the city, its districts or stations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from gateway import visits
from gateway.api import problems
from gateway.api.deps import ServicesDep, Viewer, aware
from gateway.api.models import Visits, VisitsBucket, VisitsSeries
from gateway.api.problems import Problem
from gateway.visits import By, Every
from telemetry.storage import day_of

router = APIRouter(tags=["visits"], responses=problems.responses(401, 422, 503))


@router.get("/v1/visits", summary="Visits (人次) from the door counters: hourly rollups plus the open hour")
async def get_visits(services: ServicesDep, _: Viewer,
                     start: Annotated[datetime | None, Query(description="Default: today's start, Beijing time; "
                                                                         "moved back to its bucket's start")] = None,
                     end: Annotated[datetime | None, Query(description="Exclusive; default and at most: now")] = None,
                     by: By = By.CITY, every: Every = Every.DAY) -> Visits:
    now = datetime.now(UTC)
    end = aware(end, "end") or now
    start = aware(start, "start") or visits.utc(day_of(int(now.timestamp() * 1000)))
    if start >= end:
        raise Problem(422, "start must be before end")
    if start < visits.EARLIEST:
        raise Problem(422, f"start must be after {visits.EARLIEST.date().isoformat()}")
    if start > now + timedelta(minutes=1):
        raise Problem(422, "start is in the future")
    w = visits.window(start, end, every, now)
    if (n := visits.buckets(w.start_ms, max(w.end_ms, w.start_ms + 1), every)) > visits.MAX_BUCKETS:
        raise Problem(422, f"{n} {every.value} buckets asked; at most {visits.MAX_BUCKETS} per request: "
                           "ask for a coarser every or a shorter range")
    totals = await visits.visits(services.influx, w, by, every)
    series = [VisitsSeries(key=key, total=sum(per.values()),
                           buckets=[VisitsBucket(start=visits.utc(ms), visits=n) for ms, n in sorted(per.items())])
              for key, per in sorted(totals.items())]
    return Visits(start=visits.utc(w.start_ms), end=visits.utc(w.end_ms), by=by.value, every=every.value,
                  total=sum(s.total for s in series), series=series)
