"""``/v1/stations/{id}/config``: push a config to a station (retained), and see whether it runs it."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Annotated

from fastapi import APIRouter, Query

from gateway.api import problems
from gateway.api.deps import Operator, ServicesDep, StationDep, Viewer
from gateway.api.models import ConfigResult
from gateway.api.problems import Problem
from gateway.services import Services
from telemetry.contract import AgentConfig
from telemetry.registry import Station

router = APIRouter(prefix="/v1/stations", tags=["config"], responses=problems.responses(401, 403, 404, 409, 422, 503))


def _with_rev(config: AgentConfig) -> AgentConfig:
    """A config without its own ``rev`` gets one derived from its content, so acknowledgement is checkable."""
    if config.rev != "default":
        return config
    body = config.model_dump_json(exclude={"rev", "generation"}).encode()
    return config.model_copy(update={"rev": "r-" + hashlib.sha256(body).hexdigest()[:12]})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _result(services: Services, station: Station, config: AgentConfig) -> ConfigResult:
    status = services.live.get(station.id).status
    applied = status.config_rev if status else None
    return ConfigResult(station=station.id, config=config, acknowledged=applied == config.rev, applied_rev=applied,
                        error=status.error if status else None)


@router.put("/{station_id}/config", summary="Push a config to a station (operator)")
async def put_config(services: ServicesDep, _: Operator, station: StationDep, config: AgentConfig,
                     wait: Annotated[float, Query(ge=0, le=30, description="Seconds to wait for the station to "
                                                                             "report it runs the config")] = 0,
                     ) -> ConfigResult:
    if not station.reports:
        raise Problem(409, f"{station.id} is a {station.kind.value} station: it has no device to configure")
    config = _with_rev(config)
    config = config.model_copy(update={"generation": services.mqtt.configs.next_generation(station.id, now_ms())})
    await services.mqtt.publish_config(station.id, config)
    deadline = time.monotonic() + wait
    result = _result(services, station, config)
    while not result.acknowledged and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        result = _result(services, station, config)
    return result


@router.get("/{station_id}/config", summary="The config retained for a station, and whether it runs it")
def get_config(services: ServicesDep, _: Viewer, station: StationDep) -> ConfigResult:
    config = services.live.get(station.id).desired_config
    if config is None:
        raise Problem(404, f"no config has been pushed to {station.id}; it runs its defaults")
    return _result(services, station, config)
