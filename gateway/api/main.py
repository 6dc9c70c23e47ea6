"""The FastAPI application: routers, problem documents, metrics, docs served offline."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi_offline import FastAPIOffline

from gateway.api import problems
from gateway.api.routes import config, health, stations, summary, telemetry, visits
from gateway.config import Settings
from gateway.services import Services, open_services

DESCRIPTION = """Registry, live status, history and configuration of the rest stations (驿站) for outdoor
workers, and HTTP ingress for devices that cannot speak MQTT.

Authentication: `Authorization: Bearer <token>` (roles viewer and operator); the ingress takes the
station's id and password (HTTP Basic). Errors are `application/problem+json` (RFC 9457)."""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            yield

    app = FastAPIOffline(title="yizhan gateway", version="1", description=DESCRIPTION, lifespan=lifespan)
    problems.install(app)

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        services: Services | None = getattr(request.app.state, "services", None)
        if services is not None:
            services.metrics.requests.labels(route, request.method, str(response.status_code)).inc()
            services.metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    for module in (stations, summary, visits, config, telemetry, health):
        app.include_router(module.router)
    return app
