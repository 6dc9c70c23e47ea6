"""The sans-IO MQTT session of ingest, transition by transition, without sockets."""

from __future__ import annotations

import re
import struct

import pytest

from ingest.exceptions import ConnectRefusedError, SubscribeRefusedError
from ingest.session import (
    TRANSITIONS,
    Closed,
    Connected,
    Input,
    ProtocolErrorKind,
    Session,
    State,
    Subscribed,
    diagram,
    packet,
    varint,
)
from ingest.source import DUP, OVERSIZE, RETAINED, Message
from tests.ingest.scripted_broker import TOPIC, connack, suback
from tests.rig import ROOT

KEEPALIVE = 10
PINGRESP = b"\xd0\x00"


def publish(payload: bytes = b"{}", packet_id: int | None = 1, *, topic: str = TOPIC, qos: int | None = None,
            dup: bool = False, retain: bool = False) -> bytes:
    qos = (1 if packet_id is not None else 0) if qos is None else qos
    raw = topic.encode()
    body = struct.pack("!H", len(raw)) + raw + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(0x30 | qos << 1 | (0x08 if dup else 0) | (0x01 if retain else 0), body)


def new(**kwargs: object) -> Session:
    options: dict[str, object] = {"client_id": "t", "topic_filter": "stations/v1/+/+", "connection": 7, "now": 0.0,
                                  "keepalive": KEEPALIVE, "connect_timeout": 5.0} | kwargs
    return Session(**options)  # type: ignore[arg-type]


def subscribing(*, present: bool = False, **kwargs: object) -> Session:
    session = new(**kwargs)
    session.data_to_send()
    session.receive_data(connack(present=present), 0.1)
    session.data_to_send()
    session.next_events()
    return session


def active(*, present: bool = False, **kwargs: object) -> Session:
    session = subscribing(present=present, **kwargs)
    session.receive_data(suback(), 0.2)
    session.next_events()
    return session


def closed(session: Session) -> Closed:
    assert session.state is State.CLOSED
    [event] = [e for e in session.next_events() if isinstance(e, Closed)]
    return event


def test_session_connects_with_a_persistent_session() -> None:
    session = new(username="ingest", password="pw")
    out = session.data_to_send()
    assert out[0] == 0x10
    assert out[2:9] == b"\x00\x04MQTT\x04"
    assert out[9] == 0xC0  # user name and password, clean session 0
    assert struct.unpack("!H", out[10:12]) == (KEEPALIVE,)
    assert session.state is State.CONNECTING


def test_session_connack_accepted_subscribes_at_qos_1() -> None:
    session = new()
    session.data_to_send()
    assert session.receive_data(connack(), 0.1) == []
    assert session.state is State.SUBSCRIBING
    assert session.next_events() == [Connected(session_present=False, session_lost=False)]
    out = session.data_to_send()
    assert out == packet(0x82, b"\x00\x01" + b"\x00\x0fstations/v1/+/+" + b"\x01")


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5])
def test_session_connack_refused_closes_with_the_code(code: int) -> None:
    session = new()
    session.receive_data(connack(code), 0.1)
    event = closed(session)
    assert isinstance(event.error, ConnectRefusedError)
    assert event.error.code == code
    assert b"\x82" not in session.data_to_send()[-50:]  # no SUBSCRIBE after a refusal


def test_session_present_1_resumes_and_0_after_a_session_is_lost() -> None:
    resumed = new(expect_session=True)
    resumed.receive_data(connack(present=True), 0.1)
    assert resumed.next_events() == [Connected(session_present=True, session_lost=False)]
    lost = new(expect_session=True)
    lost.receive_data(connack(present=False), 0.1)
    assert lost.next_events() == [Connected(session_present=False, session_lost=True)]


def test_session_suback_granting_qos_1_makes_it_active() -> None:
    session = subscribing()
    session.receive_data(suback(), 0.2)
    assert session.state is State.ACTIVE
    assert session.next_events() == [Subscribed()]


@pytest.mark.parametrize(("packet_id", "granted", "answer"), [(1, 0x80, "0x80 (refused)"), (1, 0, "QoS 0"),
                                                              (2, 1, "packet id 2")])
def test_session_suback_refused_qos_0_or_another_id_closes(packet_id: int, granted: int, answer: str) -> None:
    session = subscribing()
    session.receive_data(suback(packet_id, granted), 0.2)
    event = closed(session)
    assert isinstance(event.error, SubscribeRefusedError)
    assert event.error.answer == answer


def test_session_takes_a_resumed_backlog_before_the_suback() -> None:
    session = subscribing(present=True)
    got = session.receive_data(publish(b"1", 1) + publish(b"2", 2) + suback() + publish(b"3", 3), 0.2)
    assert [m[1] for m in got] == [b"1", b"2", b"3"]
    assert session.state is State.ACTIVE


def test_session_no_suback_deadline_only_the_keepalive() -> None:
    """The connect timeout covers the CONNACK only: a long backlog before the SUBACK does not end it."""
    session = subscribing(present=True)
    for second in range(1, 60):
        session.receive_data(publish(b"x", second), float(second))
        session.tick(float(second) + 0.5)
    assert session.state is State.SUBSCRIBING


def test_session_no_connack_in_time_closes() -> None:
    session = new()
    session.tick(4.9)
    assert session.state is State.CONNECTING
    assert session.deadline == 5.0
    session.tick(5.0)
    assert "no CONNACK" in closed(session).reason


def test_session_publish_before_the_connack_is_a_protocol_error() -> None:
    session = new()
    assert session.receive_data(publish(), 0.1) == []
    assert closed(session).protocol_error is ProtocolErrorKind.UNEXPECTED


def test_session_qos_0_and_qos_1_are_handed_over_with_and_without_token() -> None:
    session = active()
    got = session.receive_data(publish(b"q0", None) + publish(b"q1", 9), 1.0)
    assert got == [(TOPIC, b"q0", None, 0), (TOPIC, b"q1", (7, 9), 0)]
    assert session.data_to_send() == b""  # nothing acknowledged before the caller says so


@pytest.mark.parametrize(("qos", "kind"), [(2, ProtocolErrorKind.QOS2), (3, ProtocolErrorKind.QOS3)])
def test_session_qos_2_and_3_close_without_an_answer(qos: int, kind: ProtocolErrorKind) -> None:
    session = active()
    got = session.receive_data(publish(b"ok", 1) + publish(b"bad", 2, qos=qos), 1.0)
    assert got == []  # the read is not handed over: unacknowledged, it comes back on the next connection
    assert closed(session).protocol_error is kind
    assert session.data_to_send() == b""
    assert session.ack([(7, 2)], 1.1) == 0


def test_session_oversize_publish_is_skipped_never_buffered() -> None:
    session = active(max_packet=1000)
    big = publish(b"x" * 1_000_000, 5)
    got: list[Message] = []
    for i in range(0, len(big), 4096):
        got += session.receive_data(big[i:i + 4096], 1.0)
        assert session.buffered < 1000
    got += session.receive_data(publish(b"next", 6), 1.0)
    assert got == [(TOPIC, b"1000000", (7, 5), OVERSIZE), (TOPIC, b"next", (7, 6), 0)]
    assert session.state is State.ACTIVE


def test_session_oversize_control_packet_closes() -> None:
    session = active(max_packet=1000)
    session.receive_data(b"\x90" + varint(5000), 1.0)
    assert closed(session).protocol_error is ProtocolErrorKind.OVERSIZE


def test_session_malformed_and_unexpected_packets_close() -> None:
    session = active()
    session.receive_data(b"\x30\xff\xff\xff\xff\x01", 1.0)  # a remaining length of five bytes
    assert closed(session).protocol_error is ProtocolErrorKind.MALFORMED
    session = active()
    session.receive_data(b"\x00\x00", 1.0)  # packet type 0 is reserved
    assert "unexpected packet type 0" in closed(session).reason
    session = active()
    session.receive_data(suback(), 1.0)  # a second SUBACK
    assert closed(session).protocol_error is ProtocolErrorKind.UNEXPECTED


STREAM = [(TOPIC, b'{"ts":1,"seq":1,"people":2}', 1), ("stations/v1/PL-KT-002/charger", b"", None),
          ("stations/v1/PL-KT-003/status", b"x" * 300, 65535)]  # a two-byte remaining length
WIRE = b"".join(publish(payload, pid, topic=topic) for topic, payload, pid in STREAM) + PINGRESP


def test_session_reassembles_packets_split_anywhere() -> None:
    expected = [(topic, payload, (7, pid) if pid is not None else None, 0) for topic, payload, pid in STREAM]
    for cut in range(len(WIRE) + 1):
        session = active()
        got = session.receive_data(WIRE[:cut], 1.0) + session.receive_data(WIRE[cut:], 1.0)
        assert got == expected, f"split at byte {cut}"
        assert session.state is State.ACTIVE


def test_session_pings_when_quiet_and_closes_on_silence() -> None:
    session = active()
    session.tick(4.0)
    assert session.data_to_send() == b""
    assert session.deadline == pytest.approx(5.0)  # 5 s after the CONNECT, our last packet
    session.tick(5.2)
    assert session.data_to_send() == b"\xc0\x00"
    session.receive_data(PINGRESP, 5.3)
    session.tick(9.0)
    assert session.state is State.ACTIVE
    session.tick(10.4)
    assert session.data_to_send() == b"\xc0\x00"
    session.tick(15.3)  # a keepalive without a byte from the broker
    assert "no packet from the broker" in closed(session).reason


def test_session_pings_while_receiving_but_not_sending() -> None:
    """The broker needs a packet from us within the keepalive: a paused ingest sends no PUBACKs."""
    session = active(paused=True)
    for t in range(1, 7):
        session.receive_data(publish(b"x", t), float(t))
        session.tick(float(t))
    assert session.data_to_send() == b"\xc0\x00"


def test_session_silence_while_paused_closes_too() -> None:
    session = active()
    session.pause()
    session.tick(10.2)
    assert "no packet" in closed(session).reason


def test_session_eof_while_paused_closes() -> None:
    session = active()
    session.pause()
    session.receive_data(publish(b"held", 1), 1.0)
    session.receive_eof()
    assert "closed by the broker" in closed(session).reason


def test_session_pause_holds_publishes_and_still_reads_control_packets() -> None:
    session = subscribing(paused=True, present=True)
    assert session.receive_data(publish(b"1", 1) + suback() + PINGRESP + publish(b"2", 2), 1.0) == []
    assert session.state is State.ACTIVE
    assert session.held == 2
    assert [m[1] for m in session.resume()] == [b"1", b"2"]
    assert [m[1] for m in session.receive_data(publish(b"3", 3), 1.1)] == [b"3"]


def test_session_hold_bound_drops_then_asks_for_a_redelivery() -> None:
    session = active(hold_bytes=1000)
    session.pause()
    wire = b"".join(publish(b"x" * 100, pid) for pid in range(1, 11))
    assert session.receive_data(wire, 1.0) == []
    assert (session.held, session.dropped) == (3, 7)  # 100 bytes + topic + overhead each
    held = session.resume()
    assert len(held) == 3
    assert session.state is State.ACTIVE  # not before what was held is acknowledged
    session.ack([m[2] for m in held[:2] if m[2]], 1.1)
    assert session.state is State.ACTIVE
    session.ack([m[2] for m in held[2:] if m[2]], 1.2)
    event = closed(session)
    assert event.redeliver
    assert event.error is None
    assert session.data_to_send() == b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\x00\x03"


def test_session_ack_sends_pubacks_of_this_connection_only() -> None:
    session = active()
    assert session.ack([(7, 1), (6, 2), (7, 300)], 1.0) == 2
    assert session.data_to_send() == b"\x40\x02\x00\x01\x40\x02\x01\x2c"


def test_session_disconnect_follows_the_last_pubacks_and_ends_it() -> None:
    session = active()
    session.ack([(7, 1)], 1.0)
    session.disconnect(1.1)
    assert session.data_to_send() == b"\x40\x02\x00\x01\xe0\x00"
    assert closed(session) == Closed("stopped")
    assert session.ack([(7, 2)], 1.2) == 0
    assert session.receive_data(publish(b"late", 3), 1.3) == []


def test_session_flags_redeliveries_and_retained_repeats_of_a_resumed_session() -> None:
    resumed = active(present=True)
    got = resumed.receive_data(publish(b"d", 1, dup=True) + publish(b"r", 2, retain=True), 1.0)
    assert [m[3] for m in got] == [DUP, RETAINED]
    fresh = active(present=False)
    got = fresh.receive_data(publish(b"r", 2, retain=True), 1.0)
    assert [m[3] for m in got] == [0]  # on a new session a retained message is news


def test_session_ignores_everything_once_closed() -> None:
    session = active()
    session.receive_eof()
    closed(session)
    session.receive_eof()
    session.tick(100.0)
    assert session.next_events() == []
    assert session.receive_data(connack(), 101.0) == []


def test_session_every_transition_of_the_table_is_drawn_in_the_docs() -> None:
    text = (ROOT / "docs" / "ingest.md").read_text()
    block = re.search(r"```mermaid\n(stateDiagram-v2.*?)\n```", text, re.DOTALL)
    assert block is not None, "docs/ingest.md has no state diagram"
    assert block.group(1) == diagram(), "docs/ingest.md's diagram differs from ingest.session.TRANSITIONS"
    assert {event for _, event in TRANSITIONS} == set(Input)


def test_session_redelivery_of_what_was_dropped_is_a_first_delivery() -> None:
    first = active(hold_bytes=300)
    first.pause()
    first.receive_data(b"".join(publish(b"x" * 100, pid) for pid in range(1, 5)), 1.0)
    assert first.dropped_ids == {2, 3, 4}
    second = active(present=True, connection=8, undelivered=frozenset(first.dropped_ids))
    got = second.receive_data(b"".join(publish(b"x", pid, dup=True) for pid in (1, 2, 3)), 2.0)
    assert [m[3] for m in got] == [DUP, 0, 0]  # 1 was handed over before: a true redelivery


def test_session_overflow_with_everything_before_it_acknowledged_redelivers_at_resume() -> None:
    session = active(hold_bytes=100)
    assert len(session.receive_data(publish(b"a", 1), 1.0)) == 1
    session.ack([(7, 1)], 1.1)
    session.pause()
    session.receive_data(publish(b"x" * 200, 2), 1.2)  # over the bound at once: dropped
    assert (session.held, session.dropped) == (0, 1)
    assert session.resume() == []
    assert closed(session).redeliver
