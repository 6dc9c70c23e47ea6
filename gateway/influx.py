"""InfluxQL over HTTP (``/query``): InfluxDB 1.x, and 2.x/3.x through their v1-compatible endpoint.

One client for reads; httpx errors are translated here to :class:`DependencyUnavailableError` or
:class:`InfluxQueryError`.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from gateway.exceptions import DependencyUnavailableError, InfluxQueryError

_NOTHING_YET = re.compile(r"database not found|retention policy not found")
"""Nothing written yet (no reading, or no rollup: the rollup tier appears when ingest first starts)."""


@dataclass(slots=True, frozen=True)
class Series:
    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, v, strict=True)) for v in self.values]


class InfluxReader:
    """Reads with InfluxQL; ``token`` authenticates against 2.x/3.x (whose DBRP mapping names ``database``)."""

    def __init__(self, *, url: str, database: str, username: str | None = None, password: str | None = None,
                 token: str | None = None, ca_file: Path | None = None, timeout: float = 10.0) -> None:
        self._db = database
        headers = {"Authorization": f"Token {token}"} if token else {}
        auth = (username, password or "") if username and not token else None
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._http = httpx.AsyncClient(base_url=url, headers=headers, auth=auth, timeout=timeout, verify=verify)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def ping(self) -> bool:
        try:
            response = await self._http.get("/ping")
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    async def query(self, q: str) -> list[Series]:
        """Run one statement; the series it returns (empty when there is no data, or no such database or
        retention policy yet)."""
        try:
            response = await self._http.get("/query", params={"db": self._db, "q": q, "epoch": "ms"})
        except httpx.HTTPError as exc:
            raise DependencyUnavailableError("influxdb", f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (401, 403):
            raise DependencyUnavailableError("influxdb", f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise InfluxQueryError(response.status_code, response.text[:300]) from exc
        if "error" in body:
            raise InfluxQueryError(response.status_code, str(body["error"]))
        result = body["results"][0]
        if "error" in result:
            if _NOTHING_YET.search(str(result["error"])):
                return []
            raise InfluxQueryError(response.status_code, str(result["error"]))
        return [Series(s["name"], s.get("tags", {}), s["columns"], s.get("values", []))
                for s in result.get("series", [])]
