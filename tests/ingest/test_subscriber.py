"""Ingest's subscriber against a scripted broker: one test per transition, on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from ingest.session import Closed, Connected, Event, ProtocolErrorKind
from ingest.source import DUP, OVERSIZE, RETAINED, Message
from ingest.subscriber import Subscriber
from telemetry.backoff import Backoff
from tests.ingest.scripted_broker import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    SUBSCRIBE,
    Conn,
    Script,
    ScriptedBroker,
    connack,
    handshake,
    publish,
    suback,
)
from tests.rig import until

KEEPALIVE = 2


class Recorder:
    """What the subscriber hands over and the events it reports."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.events: list[Event] = []

    def on_messages(self, messages: Sequence[Message]) -> None:
        self.messages.extend(messages)

    def payloads(self) -> list[bytes]:
        return [m[1] for m in self.messages]


@contextlib.asynccontextmanager
async def running(broker: ScriptedBroker, **kwargs: object) -> AsyncIterator[tuple[Subscriber, Recorder]]:
    recorder = Recorder()
    options: dict[str, object] = {
        "host": "127.0.0.1", "port": broker.port, "client_id": "ingest-test", "topic_filter": "stations/v1/+/+",
        "keepalive": KEEPALIVE, "connect_timeout": 1.0,
        "backoff": Backoff(initial=0.02, cap=0.05, healthy_after=0.5)} | kwargs
    subscriber = Subscriber(on_messages=recorder.on_messages, on_event=recorder.events.append,
                            **options)  # type: ignore[arg-type]
    task = asyncio.create_task(subscriber.run(), name="subscriber")
    try:
        yield subscriber, recorder
    finally:
        await subscriber.stop()
        await task


def script(*steps: Script) -> Script:
    """Connection n plays ``steps[n]``, the last step for every connection after."""

    async def play(conn: Conn, number: int) -> None:
        await steps[min(number, len(steps) - 1)](conn, number)

    return play


async def good(conn: Conn, _number: int) -> None:
    await handshake(conn)


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5])
async def test_subscriber_connack_refused_retries_with_the_reason(code: int, caplog: pytest.LogCaptureFixture) -> None:
    async def refuse(conn: Conn, _number: int) -> None:
        await conn.expect(CONNECT)
        conn.send(connack(code))

    async with ScriptedBroker(script(refuse, good)) as broker, running(broker) as (subscriber, _):
        await asyncio.wait_for(subscriber.connected.wait(), 5)
        assert len(broker.conns) == 2
        assert SUBSCRIBE not in broker.conns[0].kinds()
    assert "broker refused the connection" in caplog.text


async def test_subscriber_session_present_1_then_0_is_a_lost_session(caplog: pytest.LogCaptureFixture) -> None:
    async def resumed(conn: Conn, _number: int) -> None:
        await handshake(conn, present=True)
        conn.close()

    async def lost(conn: Conn, _number: int) -> None:
        await handshake(conn, present=False)

    async with ScriptedBroker(script(resumed, lost)) as broker, running(broker) as (_, recorder):
        await until(lambda: len(broker.conns) == 2 and any(isinstance(e, Connected) and e.session_lost
                                                            for e in recorder.events), what="the lost session")
    connected = [e for e in recorder.events if isinstance(e, Connected)]
    assert connected[:2] == [Connected(session_present=True, session_lost=False),
                             Connected(session_present=False, session_lost=True)]
    assert "lost the session" in caplog.text


@pytest.mark.parametrize(("packet_id", "granted"), [(1, 0x80), (1, 0), (7, 1)])
async def test_subscriber_suback_refused_qos_0_or_wrong_id_is_not_subscribed(
        packet_id: int, granted: int, caplog: pytest.LogCaptureFixture) -> None:
    async def refuse(conn: Conn, _number: int) -> None:
        await conn.expect(CONNECT)
        conn.send(connack())
        await conn.expect(SUBSCRIBE)
        conn.send(suback(packet_id, granted))

    async with ScriptedBroker(script(refuse, good)) as broker, running(broker) as (subscriber, _):
        await asyncio.wait_for(subscriber.connected.wait(), 5)
        assert len(broker.conns) == 2  # the first was closed, never counted as connected
    assert "did not grant QoS 1" in caplog.text


async def test_subscriber_qos_0_and_1_handed_over_2_and_3_close_unanswered() -> None:
    async def qos(conn: Conn, number: int) -> None:
        await handshake(conn, present=number > 0)
        if number == 0:
            conn.send(publish(b"q0", qos=0) + publish(b"q1", 5))
        elif number == 1:
            conn.send(publish(b"q2", 6, qos=2))
        elif number == 2:
            conn.send(publish(b"q3", 7, qos=3))

    async with ScriptedBroker(qos) as broker, running(broker) as (subscriber, recorder):
        await until(lambda: len(recorder.messages) == 2, what="the QoS 0 and 1 messages")
        subscriber.ack([m[2] for m in recorder.messages if m[2]])
        await broker.conns[0].expect(PUBACK)
        broker.conns[0].close()
        await until(lambda: len(broker.conns) >= 4, what="two closed connections after QoS 2 and 3")
        for conn in broker.conns[1:3]:
            await conn.wait_closed()
            assert PUBACK not in conn.kinds()
            assert 5 not in conn.kinds()
    assert recorder.payloads() == [b"q0", b"q1"]
    kinds = [e.protocol_error for e in recorder.events if isinstance(e, Closed) and e.protocol_error]
    assert kinds == [ProtocolErrorKind.QOS2, ProtocolErrorKind.QOS3]


async def test_subscriber_declared_oversize_publish_is_skipped_and_the_next_arrives() -> None:
    async def big(conn: Conn, _number: int) -> None:
        await handshake(conn)
        conn.send(publish(b"x" * 5_000_000, 3))
        conn.send(publish(b"after", 4))

    async with ScriptedBroker(big) as broker, running(broker) as (_, recorder):
        await until(lambda: len(recorder.messages) == 2, what="the oversize header and the next message")
        assert len(broker.conns) == 1
    assert recorder.messages[0][1:] == (b"5000000", (1, 3), OVERSIZE)
    assert recorder.messages[1][1] == b"after"


@pytest.mark.parametrize("paused", [False, True])
async def test_subscriber_silent_broker_found_within_1_5_keepalive(paused: bool) -> None:
    async def silent(conn: Conn, number: int) -> None:
        conn.answer_pings = number > 0
        await handshake(conn)

    async with ScriptedBroker(silent) as broker, running(broker, connect_timeout=5.0) as (subscriber, _):
        if paused:
            subscriber.pause()
        first = await broker.connection(0)
        await until(lambda: len(broker.conns) == 2, timeout=10, what="a reconnect after the silence")
        closed_at = await first.wait_closed()
    assert closed_at - first.last_sent_at < 1.5 * KEEPALIVE
    assert PINGREQ in first.kinds()


async def test_subscriber_eof_while_paused_reconnects_and_subscribes_while_paused() -> None:
    async def drop(conn: Conn, number: int) -> None:
        await handshake(conn, present=number > 0)
        if number == 0:
            conn.close()
        else:
            conn.send(publish(b"held", 9))

    async with ScriptedBroker(drop) as broker, running(broker) as (subscriber, recorder):
        subscriber.pause()
        await until(lambda: len(broker.conns) == 2 and subscriber.connected.is_set() and subscriber.held == 1,
                    what="subscribed again (the SUBACK read while paused), one message held")
        assert recorder.messages == []
        subscriber.resume()
        assert recorder.payloads() == [b"held"]
        assert len(broker.conns) == 2


async def test_subscriber_backlog_before_the_suback_longer_than_the_connect_timeout() -> None:
    async def backlog(conn: Conn, _number: int) -> None:
        await conn.expect(CONNECT)
        conn.send(connack(present=True))
        sub = await conn.expect(SUBSCRIBE)
        for i in range(1, 16):  # 1.5 s of backlog, the connect timeout 1 s
            conn.send(publish(str(i).encode(), i, dup=True))
            await asyncio.sleep(0.1)
        conn.send(suback(sub.packet_id))

    async with ScriptedBroker(backlog) as broker, running(broker) as (subscriber, recorder):
        await asyncio.wait_for(subscriber.connected.wait(), 5)
        assert len(broker.conns) == 1
    assert recorder.payloads() == [str(i).encode() for i in range(1, 16)]
    assert all(m[3] == DUP for m in recorder.messages)


async def test_subscriber_retained_repeat_flagged_on_a_resumed_session_only() -> None:
    async def retained(conn: Conn, number: int) -> None:
        await handshake(conn, present=number > 0)
        conn.send(publish(b'{"state": "offline"}', 2, retain=True, topic="stations/v1/PL-KT-001/status"))
        if number == 0:
            conn.close()

    async with ScriptedBroker(retained) as broker, running(broker) as (_, recorder):
        await until(lambda: len(recorder.messages) == 2, what="the retained message on both sessions")
        assert len(broker.conns) == 2
    assert [m[3] for m in recorder.messages] == [0, RETAINED]


async def test_subscriber_clean_stop_writes_the_last_pubacks_and_disconnect() -> None:
    async def feed(conn: Conn, _number: int) -> None:
        await handshake(conn)
        conn.send(b"".join(publish(b"m", pid) for pid in range(1, 201)))

    async with ScriptedBroker(feed) as broker:
        async with running(broker) as (subscriber, recorder):
            await until(lambda: len(recorder.messages) == 200, what="200 messages")
            subscriber.ack([m[2] for m in recorder.messages if m[2]])
        conn = broker.conns[0]
        await conn.wait_closed()
    acked = [p.packet_id for p in conn.received if p.kind == PUBACK]
    assert acked == list(range(1, 201))
    assert conn.kinds()[-1] == DISCONNECT


async def test_subscriber_no_connack_warns_with_the_reason_and_backoff_resets_after_a_good_session(
        caplog: pytest.LogCaptureFixture) -> None:
    async def mute(conn: Conn, _number: int) -> None:
        await conn.expect(CONNECT)

    async def good_then_drop(conn: Conn, _number: int) -> None:
        await handshake(conn)
        await asyncio.sleep(0.6)  # longer than healthy_after
        conn.close()

    with caplog.at_level(logging.WARNING):
        async with ScriptedBroker(script(mute, mute, good_then_drop, mute)) as broker, \
                running(broker, connect_timeout=0.3) as (subscriber, _):
            await until(lambda: len(broker.conns) >= 3, what="two attempts without a CONNACK")
            assert subscriber.backoff.failures == 2
            started = time.monotonic()
            await until(lambda: len(broker.conns) >= 4, what="the good session and its end")
            assert time.monotonic() - started > 0.5
            assert subscriber.backoff.failures == 1  # reset by the good session, then its end
    assert "no CONNACK in time" in caplog.text
