"""The MQTT byte stream parser of ingest's subscriber, at its transport seam (the end-to-end tests use a broker)."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Sequence

import pytest

from ingest.subscriber import Message, Subscriber, _Protocol, _varint


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass


def publish(topic: str, payload: bytes, packet_id: int | None) -> bytes:
    raw = topic.encode()
    body = struct.pack("!H", len(raw)) + raw + (struct.pack("!H", packet_id) if packet_id is not None else b"")
    return bytes([0x32 if packet_id is not None else 0x30]) + _varint(len(body) + len(payload)) + body + payload


async def protocol() -> tuple[_Protocol, FakeTransport, list[list[Message]]]:
    reads: list[list[Message]] = []

    def on_messages(messages: Sequence[Message]) -> None:
        reads.append(list(messages))

    owner = Subscriber(host="127.0.0.1", port=1, client_id="t", topic_filter="#", on_messages=on_messages)
    proto, transport = _Protocol(owner, connection=7), FakeTransport()
    proto.connection_made(transport)
    return proto, transport, reads


STREAM = [("stations/v1/PL-KT-001/occupancy", b'{"ts":1,"seq":1,"people":2}', 1),
          ("stations/v1/PL-KT-002/charger", b"", None),
          ("stations/v1/PL-KT-003/status", b"x" * 300, 65535)]  # a two-byte remaining length
WIRE = b"".join(publish(*m) for m in STREAM) + b"\xd0\x00"  # and a PINGRESP
EXPECTED = [(topic, payload, (7, pid) if pid is not None else None) for topic, payload, pid in STREAM]


async def test_subscriber_reassembles_packets_split_anywhere() -> None:
    for cut in range(len(WIRE) + 1):
        proto, transport, reads = await protocol()
        proto.data_received(WIRE[:cut])
        proto.data_received(WIRE[cut:])
        assert [m for read in reads for m in read] == EXPECTED, f"split at byte {cut}"
        assert not transport.aborted


async def test_subscriber_hands_over_a_read_at_once_and_a_large_packet_once_complete() -> None:
    proto, _, reads = await protocol()
    big = publish("stations/v1/PL-KT-001/occupancy", b"[" + b" " * 200_000 + b"]", 9)
    proto.data_received(WIRE + big[:1000])
    proto.data_received(big[1000:150_000])
    proto.data_received(big[150_000:])
    assert [len(read) for read in reads] == [3, 1]
    assert len(reads[1][0][1]) == 200_002


async def test_subscriber_closes_on_a_protocol_error_and_hands_over_nothing_of_that_read(
        caplog: pytest.LogCaptureFixture) -> None:
    proto, transport, reads = await protocol()
    with caplog.at_level(logging.WARNING):
        proto.data_received(WIRE + b"\x00\x00")  # packet type 0 is reserved
    assert transport.aborted
    assert reads == []  # unacknowledged, so the broker delivers them again on the next connection
    assert "unexpected packet type 0" in caplog.text
    proto2, transport2, _ = await protocol()
    proto2.data_received(b"\x30\xff\xff\xff\xff\x01")  # a remaining length of five bytes
    assert transport2.aborted
