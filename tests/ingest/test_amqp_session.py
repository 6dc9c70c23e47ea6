"""The sans-IO AMQP 0-9-1 consumer session of ingest, transition by transition, without sockets."""

from __future__ import annotations

import re
import struct

import pytest
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from ingest.amqp_session import (
    TRANSITIONS,
    Closed,
    Consuming,
    Input,
    ProtocolErrorKind,
    Session,
    State,
    ack_frame,
    diagram,
    topic_of,
)
from ingest.exceptions import AmqpClosedError
from ingest.source import DUP, OVERSIZE
from tests.ingest import amqp_peer as peer
from tests.ingest.amqp_peer import HANDSHAKE, PROTOCOL_HEADER, TOPIC, deliver, methods
from tests.rig import ROOT

CONN = 7
BEAT = 10


def new(**kwargs: object) -> Session:
    options: dict[str, object] = {"connection": CONN, "now": 0.0, "username": "ingest", "password": "pw",
                                  "vhost": "/v", "queue": "q", "prefetch": 100, "heartbeat": BEAT,
                                  "handshake_timeout": 5.0, "consumer_tag": "ingest-1"} | kwargs
    return Session(**options)  # type: ignore[arg-type]


def at(steps: int, **kwargs: object) -> Session:
    """A session the broker has answered ``steps`` handshake steps of (8: consuming)."""
    session = new(**kwargs)
    session.data_to_send()
    for answer in HANDSHAKE[:steps]:
        session.receive_data(answer(), 0.1)
    session.data_to_send()
    session.next_events()
    return session


def active(**kwargs: object) -> Session:
    session = at(len(HANDSHAKE), **kwargs)
    assert session.state is State.ACTIVE
    return session


def closed(session: Session) -> Closed:
    assert session.state is State.CLOSED
    [event] = [e for e in session.next_events() if isinstance(e, Closed)]
    return event


def sent(session: Session) -> list[object]:
    return methods(session.data_to_send())


# --- the handshake, step by step --------------------------------------------------------------

def test_amqp_session_starts_with_the_protocol_header() -> None:
    session = new()
    assert session.data_to_send() == PROTOCOL_HEADER
    assert session.state is State.AWAIT_START


def test_amqp_session_start_is_answered_with_plain_credentials_and_capabilities() -> None:
    session = at(0)
    session.receive_data(peer.start(), 0.1)
    [start_ok] = sent(session)
    assert isinstance(start_ok, commands.Connection.StartOk)
    assert start_ok.mechanism == "PLAIN"
    assert start_ok.response == "\0ingest\0pw"
    capabilities = start_ok.client_properties["capabilities"]
    assert isinstance(capabilities, dict)
    assert capabilities["consumer_cancel_notify"] is True
    assert capabilities["authentication_failure_close"] is True
    assert session.state is State.AWAIT_TUNE


@pytest.mark.parametrize("offer", [{"mechanisms": "AMQPLAIN"}, {"major": 1, "minor": 0}])
def test_amqp_session_start_without_plain_or_0_9_is_a_protocol_error(offer: dict[str, object]) -> None:
    session = at(0)
    session.receive_data(peer.start(**offer), 0.1)  # type: ignore[arg-type]
    assert closed(session).protocol_error is ProtocolErrorKind.VERSION


def test_amqp_session_protocol_header_from_the_broker_is_a_version_refusal() -> None:
    session = at(0)
    session.receive_data(b"AMQP\x00\x00\x08\x00", 0.1)
    assert closed(session).protocol_error is ProtocolErrorKind.VERSION


def test_amqp_session_access_refused_after_start_ok_is_answered_and_closed() -> None:
    session = at(1)
    session.receive_data(peer.close(403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
                                    10, 11), 0.2)
    assert [type(m) for m in sent(session)] == [commands.Connection.CloseOk]
    event = closed(session)
    assert isinstance(event.error, AmqpClosedError)
    assert event.error.reply_code == 403
    assert event.error.method == "connection.start-ok"
    assert "ACCESS_REFUSED" in event.reason


def test_amqp_session_eof_after_start_ok_names_the_credentials() -> None:
    session = at(1)
    session.receive_eof()
    assert "credentials" in closed(session).reason


@pytest.mark.parametrize(("server", "expected"), [(60, BEAT), (4, 4), (0, BEAT)])
def test_amqp_session_tune_negotiates_the_heartbeat_and_opens_the_vhost(server: int, expected: int) -> None:
    session = at(1)
    session.receive_data(peer.tune(heartbeat=server, frame_max=65536), 0.2)
    tune_ok, open_ = sent(session)
    assert isinstance(tune_ok, commands.Connection.TuneOk)
    assert (tune_ok.heartbeat, tune_ok.frame_max) == (expected, 65536)
    assert isinstance(open_, commands.Connection.Open)
    assert open_.virtual_host == "/v"
    assert session.heartbeat == expected
    assert session.state is State.OPENING


STEPS = [  # steps answered before, the answer, what the session sends then (channel, method, fields), the state
    (2, peer.open_ok(), 1, commands.Channel.Open, {}, State.CHANNEL),
    (3, peer.channel_open_ok(), 1, commands.Basic.Qos, {"prefetch_count": 100}, State.QOS),
    (4, peer.qos_ok(), 1, commands.Queue.Declare,
     {"queue": "q", "durable": True, "passive": False, "arguments": {"x-queue-type": "quorum"}}, State.DECLARING),
    (5, peer.declare_ok("q", 12, 2), 1, commands.Queue.Bind,
     {"queue": "q", "exchange": "amq.topic", "routing_key": "stations.v1.#"}, State.BINDING),
    (6, peer.bind_ok(), 1, commands.Basic.Consume, {"queue": "q", "consumer_tag": "ingest-1", "no_ack": False},
     State.SUBSCRIBING),
]


@pytest.mark.parametrize(("steps", "answer", "channel", "kind", "fields", "state"), STEPS,
                         ids=["open-ok opens channel 1", "channel open-ok sets the prefetch",
                              "qos-ok declares a durable quorum queue", "declare-ok binds to amq.topic",
                              "bind-ok consumes with acknowledgements"])
def test_amqp_session_handshake_step(steps: int, answer: bytes, channel: int, kind: type[object],
                                     fields: dict[str, object], state: State) -> None:
    session = at(steps)
    session.receive_data(answer, 0.2)
    [(sent_channel, value)] = peer.frames(session.data_to_send())
    assert (sent_channel, type(value)) == (channel, kind)
    assert {name: getattr(value, name) for name in fields} == fields
    assert session.state is state


def test_amqp_session_consume_ok_is_consuming() -> None:
    session = at(5)
    session.receive_data(peer.declare_ok("q", 12, 2) + peer.bind_ok() + peer.consume_ok("ingest-1"), 0.2)
    [event] = session.next_events()
    assert event == Consuming("q", 12, 2, "RabbitMQ 3.10.8 scripted")
    assert session.state is State.ACTIVE


@pytest.mark.parametrize(("code", "text"), [(404, "NOT_FOUND - no exchange 'amq.topic' in vhost '/v'"),
                                            (406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type'")])
def test_amqp_session_channel_refused_at_the_declare_closes_the_connection(code: int, text: str) -> None:
    session = at(4)
    session.receive_data(peer.qos_ok(), 0.2)
    session.data_to_send()
    session.receive_data(peer.channel_close(code, text, 50, 10), 0.3)
    assert [type(m) for m in sent(session)] == [commands.Channel.CloseOk, commands.Connection.Close]
    assert session.state is State.CLOSING
    assert session.next_events() == []
    session.receive_data(peer.close_ok(), 0.4)
    event = closed(session)
    assert isinstance(event.error, AmqpClosedError)
    assert (event.error.reply_code, event.error.channel, event.error.method) == (code, True, "queue.declare")


def test_amqp_session_handshake_not_done_in_time_closes() -> None:
    session = at(6)
    session.tick(4.9)
    assert session.state is State.BINDING
    assert session.deadline <= 5.0
    session.tick(5.0)
    assert "not consuming in time" in closed(session).reason


def test_amqp_session_connection_close_from_the_broker_is_answered() -> None:
    session = active()
    session.receive_data(peer.close(320, "CONNECTION_FORCED - broker forced connection closure"), 1.0)
    assert [type(m) for m in sent(session)] == [commands.Connection.CloseOk]
    event = closed(session)
    assert isinstance(event.error, AmqpClosedError)
    assert event.error.reply_code == 320


# --- deliveries ----------------------------------------------------------------------------------

def test_amqp_session_delivery_becomes_a_message_with_its_token() -> None:
    session = active()
    [message] = session.receive_data(deliver(b'{"a":1}', 5), 1.0)
    assert message == (TOPIC, b'{"a":1}', (CONN, 5), 0)
    assert (session.deliveries, session.redeliveries) == (1, 0)


def test_amqp_session_redelivered_is_the_dup_flag_and_counted() -> None:
    session = active()
    [message] = session.receive_data(deliver(b"{}", 2, redelivered=True), 1.0)
    assert message[3] == DUP
    assert session.redeliveries == 1


def test_amqp_session_routing_key_maps_back_to_the_mqtt_topic() -> None:
    assert topic_of("stations.v1.PL-KT-001.occupancy") == "stations/v1/PL-KT-001/occupancy"
    assert topic_of("stations.v1.a/b.status") == "stations/v1/a.b/status"
    session = active()
    [message] = session.receive_data(deliver(b"{}", 1, routing_key="stations.v1.PL-KT-002.status"), 1.0)
    assert message[0] == "stations/v1/PL-KT-002/status"


def test_amqp_session_body_in_several_frames_is_joined() -> None:
    session = active()
    body = bytes(range(256)) * 40
    [message] = session.receive_data(deliver(body, 1, frame_max=4096), 1.0)
    assert message[1] == body


def test_amqp_session_empty_body_is_a_message() -> None:
    session = active()
    assert session.receive_data(deliver(b"", 1), 1.0) == [(TOPIC, b"", (CONN, 1), 0)]


def test_amqp_session_frames_split_at_every_byte_boundary() -> None:
    stream = (deliver(b'{"n":1}', 1) + peer.heartbeat() + deliver(b"x" * 300, 2, frame_max=128, redelivered=True)
              + deliver(b"", 3))
    whole = active().receive_data(stream, 1.0)
    assert [m[2] for m in whole] == [(CONN, 1), (CONN, 2), (CONN, 3)]
    for cut in range(1, len(stream)):
        session = active()
        got = session.receive_data(stream[:cut], 1.0) + session.receive_data(stream[cut:], 1.1)
        assert got == whole, f"split at byte {cut}"
        assert session.state is State.ACTIVE


def test_amqp_session_body_over_the_limit_is_skipped_and_flagged_oversize() -> None:
    session = active(max_body=1000)
    body = b"y" * 5000
    stream = deliver(body, 1, frame_max=2048) + deliver(b"{}", 2)
    got = []
    for k in range(0, len(stream), 700):  # as it arrives: never more than a frame is kept
        got += session.receive_data(stream[k:k + 700], 1.0)
        assert session.buffered <= 2048
    assert got == [(TOPIC, b"5000", (CONN, 1), OVERSIZE), (TOPIC, b"{}", (CONN, 2), 0)]


def test_amqp_session_frame_over_frame_max_is_a_protocol_error() -> None:
    session = active()
    session.receive_data(struct.pack(">BHI", 3, 1, 200_000), 1.0)
    [close] = sent(session)
    assert isinstance(close, commands.Connection.Close)
    assert close.reply_code == 501
    assert closed(session).protocol_error is ProtocolErrorKind.OVERSIZE


def test_amqp_session_bad_frame_end_is_malformed() -> None:
    session = active()
    frame = bytearray(peer.heartbeat())
    frame[-1] = 0
    session.receive_data(bytes(frame), 1.0)
    assert closed(session).protocol_error is ProtocolErrorKind.MALFORMED


def test_amqp_session_heartbeat_on_a_channel_is_malformed() -> None:
    session = active()
    session.receive_data(b"\x08\x00\x01\x00\x00\x00\x00\xce", 1.0)
    assert closed(session).protocol_error is ProtocolErrorKind.MALFORMED


def test_amqp_session_delivery_before_consume_ok_is_a_protocol_error() -> None:
    session = at(7)
    assert session.state is State.SUBSCRIBING
    session.receive_data(deliver(b"{}", 1), 1.0)
    assert closed(session).protocol_error is ProtocolErrorKind.UNEXPECTED


def test_amqp_session_content_without_a_delivery_is_a_protocol_error() -> None:
    session = active()
    session.receive_data(deliver(b"{}", 1)[len(peer.method(commands.Basic.Deliver("t", 1, False, "amq.topic",
                                                                                  peer.ROUTING_KEY))):], 1.0)
    assert closed(session).protocol_error is ProtocolErrorKind.UNEXPECTED


def test_amqp_session_body_longer_than_its_header_is_malformed() -> None:
    session = active()
    session.receive_data(deliver(b"abc", 1, body_size=2), 1.0)
    assert closed(session).protocol_error is ProtocolErrorKind.MALFORMED


def test_amqp_session_fast_path_decodes_as_pamqp_does() -> None:
    """The struct decoding of deliver, content header and body agrees with pamqp's on the same bytes."""
    session = active()
    cases = [(b'{"v":1}', 1, False, peer.ROUTING_KEY), (b"z" * 3000, 2**40, True, "stations.v1.X-9.charger"),
             (b"", 3, False, "stations.v1.\u7ad9.status")]
    for body, tag, redelivered, key in cases:
        raw = deliver(body, tag, redelivered=redelivered, routing_key=key, frame_max=1024)
        values = [value for _, value in peer.frames(raw)]
        method, header, *bodies = values
        assert isinstance(method, commands.Basic.Deliver)
        assert isinstance(header, ContentHeader)
        assert all(isinstance(b, ContentBody) for b in bodies)
        [message] = session.receive_data(raw, 1.0)
        assert message[0] == topic_of(method.routing_key or "")
        assert message[1] == b"".join(b.value for b in bodies if isinstance(b, ContentBody))
        assert len(message[1]) == header.body_size
        assert message[2] == (CONN, method.delivery_tag)
        assert bool(message[3] & DUP) == method.redelivered


# --- acknowledgements ------------------------------------------------------------------------------

def test_amqp_session_ack_frame_is_pamqps_basic_ack_with_multiple() -> None:
    assert ack_frame(3) == pamqp_frame.marshal(commands.Basic.Ack(3, multiple=True), 1)
    assert ack_frame(2**50, multiple=False) == pamqp_frame.marshal(commands.Basic.Ack(2**50), 1)


def test_amqp_session_acks_each_call_with_one_multiple_ack_of_its_last_tag() -> None:
    session = active()
    session.receive_data(b"".join(deliver(b"{}", t) for t in range(1, 6)), 1.0)
    assert session.ack([(CONN, 1), (CONN, 2), (CONN, 3)], 1.1) == 3
    assert session.ack([(CONN, 4), (CONN, 5)], 1.2) == 2
    acks = sent(session)
    assert [(a.delivery_tag, a.multiple) for a in acks if isinstance(a, commands.Basic.Ack)] == [(3, True), (5, True)]


def test_amqp_session_tokens_of_another_connection_are_dropped() -> None:
    session = active()
    session.receive_data(deliver(b"{}", 1) + deliver(b"{}", 2), 1.0)
    assert session.ack([(CONN - 1, 9), (CONN - 1, 10)], 1.1) == 0
    assert session.data_to_send() == b""
    assert session.ack([(CONN - 1, 11), (CONN, 1), (CONN, 2), (CONN - 1, 12)], 1.2) == 2
    [ack] = sent(session)
    assert isinstance(ack, commands.Basic.Ack)
    assert ack.delivery_tag == 2


def test_amqp_session_never_acks_a_tag_twice() -> None:
    session = active()
    session.receive_data(deliver(b"{}", 1), 1.0)
    session.ack([(CONN, 1)], 1.1)
    session.data_to_send()
    assert session.ack([(CONN, 1)], 1.2) == 0
    assert session.data_to_send() == b""


# --- heartbeats, pausing ---------------------------------------------------------------------------

def test_amqp_session_sends_a_heartbeat_after_half_the_interval_without_sending() -> None:
    session = active()
    session.tick(BEAT / 2 - 0.5)
    assert session.data_to_send() == b""
    session.tick(BEAT / 2 + 0.2)
    assert session.data_to_send() == peer.heartbeat()


def test_amqp_session_heartbeats_from_the_broker_keep_it_alive() -> None:
    session = active()
    for k in range(1, 10):
        session.receive_data(peer.heartbeat(), k * BEAT * 0.9)
        session.tick(k * BEAT * 0.9 + 1)
    assert session.state is State.ACTIVE


def test_amqp_session_two_heartbeats_missed_close_the_connection() -> None:
    session = active()
    session.receive_data(peer.heartbeat(), 1.0)
    session.tick(1.0 + 2 * BEAT - 0.1)
    assert session.state is State.ACTIVE
    assert session.deadline <= 1.0 + 2 * BEAT
    session.tick(1.0 + 2 * BEAT)
    assert "heartbeat" in closed(session).reason


def test_amqp_session_paused_holds_deliveries_and_still_reads_every_frame() -> None:
    session = active()
    session.pause()
    assert session.receive_data(deliver(b"1", 1) + peer.heartbeat() + deliver(b"2", 2), 1.0) == []
    assert session.held == 2
    session.tick(1.0 + 2 * BEAT - 0.1)
    assert session.state is State.ACTIVE
    assert [m[1] for m in session.resume()] == [b"1", b"2"]
    assert session.receive_data(deliver(b"3", 3), 2.0)[0][1] == b"3"
    session.pause()
    session.receive_data(peer.close(320, "CONNECTION_FORCED"), 3.0)
    assert closed(session).error is not None


# --- the broker's other ways to end it, and ours ----------------------------------------------------

def test_amqp_session_channel_close_while_consuming_drops_acks_and_deliveries() -> None:
    session = active()
    session.receive_data(deliver(b"{}", 1), 1.0)
    session.receive_data(peer.channel_close(406, "PRECONDITION_FAILED - unknown delivery tag 9", 60, 80), 1.1)
    assert [type(m) for m in sent(session)] == [commands.Channel.CloseOk, commands.Connection.Close]
    assert session.ack([(CONN, 1)], 1.2) == 0
    assert session.receive_data(deliver(b"{}", 2), 1.3) == []
    session.receive_data(peer.close_ok(), 1.4)
    event = closed(session)
    assert isinstance(event.error, AmqpClosedError)
    assert (event.error.reply_code, event.error.method) == (406, "basic.ack")


def test_amqp_session_basic_cancel_closes_the_connection_for_a_new_consumer() -> None:
    session = active()
    session.receive_data(peer.cancel("ingest-1"), 1.0)
    [close] = sent(session)
    assert isinstance(close, commands.Connection.Close)
    assert close.reply_code == 200
    session.receive_eof()  # the broker may close at once rather than answer
    event = closed(session)
    assert event.cancelled
    assert event.error is None


def test_amqp_session_disconnect_sends_queued_acks_then_close_and_waits_for_close_ok() -> None:
    session = active()
    session.receive_data(deliver(b"{}", 1), 1.0)
    session.ack([(CONN, 1)], 1.1)
    session.disconnect(1.2)
    assert [type(m) for m in sent(session)] == [commands.Basic.Ack, commands.Connection.Close]
    assert session.state is State.CLOSING
    session.receive_data(peer.close_ok(), 1.3)
    assert closed(session) == Closed("stopped")


def test_amqp_session_close_ok_not_coming_ends_it_at_the_close_timeout() -> None:
    session = active(close_timeout=2.0)
    session.disconnect(1.0)
    session.tick(2.9)
    assert session.state is State.CLOSING
    assert session.deadline == 3.0
    session.tick(3.0)
    assert closed(session).reason == "stopped"


def test_amqp_session_broker_close_while_we_close_wins() -> None:
    session = active()
    session.disconnect(1.0)
    session.receive_data(peer.close(320, "CONNECTION_FORCED"), 1.1)
    event = closed(session)
    assert isinstance(event.error, AmqpClosedError)
    assert event.error.reply_code == 320


def test_amqp_session_disconnect_before_tune_closes_at_once() -> None:
    session = at(1)
    session.disconnect(0.5)
    assert session.data_to_send() == b""
    assert closed(session).reason == "stopped"


def test_amqp_session_ignores_everything_once_closed() -> None:
    session = active()
    session.receive_eof()
    closed(session)
    session.receive_eof()
    session.tick(100.0)
    assert session.receive_data(deliver(b"{}", 1), 101.0) == []
    assert session.ack([(CONN, 1)], 101.0) == 0
    assert session.next_events() == []


def test_amqp_session_every_transition_of_the_table_is_drawn_in_the_docs() -> None:
    text = (ROOT / "docs" / "ingest.md").read_text()
    blocks = re.findall(r"```mermaid\n(stateDiagram-v2.*?)\n```", text, re.DOTALL)
    assert diagram() in blocks, "docs/ingest.md has no diagram equal to ingest.amqp_session.TRANSITIONS"
    assert {event for _, event in TRANSITIONS} == set(Input)
