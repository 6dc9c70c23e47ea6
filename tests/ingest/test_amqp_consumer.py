"""The AMQP consumer's transport against a scripted broker: failover, backoff, old tokens, cancel, stop."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pamqp import commands

from ingest.amqp_consumer import AmqpConsumer
from ingest.amqp_url import AmqpUrl
from ingest.config import Settings
from ingest.source import DUP, Message
from telemetry.backoff import Backoff
from tests.ingest import amqp_peer as peer
from tests.ingest.amqp_peer import Conn, ScriptedBroker, deliver
from tests.rig import free_port, until
from tests.security.certs import authority


@dataclass
class RecordedBackoff(Backoff):
    delays: list[float] = field(default_factory=list)

    def next(self) -> float:
        delay = Backoff.next(self)
        self.delays.append(delay)
        return delay


def backoff() -> RecordedBackoff:
    return RecordedBackoff(initial=0.05, cap=1.0, jitter=0.0, healthy_after=5.0)


@asynccontextmanager
async def consuming(urls: str, got: list[Message], **kwargs: object) -> AsyncIterator[AmqpConsumer]:
    options: dict[str, object] = {"queue": "q", "consumer_tag": "ingest-t", "prefetch": 50, "heartbeat": 30,
                                  "connect_timeout": 3.0, "backoff": backoff()} | kwargs
    consumer = AmqpConsumer(urls=AmqpUrl.parse_list(urls), on_messages=got.extend, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(consumer.run(), name="consumer-under-test")
    try:
        yield consumer
    finally:
        await consumer.stop()
        await task


def acks(conn: Conn) -> list[int]:
    return [f.delivery_tag for f in conn.received if isinstance(f, commands.Basic.Ack)]


async def test_amqp_consumer_fails_over_to_the_next_url() -> None:
    async def script(conn: Conn, _number: int) -> None:
        await conn.handshake()
        conn.send(deliver(b"{}", 1))

    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    got: list[Message] = []
    async with ScriptedBroker(script) as broker, consuming(f"{dead},{broker.url()}", got) as consumer:
        await asyncio.wait_for(consumer.connected.wait(), 10)
        assert consumer.node == f"127.0.0.1:{broker.port}"
        await until(lambda: got, timeout=5, what="the delivery")
        assert consumer.backoff.delays == [0.05]  # type: ignore[attr-defined]


async def test_amqp_consumer_refused_credentials_retry_with_growing_backoff() -> None:
    async def script(conn: Conn, number: int) -> None:
        if number < 3:
            conn.send(peer.start())
            await conn.expect(commands.Connection.StartOk)
            conn.send(peer.close(403, "ACCESS_REFUSED - Login was refused", 10, 11))
            await conn.expect(commands.Connection.CloseOk)
            return
        await conn.handshake()

    got: list[Message] = []
    async with ScriptedBroker(script) as broker, consuming(broker.url(), got) as consumer:
        await asyncio.wait_for(consumer.connected.wait(), 10)
        assert len(broker.conns) == 4
        assert consumer.backoff.delays == [0.05, 0.1, 0.2]  # type: ignore[attr-defined]
        assert all(c.header == peer.PROTOCOL_HEADER for c in broker.conns)


async def test_amqp_consumer_tokens_of_an_old_connection_are_dropped() -> None:
    async def script(conn: Conn, number: int) -> None:
        await conn.handshake()
        if number == 0:
            conn.send(deliver(b"a", 1) + deliver(b"b", 2))
            await asyncio.sleep(0.1)
            conn.send(peer.close(320, "CONNECTION_FORCED - broker forced connection closure"))
        else:
            conn.send(deliver(b"a", 1, redelivered=True) + deliver(b"b", 2, redelivered=True))

    got: list[Message] = []
    async with ScriptedBroker(script) as broker, consuming(broker.url(), got) as consumer:
        await until(lambda: len(got) == 4, timeout=10, what="both deliveries twice")
        old, new = got[:2], got[2:]
        assert [m[3] for m in new] == [DUP, DUP]
        assert consumer.ack([m[2] for m in old if m[2]]) == 0
        assert consumer.ack([m[2] for m in new if m[2]]) == 2
        conn = broker.conns[1]
        await until(lambda: acks(conn), timeout=5, what="the basic.ack on the new connection")
        assert acks(conn) == [2]
        assert acks(broker.conns[0]) == []
        assert (consumer.deliveries, consumer.redeliveries, consumer.reconnects) == (4, 2, 1)
        assert consumer.backoff.delays == [0.05]  # type: ignore[attr-defined]


async def test_amqp_consumer_basic_cancel_consumes_again_on_a_new_connection() -> None:
    async def script(conn: Conn, number: int) -> None:
        await conn.handshake()
        if number == 0:
            conn.send(peer.cancel("ingest-t#1"))
            await conn.expect(commands.Connection.Close)

    got: list[Message] = []
    async with ScriptedBroker(script) as broker, consuming(broker.url(), got) as consumer:
        await until(lambda: len(broker.conns) == 2 and consumer.connected.is_set(), timeout=10,
                    what="a second connection consuming")
        assert consumer.consumer_cancels == 1
        declares = [f for f in broker.conns[1].received if isinstance(f, commands.Queue.Declare)]
        assert [d.queue for d in declares] == ["q"]


async def test_amqp_consumer_silent_broker_is_left_after_two_heartbeats(caplog: pytest.LogCaptureFixture) -> None:
    async def script(conn: Conn, number: int) -> None:
        await conn.handshake(heartbeat=1)
        if number == 0:
            await conn.closed(timeout=10)  # sends nothing more: no heartbeats

    got: list[Message] = []
    async with ScriptedBroker(script) as broker, consuming(broker.url(), got) as consumer:
        await until(lambda: len(broker.conns) == 2, timeout=10, what="a reconnection after the silence")
        assert broker.conns[0].closed_at is not None
        assert "no frame from the broker for 2." in caplog.text
        assert consumer.backoff.delays == [0.05]  # type: ignore[attr-defined]


async def test_amqp_consumer_paused_still_sees_the_broker_close() -> None:
    async def script(conn: Conn, number: int) -> None:
        await conn.handshake()
        if number == 0:
            conn.send(deliver(b"held", 1))
            await asyncio.sleep(0.2)
            conn.send(peer.close(320, "CONNECTION_FORCED"))

    got: list[Message] = []
    async with ScriptedBroker(script) as broker, consuming(broker.url(), got) as consumer:
        consumer.pause()  # before it connects: the delivery comes while paused
        await until(lambda: consumer.reconnects == 1, timeout=10, what="consuming again after the close, paused")
        assert got == []
        assert consumer.held == 0  # the held delivery went with its connection (the broker requeues it)
        consumer.resume()


async def test_amqp_consumer_clean_stop_sends_the_last_ack_then_close() -> None:
    async def script(conn: Conn, _number: int) -> None:
        await conn.handshake()
        conn.send(deliver(b"{}", 1) + deliver(b"{}", 2))
        await conn.expect(commands.Connection.Close)  # answered with close-ok by Conn

    got: list[Message] = []
    async with ScriptedBroker(script) as broker:
        async with consuming(broker.url(), got) as consumer:
            await until(lambda: len(got) == 2, timeout=10, what="two deliveries")
            consumer.ack([m[2] for m in got if m[2]])
        conn = broker.conns[0]
        kinds = [type(f) for f in conn.received]
        assert kinds[-2:] == [commands.Basic.Ack, commands.Connection.Close]
        assert acks(conn) == [2]
        await conn.closed()


async def test_amqp_consumer_amqps_verifies_the_broker_with_amqp_ca_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ca = authority(tmp_path / "pki")
    server = ca.issue("broker", server=True)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(server.cert, server.key)

    async def script(conn: Conn, _number: int) -> None:
        await conn.handshake()
        conn.send(deliver(b"{}", 1))

    got: list[Message] = []
    async with ScriptedBroker(script, tls=server_tls) as broker:
        url = f"amqps://guest:guest@127.0.0.1:{broker.port}/"
        monkeypatch.setenv("AMQP_URL", url)
        monkeypatch.setenv("AMQP_CA_FILE", str(ca.cert))
        async with consuming(url, got, tls=Settings().amqp_tls_context()) as consumer:
            await until(lambda: got, timeout=10, what="a delivery over TLS")
            assert consumer.node == f"127.0.0.1:{broker.port}"
        other = authority(tmp_path / "other", "other")  # a broker this CA did not sign is refused
        monkeypatch.setenv("AMQP_CA_FILE", str(other.cert))
        refused: list[Message] = []
        async with consuming(url, refused, tls=Settings().amqp_tls_context()) as consumer:
            await until(lambda: consumer.backoff.delays, timeout=10,  # type: ignore[attr-defined]
                        what="the TLS handshake refused")
            assert not consumer.connected.is_set()
        assert refused == []
