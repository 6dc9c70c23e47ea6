"""Pipeline units at the writer seam: batching by size and time, and no message ever escapes as an error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TypeVar

import pytest

from ingest.exceptions import InfluxUnavailableError
from ingest.metrics import Metrics
from ingest.pipeline import Pipeline
from ingest.source import DUP, OVERSIZE, RETAINED, AckToken, Message
from ingest.spool import Spool
from ingest.stats import Stats
from telemetry import registry
from telemetry.codec import Decoder
from telemetry.storage import Tier
from tests.rig import until

NOW = 1_795_000_000.0


class RecordingWriter:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.tiers: list[Tier] = []

    async def write(self, body: bytes, tier: Tier = Tier.RAW) -> None:
        self.bodies.append(body)
        self.tiers.append(tier)

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        pass


W = TypeVar("W", bound="RecordingWriter")


def make(tmp_path: Path, writer: W, *, spool: Spool | None = None,
         **kwargs: float) -> tuple[Pipeline, W, RecordingSubscriber]:
    """A pipeline on the registry's stations at a fixed clock, with a recording subscriber attached."""
    subscriber = RecordingSubscriber()
    pipeline = Pipeline(registry=registry.load(), writer=writer, metrics=Metrics(), clock=lambda: NOW,
                        spool=spool if spool is not None else Spool(directory=tmp_path, max_bytes=10**6), **kwargs)  # type: ignore[arg-type]
    pipeline.attach(subscriber)  # type: ignore[arg-type]
    return pipeline, writer, subscriber


def occupancy(seq: int, flags: int = 0) -> Message:
    payload = f'{{"ts": {int(NOW * 1000) - 1000 + seq}, "seq": {seq}, "people": 1}}'.encode()
    return "stations/v1/PL-KT-001/occupancy", payload, (1, seq), flags


async def test_pipeline_seals_at_batch_points_and_on_the_timer(tmp_path: Path) -> None:
    pipeline, writer, _ = make(tmp_path, RecordingWriter(), batch_points=3, batch_seconds=0.05)
    task = asyncio.create_task(pipeline.run())
    try:
        for seq in range(1, 5):
            pipeline.on_message(*occupancy(seq))
        await until(lambda: len(writer.bodies) >= 2, timeout=5, what="two writes")
    finally:
        task.cancel()
    assert [body.count(b"\n") + 1 for body in writer.bodies] == [3, 1]
    assert pipeline.pending_points == 0


async def test_pipeline_seals_when_the_stream_pauses(tmp_path: Path) -> None:
    pipeline, writer, _ = make(tmp_path, RecordingWriter(), batch_seconds=30, batch_idle=0.02)
    task = asyncio.create_task(pipeline.run())
    try:
        pipeline.on_messages([occupancy(1), occupancy(2)])
        # not the 30 s of batch_seconds: the pause after the last message
        await until(lambda: writer.bodies, timeout=5, what="a write")
    finally:
        task.cancel()
    assert [body.count(b"\n") + 1 for body in writer.bodies] == [2]


async def test_pipeline_turns_an_unexpected_error_into_a_reject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    pipeline, writer, _ = make(tmp_path, RecordingWriter())

    def broken(_self: Decoder, _topic: str, _payload: bytes) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Decoder, "decode", broken)
    pipeline.on_message(*occupancy(1))
    await pipeline.flush()
    [body] = writer.bodies
    assert body.startswith(b'ingest_rejects,reason=schema station="",topic="stations/v1/PL-KT-001/occupancy",'
                           b"detail=\"internal error: RuntimeError('boom')\"")
    assert "cannot process a message" in caplog.text


class RecordingSubscriber:
    def __init__(self) -> None:
        self.acks: list[list[AckToken]] = []
        self.paused = False

    def ack(self, tokens: list[AckToken]) -> int:
        self.acks.append(list(tokens))
        return len(tokens)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


class GatedWriter(RecordingWriter):
    """Each write waits until the test opens its gate (by the seq in the body); the first ``fail`` writes fail."""

    def __init__(self, fail: int = 0) -> None:
        super().__init__()
        self.gates: dict[int, asyncio.Event] = {}
        self.started: list[int] = []
        self.fail = fail

    async def write(self, body: bytes, tier: Tier = Tier.RAW) -> None:  # noqa: ARG002
        seq = int(body.split(b"seq=")[1].split(b"i")[0])
        self.started.append(seq)
        await self.gates.setdefault(seq, asyncio.Event()).wait()
        if self.fail:
            self.fail -= 1
            raise InfluxUnavailableError("down")
        self.bodies.append(body)


async def test_concurrent_writes_are_acknowledged_in_message_order(tmp_path: Path) -> None:
    pipeline, writer, subscriber = make(tmp_path, GatedWriter(), batch_points=1, write_concurrency=2, max_pending=3)
    task = asyncio.create_task(pipeline.run())
    try:
        for seq in (1, 2, 3):
            pipeline.on_message(*occupancy(seq))
        await until(lambda: writer.started == [1, 2], timeout=5)  # two at once, the third waits
        assert subscriber.paused  # three batches held
        writer.gates[2].set()
        await until(lambda: len(writer.bodies) == 1, timeout=5)
        await asyncio.sleep(0.02)
        assert subscriber.acks == []  # 2 is written, but 1 is not: nothing may be acknowledged yet
        writer.gates[1].set()
        await until(lambda: writer.started == [1, 2, 3], timeout=5)
        assert subscriber.acks == [[(1, 1)], [(1, 2)]]
        assert not subscriber.paused
        writer.gates[3].set()
        await until(lambda: len(subscriber.acks) == 3, timeout=5)
    finally:
        task.cancel()
    assert subscriber.acks == [[(1, 1)], [(1, 2)], [(1, 3)]]
    assert pipeline.pending_points == 0


async def test_concurrent_failed_writes_are_spooled_and_replayed_once(tmp_path: Path) -> None:
    spool = Spool(directory=tmp_path, max_bytes=10**6)
    pipeline, writer, subscriber = make(tmp_path, GatedWriter(fail=2), spool=spool, batch_points=1,
                                        write_concurrency=2)
    for seq in (1, 2):
        writer.gates[seq] = asyncio.Event()
    task = asyncio.create_task(pipeline.run())
    try:
        pipeline.on_message(*occupancy(1))
        pipeline.on_message(*occupancy(2))
        await until(lambda: writer.started == [1, 2], timeout=5)
        writer.gates[1].set()
        writer.gates[2].set()  # both fail: both batches go to the spool, then are acknowledged
        await until(lambda: len(subscriber.acks) == 2, timeout=5)
        assert len(spool) == 2
        writer.gates[3] = asyncio.Event()
        writer.gates[3].set()
        pipeline.on_message(*occupancy(3))  # spooled behind them while InfluxDB is still deemed down
        await until(lambda: len(subscriber.acks) == 3, timeout=5)
        await until(lambda: len(writer.bodies) == 3, timeout=5)  # the replay after the retry delay
    finally:
        task.cancel()
    assert [int(b.split(b"seq=")[1].split(b"i")[0]) for b in writer.bodies] == [1, 2, 3]
    assert len(spool) == 0
    assert subscriber.acks == [[(1, 1)], [(1, 2)], [(1, 3)]]


class DownWriter(RecordingWriter):
    """InfluxDB down: every write fails, after a moment (so that concurrent writes overlap)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def write(self, body: bytes, tier: Tier = Tier.RAW) -> None:  # noqa: ARG002
        self.calls += 1
        await asyncio.sleep(0.01)
        raise InfluxUnavailableError(f"timed out writing {len(body)} bytes")


async def test_writes_behind_a_failed_replay_wait_for_the_retry_delay(tmp_path: Path) -> None:
    """Three writes find the spool non-empty: one replay is tried, the others spool without trying again."""
    spool = Spool(directory=tmp_path, max_bytes=10**6)
    await spool.append(b"occupancy,station=PL-KT-001 people=1i 1795000000000")
    pipeline, writer, subscriber = make(tmp_path, DownWriter(), spool=spool, batch_points=1, write_concurrency=3)
    task = asyncio.create_task(pipeline.run())
    try:
        pipeline.on_messages([occupancy(1), occupancy(2), occupancy(3)])
        await until(lambda: len(subscriber.acks) == 3, timeout=5)
    finally:
        task.cancel()
    assert writer.calls == 1
    assert len(spool) == 4


async def test_flush_at_shutdown_never_resumes_reading(tmp_path: Path) -> None:
    pipeline, writer, subscriber = make(tmp_path, RecordingWriter(), batch_points=1, write_concurrency=1,
                                        max_pending=1)
    pipeline.on_messages([occupancy(1), occupancy(2), occupancy(3)])
    subscriber.paused = True  # the service pauses reading, then flushes
    await pipeline.flush()
    assert len(writer.bodies) == 3
    assert subscriber.acks == [[(1, 1)], [(1, 2)], [(1, 3)]]
    assert subscriber.paused


async def test_writes_failing_together_back_off_once(tmp_path: Path) -> None:
    pipeline, writer, subscriber = make(tmp_path, DownWriter(), batch_points=1, write_concurrency=2)
    task = asyncio.create_task(pipeline.run())
    try:
        pipeline.on_messages([occupancy(1), occupancy(2)])
        await until(lambda: len(subscriber.acks) == 2, timeout=5)
    finally:
        task.cancel()
    assert writer.calls == 2
    assert pipeline._retry_delay == 1.0  # one outage: the first step of the backoff (0.5 s -> 1 s), not two


async def test_pipeline_redelivery_is_stored_but_not_counted_as_new(tmp_path: Path) -> None:
    metrics = Metrics()
    stats = Stats(instance="t", metrics=metrics)
    pipeline = Pipeline(registry=registry.load(), writer=RecordingWriter(), metrics=metrics, stats=stats,
                        clock=lambda: NOW, spool=Spool(directory=tmp_path, max_bytes=10**6))
    pipeline.on_messages([occupancy(1), occupancy(2, DUP), occupancy(3, DUP)])
    assert pipeline.pending_points == 3  # idempotent points: stored again in case they were lost
    assert (metrics.counts.messages, metrics.counts.redelivered) == (1, 2)
    point = stats.interval_point(int(NOW * 1000), 0)
    assert "messages=1i" in point
    assert "redelivered=2i" in point
    assert "readings=1i" in point  # the lag statistics leave redeliveries out


async def test_pipeline_retained_repeat_is_acknowledged_not_stored(tmp_path: Path) -> None:
    pipeline, writer, subscriber = make(tmp_path, RecordingWriter())
    will: Message = ("stations/v1/PL-KT-001/status", b'{"state": "offline"}', (1, 9), RETAINED)
    pipeline.on_messages([occupancy(1), will])
    await pipeline.flush()
    assert writer.bodies[0].count(b"\n") == 0  # the reading only
    assert subscriber.acks == [[(1, 1), (1, 9)]]


async def test_pipeline_oversize_publish_becomes_a_too_large_reject(tmp_path: Path) -> None:
    pipeline, writer, subscriber = make(tmp_path, RecordingWriter())
    pipeline.on_message("stations/v1/PL-KT-001/occupancy", b"104857600", (1, 4), OVERSIZE)
    await pipeline.flush()
    [body] = writer.bodies
    assert body.startswith(b'ingest_rejects,reason=too_large station="PL-KT-001"')
    assert b"payload is 104857600 bytes, at most 65536" in body
    assert subscriber.acks == [[(1, 4)]]
