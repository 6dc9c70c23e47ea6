"""InfluxQL reads through the 1.x ``/query`` API, which 2.x/3.x also answer for mapped buckets (DBRP).

The rollups are computed from InfluxQL aggregates (``ingest/rollup.py``); this client sends a
request of several statements and hands back each statement's series. The request asks for
``epoch=ms`` (integer timestamps, not RFC 3339 text to parse). :meth:`InfluxQL.tables` asks for the
same result as MessagePack (``Accept: application/x-msgpack``, which InfluxDB 1.x answers: 40% fewer
bytes and half the decoding of JSON) uncompressed (gzip would cost the server CPU on a local link),
and leaves each series' values as lists: for reading raw columns back. Errors:
:class:`InfluxUnavailableError` (unreachable, timed out, 5xx, auth) or :class:`InfluxQueryError` (a
statement refused).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import msgpack

from ingest.exceptions import InfluxQueryError, InfluxUnavailableError
from ingest.writer import map_httpx
from telemetry.settings import InfluxSettings

logger = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Series:
    """One series of a statement's result: its tags, and rows as column -> value."""

    name: str
    tags: dict[str, str]
    rows: list[dict[str, Any]]


@dataclass(slots=True, frozen=True)
class Table:
    """One series of a statement's result as InfluxDB sends it: tags sorted by key, rows as lists."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]


class InfluxQL:
    """Runs InfluxQL against one database.

    Args:
        url: the server (1.x, or 2.x/3.x with the v1-compatible API).
        database: the database (2.x/3.x: the DBRP-mapped name).
        token: 2.x/3.x API token (sent as ``Authorization: Token``); else ``username``/``password``.
    """

    def __init__(self, *, url: str, database: str, username: str | None = None, password: str | None = None,
                 token: str | None = None, ca_file: Path | None = None, timeout: float = 300.0) -> None:
        self._db = database
        auth = (username, password or "") if username and not token else None
        headers = {"Authorization": f"Token {token}"} if token else {}
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._http = httpx.AsyncClient(base_url=url, auth=auth, headers=headers, timeout=timeout, verify=verify)

    @classmethod
    def from_settings(cls, s: InfluxSettings) -> InfluxQL:
        return cls(url=s.influx_url, database=s.influx_db, username=s.influx_username, password=s.influx_password,
                   token=s.influx_token if s.influx_v2 else None, ca_file=s.influx_ca_file)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def query(self, statements: Sequence[str]) -> list[list[Series]]:
        """Run the statements in one request; the series of each, in order."""
        body = await self._post(statements, {})
        return [[_series(s) for s in result] for result in _results(body, statements)]

    async def tables(self, statements: Sequence[str]) -> list[list[Table]]:
        """:meth:`query`, the series as :class:`Table` (MessagePack on the wire)."""
        body = await self._post(statements, {"Accept": "application/x-msgpack", "Accept-Encoding": "identity"})
        return [[_table(s) for s in result] for result in _results(body, statements)]

    async def _post(self, statements: Sequence[str], headers: dict[str, str]) -> dict[str, Any]:
        text = ";\n".join(statements)
        with map_httpx():
            response = await self._http.post("/query", data={"q": text, "db": self._db, "epoch": "ms"},
                                             headers=headers)
        if response.status_code >= 500 or response.status_code in (401, 403, 404, 408, 429):
            raise InfluxUnavailableError(f"query: HTTP {response.status_code}: {response.text[:300]}")
        try:
            body = _decode(response)
        except ValueError as exc:
            raise InfluxUnavailableError(f"query: HTTP {response.status_code}: not JSON or MessagePack") from exc
        if "error" in body:
            raise InfluxQueryError(text, str(body["error"]))
        return body

    async def execute(self, statement: str) -> None:
        """A statement without a result worth reading (``CREATE RETENTION POLICY``, ...)."""
        await self.query([statement])


def _decode(response: httpx.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("application/x-msgpack"):
        body = msgpack.unpackb(response.content, raw=False, strict_map_key=False)
    else:
        body = response.json()
    if not isinstance(body, dict):
        raise ValueError("not an object")  # noqa: TRY004 - translated to InfluxUnavailableError by the caller
    return body


def _results(body: dict[str, Any], statements: Sequence[str]) -> list[list[dict[str, Any]]]:
    """Each statement's raw series, a statement's error raised."""
    out = []
    for result, statement in zip(body.get("results", []), statements, strict=True):
        if "error" in result:
            raise InfluxQueryError(statement, str(result["error"]))
        out.append(result.get("series") or [])
    return out


def _table(raw: dict[str, Any]) -> Table:
    return Table(raw.get("name", ""), dict(sorted((raw.get("tags") or {}).items())), raw["columns"],
                 raw.get("values") or [])


def _series(raw: dict[str, Any]) -> Series:
    columns = raw["columns"]
    return Series(raw.get("name", ""), dict(raw.get("tags") or {}),
                  [dict(zip(columns, values, strict=True)) for values in raw.get("values", [])])
