"""Failover over several brokers: the transitions of ``firmware_stubs.failover`` one by one, the agent
against scripted brokers (which URL it tries when, what it sends again), and against real mosquittos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_stubs.agent import Address
from firmware_stubs.buffer import BufferFile
from firmware_stubs.failover import Failover
from telemetry.backoff import Backoff
from telemetry.registry import Station
from tests.firmware_stubs.conftest import (
    REFUSE,
    SERVE,
    S,
    ScriptedAgent,
    published_readings,
    readings,
    stub_agent,
)
from tests.firmware_stubs.scripted_broker import CONNECT, PUBLISH, Close, Expect, Reply, ScriptedBroker, Serve, connack
from tests.mqtt import Collector
from tests.rig import Mosquitto, mosquittos, until


def backoff() -> Backoff:
    return Backoff(initial=1.0, cap=8.0, jitter=0.0, healthy_after=10.0)


# --- the transitions ---------------------------------------------------------------------------


def test_failover_starts_on_the_first_broker() -> None:
    assert Failover(["a", "b", "c"], backoff()).current == "a"


def test_failover_needs_a_broker() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Failover([], backoff())


def test_failover_failed_session_moves_to_the_next_broker_and_the_wait_grows() -> None:
    f = Failover(["a", "b", "c"], backoff())
    assert (f.failed(), f.current) == (1.0, "b")
    assert (f.failed(), f.current) == (2.0, "c")


def test_failover_wraps_around_to_the_first_broker_with_the_wait_still_growing() -> None:
    f = Failover(["a", "b"], backoff())
    f.failed()
    assert (f.failed(), f.current, f.index) == (2.0, "a", 0)
    assert f.failed() == 4.0


def test_failover_healthy_session_lost_moves_on_and_resets_the_wait() -> None:
    f = Failover(["a", "b", "c"], backoff())
    f.failed()
    f.failed()
    assert (f.lost(up=10.0), f.current) == (1.0, "a")


def test_failover_short_session_lost_moves_on_and_keeps_the_wait_growing() -> None:
    f = Failover(["a", "b", "c"], backoff())
    f.failed()
    assert (f.lost(up=0.5), f.current) == (2.0, "c")


def test_failover_one_broker_is_tried_again_as_before() -> None:
    f = Failover(["a"], backoff())
    assert (f.failed(), f.current, f.lost(up=60.0), f.current) == (1.0, "a", 1.0, "a")


# --- the agent against scripted brokers ----------------------------------------------------------


async def test_failover_first_url_refuses_second_accepts(scripted_agent: ScriptedAgent) -> None:
    async with ScriptedBroker(REFUSE) as first, ScriptedBroker(SERVE) as second:
        agent = scripted_agent(first, second)
        await until(lambda: agent.connected, what="connected to the second broker")
        assert len(first.sessions) == 1
        assert first.sessions[0].client_left, "the agent did not hang up the refused session"
        assert len(second.sessions) == 1
        assert agent.stats.connects == 1
        assert agent._connection.endpoint.port == second.port
        await until(lambda: published_readings(second.sessions[0]), what="readings on the second broker")
        assert not first.sessions[0].of(PUBLISH)


async def test_failover_connection_lost_after_connack_moves_to_the_next_url(scripted_agent: ScriptedAgent) -> None:
    up_and_gone = (Expect(CONNECT), Reply(connack()), Close())
    async with ScriptedBroker(up_and_gone) as first, ScriptedBroker(SERVE) as second:
        agent = scripted_agent(first, second)
        await until(lambda: agent.connected and agent._connection.endpoint.port == second.port,
                    what="connected to the second broker")
        assert len(first.sessions) == 1, "the agent went back to the broker that dropped it"
        assert agent.stats.connects == 2


async def test_failover_urls_tried_in_order_round_and_round(scripted_agent: ScriptedAgent) -> None:
    async with ScriptedBroker(REFUSE) as a, ScriptedBroker(REFUSE) as b, ScriptedBroker(REFUSE) as c:
        agent = scripted_agent(a, b, c)
        brokers = {id(x): name for x, name in ((a, "a"), (b, "b"), (c, "c"))}
        await until(lambda: len(a.sessions) >= 3, what="three rounds")
        sessions = sorted((s.opened, brokers[id(x)]) for x in (a, b, c) for s in x.sessions)
        order = "".join(name for _t, name in sessions)
        assert order.startswith("abcabca"), order
        assert not agent.connected


async def test_failover_readings_in_flight_on_the_dead_broker_are_sent_again_on_the_next(
        scripted_agent: ScriptedAgent) -> None:
    """The first broker takes every PUBLISH and acknowledges none, then dies: nothing is lost, nothing stuck."""
    silent = (Expect(CONNECT), Reply(connack()), Serve(puback=False))
    async with ScriptedBroker(silent) as first, ScriptedBroker(SERVE) as second:
        agent = scripted_agent(first, second)
        await until(lambda: len(published_readings(first.sessions[0])) >= 10 if first.sessions else False,
                    what="ten readings in flight on the first broker")
        assert agent.stats.acknowledged == 0
        first.sessions[0].hang_up()
        await until(lambda: agent._connection.endpoint.port == second.port and agent.connected,
                    what="on the second broker")
        in_flight = {r["seq"] for r in published_readings(first.sessions[0])}
        await until(lambda: in_flight <= {r["seq"] for r in published_readings(second.sessions[0])},
                    what="every reading in flight on the dead broker sent again on the next")
        await until(lambda: agent.stats.acknowledged >= len(in_flight) and agent.buffered <= 6,
                    what="the backlog acknowledged (only the latest tick's readings left)")
        buffered = {row.id for row in agent._buffer.oldest(limit=1000)}
        assert len(buffered) <= 6, "readings stuck in the buffer"
        seqs = {r["seq"] for r in published_readings(second.sessions[0])}
        assert set(range(1, max(seqs) + 1)) <= seqs | in_flight, "a seq never reached any broker"


# --- real brokers --------------------------------------------------------------------------------


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[list[Mosquitto]]:
    """Three mosquittos, stopped after the test."""
    with mosquittos(tmp_path, 3) as started:
        yield started


async def test_failover_agent_moves_through_real_brokers_as_they_die_without_a_seq_gap(
        brokers: list[Mosquitto], station: Station, buffer_file: BufferFile) -> None:
    collectors = [Collector(b.port, f"stations/v1/{S}/+") for b in brokers]
    agent = stub_agent(station, buffer_file.buffer(station=S), [Address("127.0.0.1", b.port) for b in brokers])
    try:
        for dead in (0, 1):
            await until(lambda: len(readings(collectors[dead])) >= 5,  # noqa: B023 - awaited here
                        what=f"readings on broker {dead}")
            brokers[dead].stop()
            await until(lambda: agent.connected and agent._connection.endpoint.port == brokers[dead + 1].port,  # noqa: B023
                        what=f"the agent on broker {dead + 1}")
        await until(lambda: len(readings(collectors[2])) >= 5, what="readings on the last broker")
        await until(lambda: agent.buffered <= 6, what="the backlog sent")
        acknowledged = agent._buffer.seq - agent.buffered
        got = {r["seq"] for c in collectors for r in readings(c)}
        assert set(range(1, acknowledged + 1)) <= got, "an acknowledged reading reached no subscriber"
    finally:
        await agent.close(graceful=False)
        for c in collectors:
            c.close()
