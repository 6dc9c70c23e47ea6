"""``POST /v1/stations/{id}/telemetry``: HTTP ingress for devices that cannot speak MQTT."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Request

from gateway.api import problems
from gateway.api.deps import ServicesDep, StationDevice
from gateway.api.models import IngressResult
from gateway.api.problems import Problem
from telemetry.contract import MAX_PAYLOAD_BYTES, Kind, RejectReason, topic
from telemetry.schema import schemas

router = APIRouter(prefix="/v1/stations", tags=["ingress"], responses=problems.responses(401, 403, 404, 422, 503))


class IngressKind(StrEnum):
    OCCUPANCY = "occupancy"
    CHARGER = "charger"
    TEMPERATURE = "temperature"


def _body_schema() -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [schemas()[f"{k.value}.schema.json"]["oneOf"][0] for k in IngressKind]}}}}}


@router.post("/{station_id}/telemetry", status_code=202, openapi_extra=_body_schema(),
             summary="Readings of one kind (one object or a batch), authenticated with the station's password")
async def post_telemetry(services: ServicesDep, station: StationDevice, kind: IngressKind,
                         request: Request) -> IngressResult:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PAYLOAD_BYTES:
            raise Problem(422, f"payload is over {MAX_PAYLOAD_BYTES} bytes", title="Reading rejected",
                          reason=RejectReason.TOO_LARGE.value)
    mqtt_topic = topic(station.id, Kind(kind.value))
    decoded = services.decoder.decode(mqtt_topic, body)
    if decoded.rejects:
        first = decoded.rejects[0]
        raise Problem(422, first.detail, title="Reading rejected", reason=first.reason.value,
                      rejects=[{"reason": r.reason.value, "detail": r.detail} for r in decoded.rejects])
    await services.mqtt.publish(mqtt_topic, body)
    return IngressResult(station=station.id, kind=kind.value, readings=len(decoded.readings), published=True)
