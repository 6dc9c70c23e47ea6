"""Pipeline units at the writer seam: batching by size and time, and no message ever escapes as an error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ingest.metrics import Metrics
from ingest.pipeline import Pipeline
from ingest.spool import Spool
from ingest.subscriber import AckToken
from telemetry import registry
from telemetry.codec import Decoder

NOW = 1_795_000_000.0


class RecordingWriter:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def write(self, body: bytes) -> None:
        self.bodies.append(body)

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        pass


def make(tmp_path: Path, **kwargs: float) -> tuple[Pipeline, RecordingWriter]:
    writer = RecordingWriter()
    pipeline = Pipeline(registry=registry.load(), writer=writer, spool=Spool(directory=tmp_path, max_bytes=10**6),
                        metrics=Metrics(), clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]
    return pipeline, writer


def occupancy(seq: int) -> tuple[str, bytes, AckToken]:
    payload = f'{{"ts": {int(NOW * 1000) - 1000 + seq}, "seq": {seq}, "people": 1}}'.encode()
    return "stations/v1/PL-KT-001/occupancy", payload, (1, seq)


async def test_pipeline_seals_at_batch_points_and_on_the_timer(tmp_path: Path) -> None:
    pipeline, writer = make(tmp_path, batch_points=3, batch_seconds=0.05)
    task = asyncio.create_task(pipeline.run())
    try:
        for seq in range(1, 5):
            pipeline.on_message(*occupancy(seq))
        async with asyncio.timeout(5):
            while len(writer.bodies) < 2:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert [body.count(b"\n") + 1 for body in writer.bodies] == [3, 1]
    assert pipeline.pending_points == 0


async def test_pipeline_turns_an_unexpected_error_into_a_reject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    pipeline, writer = make(tmp_path)

    def broken(_self: Decoder, _topic: str, _payload: bytes) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Decoder, "decode", broken)
    pipeline.on_message(*occupancy(1))
    await pipeline.flush()
    [body] = writer.bodies
    assert body.startswith(b'ingest_rejects,reason=schema station="",topic="stations/v1/PL-KT-001/occupancy",'
                           b"detail=\"internal error: RuntimeError('boom')\"")
    assert "cannot process a message" in caplog.text
