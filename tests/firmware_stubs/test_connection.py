"""The agent's connection lifecycle against a scripted broker (what it sends, how it retries), and its
last will against the real one."""

from __future__ import annotations

from firmware_stubs.agent import WILL
from telemetry.contract import Kind, topic
from tests.firmware_stubs.conftest import (
    REFUSE,
    SERVE,
    AgentFactory,
    CollectorFactory,
    S,
    ScriptedAgent,
    fast_backoff,
    reading_ts,
    statuses,
)
from tests.firmware_stubs.scripted_broker import (
    CONNECT,
    PINGREQ,
    PUBLISH,
    SUBSCRIBE,
    Close,
    Expect,
    Reply,
    ScriptedBroker,
    connack,
)
from tests.rig import until


async def test_connection_refused_connack_retried_with_backoff_growing_and_nothing_sent(
        scripted_agent: ScriptedAgent) -> None:
    backoff = fast_backoff()
    async with ScriptedBroker(REFUSE) as broker:
        agent = scripted_agent(broker, backoff=backoff)
        await until(lambda: len(broker.sessions) >= 4 and all(s.client_left for s in broker.sessions[:3]),
                    what="four attempts, the agent hanging up each refused one")
        assert not agent.connected
        assert agent.stats.connects == 0
        assert backoff.failures >= 3, "a refusal reset the backoff"
        assert agent.buffered > 0, "the readings wait in the buffer"
    assert all(len(s.of(CONNECT)) == 1 and not s.of(PUBLISH) and not s.of(SUBSCRIBE) for s in broker.sessions)
    c = broker.sessions[0].connect
    assert (c.client_id, c.clean_session, c.keepalive, c.username) == (f"station-{S}", True, 60, None)
    assert (c.will_topic, c.will_payload, c.will_qos, c.will_retain) == (topic(S, Kind.STATUS), WILL, 1, True)


async def test_connection_broker_silent_before_connack_times_out_and_reconnects(
        scripted_agent: ScriptedAgent) -> None:
    async with ScriptedBroker((Expect(CONNECT),), SERVE) as broker:
        agent = scripted_agent(broker, connect_timeout=0.3)
        await until(lambda: agent.connected, what="connected on the second attempt")
        assert broker.sessions[0].client_left, "the agent did not leave the silent broker"
        assert agent.stats.connects == 1
        assert len(broker.sessions) == 2


async def test_connection_dead_broker_found_by_keepalive_and_left(scripted_agent: ScriptedAgent) -> None:
    """CONNACK, then silence: paho pings after one keepalive and gives up after another."""
    async with ScriptedBroker((Expect(CONNECT), Reply(connack())), SERVE) as broker:
        agent = scripted_agent(broker, keepalive=1)
        await until(lambda: len(broker.sessions) == 2 and agent.connected, what="back on a live broker")
        dead = broker.sessions[0]
        assert dead.of(PINGREQ), "no PINGREQ to the silent broker"
        assert dead.client_left
        assert dead.of(SUBSCRIBE), "connected, the agent subscribes to its config"
        assert agent.stats.connects == 2


async def test_connection_backoff_resets_after_a_good_session_only(scripted_agent: ScriptedAgent) -> None:
    backoff = fast_backoff()
    up_and_gone = (Expect(CONNECT), Reply(connack()), Close())
    async with ScriptedBroker(REFUSE, REFUSE, up_and_gone, SERVE) as broker:
        agent = scripted_agent(broker, backoff=backoff)
        await until(lambda: len(broker.sessions) == 4 and agent.connected, what="the fourth attempt served")
        assert backoff.failures == 3, "two refusals and a session dropped at once must all count"
        good = broker.sessions[3]
        await until(lambda: (ts := reading_ts(good)) and max(ts) - min(ts) >= 1000,
                    what="the good session carrying readings of two ticks (longer than healthy_after)")
        good.hang_up()
        await until(lambda: len(broker.sessions) == 5 and agent.connected, what="reconnected after the good session")
        assert broker.sessions[3].client_left is False, "the broker, not the agent, ended the good session"
        assert backoff.failures == 1, "the good session did not reset the backoff"


async def test_connection_power_cut_makes_the_broker_publish_the_last_will(
        make_agent: AgentFactory, collect: CollectorFactory) -> None:
    status = collect(topic(S, Kind.STATUS))
    agent = make_agent()
    agent.start()
    await until(lambda: statuses(status) and statuses(status)[-1]["state"] == "online", what="online status")
    await agent.close(graceful=False)
    await until(lambda: any(m.payload == WILL and m.topic == topic(S, Kind.STATUS) for m in status.messages),
                what="the last will published by the broker")
    assert statuses(status)[-1] == {"state": "offline"}, "the agent said goodbye itself"
