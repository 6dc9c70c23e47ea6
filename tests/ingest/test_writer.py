"""The writers' error mapping, and the 2.x writer's calls (InfluxDB 2.x cannot run here: its HTTP
API is played by a local server that records requests, at the transport seam)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ingest.exceptions import InfluxRejectedError, InfluxUnavailableError
from ingest.writer import InfluxV1Writer, InfluxV2Writer, make_writer
from telemetry.settings import InfluxSettings
from tests.rig import Influxd, free_port


class FakeInflux2:
    """Answers ``POST /api/v2/write`` with a programmable status and records each request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 204
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                self.send_response(outer.status)
                payload = b'{"code":"invalid","message":"field type conflict"}' if outer.status != 204 else b""
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def influx2() -> Iterator[FakeInflux2]:
    server = FakeInflux2()
    yield server
    server.close()


async def test_writer_v2_posts_line_protocol_with_token_bucket_org_and_ms(influx2: FakeInflux2) -> None:
    writer = make_writer(InfluxSettings(influx_url=influx2.url, influx_db="ignored", influx_token="s3cret",
                                        influx_org="union", influx_bucket="yizhan"))
    assert isinstance(writer, InfluxV2Writer)
    try:
        await writer.write(b"occupancy,station=PL-KT-001 people=1i 1795000000000")
        influx2.status = 400
        with pytest.raises(InfluxRejectedError) as info:
            await writer.write(b'occupancy,station=PL-KT-001 people="x" 1795000000001')
        assert info.value.status == 400
        influx2.status = 503
        with pytest.raises(InfluxUnavailableError):
            await writer.write(b"occupancy,station=PL-KT-001 people=2i 1795000000002")
    finally:
        await writer.aclose()
    first = influx2.requests[0]
    assert first["path"].startswith("/api/v2/write?")
    assert "org=union" in first["path"]
    assert "bucket=yizhan" in first["path"]
    assert "precision=ms" in first["path"]
    assert first["auth"] == "Token s3cret"
    assert first["body"] == b"occupancy,station=PL-KT-001 people=1i 1795000000000"


async def test_writer_v2_unreachable_is_unavailable() -> None:
    writer = InfluxV2Writer(url=f"http://127.0.0.1:{free_port()}", token="t", org="o", bucket="b")
    try:
        with pytest.raises(InfluxUnavailableError):
            await writer.write(b"m f=1 1")
        assert await writer.ready() is False
    finally:
        await writer.aclose()


async def test_writer_v1_maps_errors_and_creates_the_database(influxd: Influxd, db: str) -> None:
    async with InfluxV1Writer(url=influxd.url, database=db) as writer:
        with pytest.raises(InfluxUnavailableError, match="was missing; created it"):
            await writer.write(b"m f=1i 1795000000000")
        await writer.write(b"m f=1i 1795000000000")
        with pytest.raises(InfluxRejectedError, match="field type conflict") as info:
            await writer.write(b'm f="text" 1795000000001')
        assert info.value.status == 400
        with pytest.raises(InfluxRejectedError, match="unable to parse"):
            await writer.write(b"not line protocol")
    assert influxd.count("m", "f", db) == 1
    async with InfluxV1Writer(url=f"http://127.0.0.1:{free_port()}", database=db) as down:
        with pytest.raises(InfluxUnavailableError, match="unreachable"):
            await down.write(b"m f=1i 1")
        assert await down.ready() is False
