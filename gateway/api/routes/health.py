"""``/healthz`` (the process answers), ``/readyz`` (broker and InfluxDB), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api import problems
from gateway.api.deps import ServicesDep
from gateway.api.models import Ready
from gateway.api.problems import Problem

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Connected to the broker and InfluxDB answers",
            responses=problems.responses(503))
async def readyz(services: ServicesDep) -> Ready:
    ready = Ready(mqtt=services.mqtt.connected.is_set(), influxdb=await services.influx.ping())
    if not (ready.mqtt and ready.influxdb):
        down = [name for name, up in (("mqtt", ready.mqtt), ("influxdb", ready.influxdb)) if not up]
        raise Problem(503, f"not ready: {', '.join(down)} down", title="Not ready", **ready.model_dump())
    return ready


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
