"""Writes line-protocol batches to InfluxDB: the 1.x HTTP API, or 2.x/3.x through influxdb-client.

Both writers raise only :class:`InfluxUnavailableError` (retry later; the batch goes to the spool)
or :class:`InfluxRejectedError` (4xx: the points are refused; the caller narrows the batch down).
Third-party exceptions are translated here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, Self

import httpx

from ingest.exceptions import InfluxRejectedError, InfluxUnavailableError
from telemetry.settings import InfluxSettings
from telemetry.storage import Tier

logger = logging.getLogger(__name__)


class Writer(Protocol):
    async def write(self, body: bytes, tier: Tier = Tier.RAW) -> None:
        """Write newline-separated points with millisecond timestamps to one tier."""

    async def ready(self) -> bool:
        """Whether the server answers and the database exists (creating it if it can)."""

    async def aclose(self) -> None: ...


@contextlib.contextmanager
def map_httpx() -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise InfluxUnavailableError(f"timed out: {exc!r}") from exc
    except httpx.HTTPError as exc:
        raise InfluxUnavailableError(f"unreachable: {exc!r}") from exc


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))[:500]
    except ValueError:
        return response.text[:500]


class InfluxV1Writer:
    """InfluxDB 1.x: ``POST /write?db=...&precision=ms`` (``&rp=`` for a tier but the raw one, which is
    the database's default policy); ``CREATE DATABASE`` when missing."""

    def __init__(self, *, url: str, database: str, username: str | None = None, password: str | None = None,
                 ca_file: Path | None = None, timeout: float = 10.0) -> None:
        self._db = database
        auth = (username, password or "") if username else None
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._http = httpx.AsyncClient(base_url=url, auth=auth, timeout=timeout, verify=verify)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def write(self, body: bytes, tier: Tier = Tier.RAW) -> None:
        params = {"db": self._db, "precision": "ms"}
        if tier is not Tier.RAW:
            params["rp"] = tier.value
        with map_httpx():
            response = await self._http.post("/write", params=params, content=body)
        if response.status_code == 204:
            return
        message = _error_text(response)
        if response.status_code == 404 and "database not found" in message:
            await self._create_database()
            raise InfluxUnavailableError(f"database {self._db} was missing; created it")
        if 400 <= response.status_code < 500 and response.status_code not in (401, 403, 408, 429):
            raise InfluxRejectedError(response.status_code, message)
        raise InfluxUnavailableError(f"HTTP {response.status_code}: {message}")

    async def ready(self) -> bool:
        try:
            with map_httpx():
                response = await self._http.get("/ping")
            if response.status_code != 204:
                return False
            await self._create_database()
        except InfluxUnavailableError:
            return False
        return True

    async def _create_database(self) -> None:
        name = self._db.replace('"', "")
        with map_httpx():
            response = await self._http.post("/query", data={"q": f'CREATE DATABASE "{name}"'})
        if response.status_code != 200 or "error" in response.text:
            raise InfluxUnavailableError(f"CREATE DATABASE {name}: HTTP {response.status_code}: "
                                         f"{_error_text(response)}")

    async def aclose(self) -> None:
        await self._http.aclose()


class InfluxV2Writer:
    """InfluxDB 2.x/3.x through influxdb-client's async API (token, org, one bucket per tier).

    Args:
        buckets: the bucket of each tier; a tier missing from it is written to ``bucket``.
    """

    def __init__(self, *, url: str, token: str, org: str, bucket: str, buckets: dict[Tier, str] | None = None,
                 ca_file: Path | None = None, timeout: float = 10.0) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync  # noqa: PLC0415

        self._client = InfluxDBClientAsync(url=url, token=token, org=org, timeout=int(timeout * 1000),
                                           ssl_ca_cert=str(ca_file) if ca_file else None)
        self._org, self._bucket = org, bucket
        self._buckets = buckets or {}

    async def write(self, body: bytes, tier: Tier = Tier.RAW) -> None:
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: PLC0415
        from influxdb_client.rest import ApiException  # noqa: PLC0415

        try:
            await self._client.write_api().write(bucket=self._buckets.get(tier, self._bucket), org=self._org,
                                                 record=body, write_precision=WritePrecision.MS)  # type: ignore[arg-type]
        except ApiException as exc:
            status = int(exc.status or 0)
            if 400 <= status < 500 and status not in (401, 403, 404, 408, 429):
                raise InfluxRejectedError(status, str(exc.body or exc.reason)[:500]) from exc
            raise InfluxUnavailableError(f"HTTP {status}: {str(exc.body or exc.reason)[:500]}") from exc
        except (OSError, TimeoutError) as exc:
            raise InfluxUnavailableError(f"unreachable: {exc!r}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("aiohttp"):
                raise InfluxUnavailableError(f"unreachable: {exc!r}") from exc
            raise

    async def ready(self) -> bool:
        try:
            return bool(await self._client.ping())
        except Exception:  # noqa: BLE001 - ping reports False on any failure
            return False

    async def aclose(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]


def make_writer(s: InfluxSettings) -> Writer:
    """The 2.x writer when a token is set (``InfluxSettings.influx_v2``), else the 1.x one."""
    if s.influx_v2 and s.influx_token:
        return InfluxV2Writer(url=s.influx_url, token=s.influx_token, org=s.influx_org or "",
                              bucket=s.bucket(Tier.RAW), buckets={tier: s.bucket(tier) for tier in Tier},
                              ca_file=s.influx_ca_file)
    return InfluxV1Writer(url=s.influx_url, database=s.influx_db, username=s.influx_username,
                          password=s.influx_password, ca_file=s.influx_ca_file)
