"""Publish a feed at a fixed rate, QoS 1, cheaply: pre-encoded PUBLISH packets on a raw asyncio socket.

    python -m bench.paced_publisher --port 1883 --rate 10000 FEED

FEED has one ``topic<TAB>payload`` line per message. Messages go out in 5 ms slices of
``rate/200``; PUBACKs are read and counted (at most 60,000 unacknowledged, below the 65,535 packet
ids). Prints one JSON line: messages sent and acknowledged, seconds, the rate achieved. A paho
publisher costs 50-100 µs of CPU per message, too much to hold 10,000/s beside a broker, ingest and
InfluxDB on two cores; this costs a few.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import time
import uuid
from pathlib import Path

from ingest.subscriber import connect_packet

_WINDOW = 60_000


def publish_packet(topic: bytes, payload: bytes, packet_id: int) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", packet_id) + payload
    length, encoded = len(body), bytearray()
    while True:
        length, digit = divmod(length, 128)
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            break
    return b"\x32" + bytes(encoded) + body


class _Acks(asyncio.Protocol):
    def __init__(self) -> None:
        self.acked = 0
        self._rest = 0
        self.connack = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.connack.done() and data[:1] == b"\x20":
            self.connack.set_result(data[3])
            data = data[4:]
        self._rest += len(data)  # after the CONNACK only PUBACKs arrive, 4 bytes each
        self.acked += self._rest // 4
        self._rest %= 4


async def run(port: int, rate: float, feed: list[tuple[bytes, bytes]]) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_Acks, "127.0.0.1", port)
    transport.write(connect_packet(f"paced-{uuid.uuid4().hex[:8]}", keepalive=60, clean_session=True,
                                   username=None, password=None))
    if await proto.connack:
        raise SystemExit("broker refused the connection")
    per_slice = max(1, round(rate / 200))
    started = time.monotonic()
    sent = 0
    while sent < len(feed):
        due = started + sent / rate
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        while sent - proto.acked >= _WINDOW:
            await asyncio.sleep(0.001)
        chunk = feed[sent:sent + per_slice]
        transport.write(b"".join(publish_packet(t, p, (sent + i) % 65535 + 1) for i, (t, p) in enumerate(chunk)))
        sent += len(chunk)
    publish_seconds = time.monotonic() - started
    deadline = time.monotonic() + 60
    while proto.acked < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    transport.write(b"\xe0\x00")
    transport.close()
    return {"sent": sent, "acked": proto.acked, "seconds": round(publish_seconds, 2),
            "rate": round(sent / publish_seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="messages per second")
    parser.add_argument("feed", type=Path)
    args = parser.parse_args()
    feed = [(t.encode(), p.encode()) for t, _, p in (line.partition("\t") for line in
                                                     args.feed.read_text().splitlines() if line)]
    print(json.dumps(asyncio.run(run(args.port, args.rate, feed))), flush=True)


if __name__ == "__main__":
    main()
