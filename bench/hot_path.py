"""Ingest's hot path without the network: ``Pipeline.on_message`` over the benchmark's feed.

    .venv/bin/python -m bench.hot_path [--n 200000] [--profile]

Decodes, validates, encodes and batches N readings (one per message, then 100 per message;
handed over one message at a time, then as the subscriber does, all the messages of a read) in
this process, with statistics on and a writer that is never called (batches do not seal), and
prints the best of three passes in µs per message and per reading. ``--profile`` adds a cProfile
table of one pass. Then the MQTT session's parser alone (``ingest.session.Session.receive_data``)
over the same feed as QoS 1 PUBLISH packets in 64 KiB reads. What it leaves out (socket reads, the
event loop, the writes) is what ``bench/ingest_throughput.py`` adds on top.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from bench.ingest_throughput import PROBE_STATION, feed
from ingest.metrics import Metrics
from ingest.pipeline import Pipeline
from ingest.session import Session, packet, utf8
from ingest.spool import Spool
from ingest.stats import Stats
from telemetry import registry
from telemetry.storage import Tier


class _NeverWriter:
    async def write(self, body: bytes, tier: Tier = Tier.RAW) -> None:  # noqa: ARG002
        raise AssertionError(f"the hot-path bench never seals a batch ({len(body)} bytes)")

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        pass


def messages(n: int, per_message: int) -> list[tuple[str, bytes]]:
    """The feed of ``bench.ingest_throughput``, interleaved by station as publishers interleave it."""
    stations = [s.id for s in registry.load().reporting if s.id != PROBE_STATION][:45]
    topics = feed(stations, n, per_message, int(time.time() * 1000) - 3_600_000)
    longest = max(len(lines) for lines in topics.values())
    return [(topic, lines[i].encode()) for i in range(longest) for topic, lines in topics.items() if i < len(lines)]


async def measure(n: int, per_message: int, per_read: int, profile: bool) -> float:
    """Prints, and returns, the best pass's µs per reading."""
    msgs = messages(n, per_message)
    reg = registry.load()
    with tempfile.TemporaryDirectory(prefix="yizhan-hot-path-") as tmp:

        def one_pass() -> float:
            metrics = Metrics()
            pipeline = Pipeline(registry=reg, writer=_NeverWriter(), spool=Spool(directory=Path(tmp), max_bytes=1),
                                metrics=metrics, stats=Stats(instance="bench", metrics=metrics), batch_points=10**9)
            on_messages = pipeline.on_messages
            reads = [[(topic, payload, (1, (j + i) & 0xFFFF), 0)
                      for i, (topic, payload) in enumerate(msgs[j:j + per_read])]
                     for j in range(0, len(msgs), per_read)]
            started = time.perf_counter()
            for read in reads:
                on_messages(read)
            took = time.perf_counter() - started
            assert pipeline.pending_points == n, "every reading became one point"  # noqa: S101 - self-check
            return took

        best = min(one_pass() for _ in range(3))
        print(f"{per_message:>3} reading(s) per message, {per_read} messages per read: "
              f"{best / len(msgs) * 1e6:8.2f} µs per message, "
              f"{best / n * 1e6:6.2f} µs per reading")
        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(one_pass)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return best / n * 1e6


def _publish(topic: str, payload: bytes, packet_id: int) -> bytes:
    return packet(0x32, utf8(topic) + packet_id.to_bytes(2, "big") + payload)


def measure_session(n: int, per_message: int) -> None:
    """The sans-IO session's parse of the feed's PUBLISH packets, read by read."""
    msgs = messages(n, per_message)
    wire = b"".join(_publish(topic, payload, 1 + i % 65535) for i, (topic, payload) in enumerate(msgs))
    reads = [wire[i:i + 65536] for i in range(0, len(wire), 65536)]

    def one_pass() -> float:
        session = Session(client_id="bench", topic_filter="#", connection=1, now=0.0)
        session.receive_data(b"\x20\x02\x00\x00\x90\x03\x00\x01\x01", 0.0)  # CONNACK, SUBACK
        started = time.perf_counter()
        got = sum(len(session.receive_data(read, 1.0)) for read in reads)
        took = time.perf_counter() - started
        assert got == len(msgs), "every PUBLISH parsed"  # noqa: S101 - self-check
        return took

    best = min(one_pass() for _ in range(3))
    print(f"{per_message:>3} reading(s) per message, session parse in 64 KiB reads: "
          f"{best / len(msgs) * 1e6:8.2f} µs per message")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="readings")
    parser.add_argument("--per-read", default="1,50", help="messages handed over per socket read (list)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile table of one pass")
    args = parser.parse_args()
    for per_read in map(int, args.per_read.split(",")):
        for per_message in (1, 100):
            asyncio.run(measure(args.n, per_message, per_read, args.profile))
    for per_message in (1, 100):
        measure_session(args.n, per_message)


if __name__ == "__main__":
    main()
