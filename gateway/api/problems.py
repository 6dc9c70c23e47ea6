"""Errors as ``application/problem+json`` (RFC 9457): a type, a clear title, the status, a detail."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.exceptions import DependencyUnavailableError, InfluxQueryError

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
TITLES = {400: "Bad request", 401: "Authentication required", 403: "Not allowed", 404: "Not found",
          405: "Method not allowed", 409: "Conflict", 413: "Payload too large", 422: "Invalid input",
          500: "Internal error", 503: "Service unavailable"}


class ProblemDocument(BaseModel):
    """RFC 9457 problem details (extension members may follow)."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem documents a route can answer with."""
    schema = ProblemDocument.model_json_schema()
    return {code: {"description": TITLES.get(code, "Error"),
                   "content": {PROBLEM: {"schema": schema}}} for code in codes}


class Problem(Exception):  # noqa: N818 - it is an RFC 9457 problem, raised to answer one
    """Raise to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        self.status, self.detail, self.title = status, detail, title or TITLES.get(status, "Error")
        self.headers, self.extra = headers, extra
        super().__init__(detail)


def problem(status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title or TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI) -> None:
    """Every error the app can produce, as a problem document; never a traceback."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.detail, title=exc.title, headers=exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem(422, detail, errors=errors)

    @app.exception_handler(DependencyUnavailableError)
    async def _unavailable(_: Request, exc: DependencyUnavailableError) -> JSONResponse:
        return problem(503, str(exc), title=f"{exc.dependency} unavailable", headers={"Retry-After": "5"})

    @app.exception_handler(InfluxQueryError)
    async def _influx(_: Request, exc: InfluxQueryError) -> JSONResponse:
        logger.error("InfluxDB refused a query: %s", exc)
        return problem(503, "InfluxDB could not answer this query", title="influxdb unavailable")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "an unexpected error occurred; it has been logged")
