"""Dependencies of the routes, as ``Annotated`` aliases: services, the caller's role, the station."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from gateway.api.problems import Problem
from gateway.credentials import Role, Token
from gateway.services import Services
from telemetry.registry import Station


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False, description="An API token: `python -m gateway token add --role viewer NAME`")
_basic = HTTPBasic(auto_error=False, description="The station id and its MQTT password")


def _authenticated(services: ServicesDep,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Token:
    if credentials is None:
        raise Problem(401, "send an API token: Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
    token = services.tokens.verify(credentials.credentials)
    if token is None:
        raise Problem(401, "the API token is not valid", headers={"WWW-Authenticate": "Bearer"})
    return token


def _operator(token: Annotated[Token, Depends(_authenticated)]) -> Token:
    if token.role is not Role.OPERATOR:
        raise Problem(403, f"this needs the operator role; token {token.name!r} is a {token.role.value}")
    return token


Viewer = Annotated[Token, Depends(_authenticated)]
Operator = Annotated[Token, Depends(_operator)]
StationId = Annotated[str, Path(description="A station id of the registry, e.g. PL-KT-001", max_length=64)]


def _station(services: ServicesDep, station_id: StationId) -> Station:
    station = services.registry.get(station_id)
    if station is None:
        raise Problem(404, f"no station {station_id!r} in the registry")
    return station


StationDep = Annotated[Station, Depends(_station)]


def _station_device(services: ServicesDep, station: StationDep,
                    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)]) -> Station:
    if not services.passwords.configured:
        raise Problem(503, "station credentials are not configured (STATION_PASSWORD_FILE)",
                      title="credentials unavailable")
    if credentials is None:
        raise Problem(401, "send the station's credentials: HTTP Basic, the station id and its password",
                      headers={"WWW-Authenticate": 'Basic realm="stations"'})
    if credentials.username != station.id:
        raise Problem(403, f"credentials of {credentials.username!r} cannot send for {station.id}")
    if not services.passwords.check(station.id, credentials.password):
        raise Problem(401, "wrong station password", headers={"WWW-Authenticate": 'Basic realm="stations"'})
    return station


StationDevice = Annotated[Station, Depends(_station_device)]


def aware(value: datetime | None, name: str) -> datetime | None:
    """A query parameter's time, refused without a time zone offset."""
    if value is not None and value.tzinfo is None:
        raise Problem(422, f"{name} needs a time zone offset, e.g. 2026-11-29T08:00:00+08:00")
    return value
