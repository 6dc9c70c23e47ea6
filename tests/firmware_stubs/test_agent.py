"""The agent against a real broker (and ingest and InfluxDB where the data must land)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from firmware_stubs.agent import WILL
from firmware_stubs.buffer import BufferFile
from firmware_stubs.drivers import ChargerState, Drivers, StubValues, stub_drivers
from simulator.network import SimNetwork
from telemetry.contract import Kind, topic
from telemetry.registry import Station
from tests.conftest import IngestFactory
from tests.firmware_stubs.conftest import (
    AgentFactory,
    CollectorFactory,
    ManualClock,
    S,
    influx_readings,
    influx_seqs,
    readings,
    statuses,
)
from tests.mqtt import publish
from tests.payloads import now_ms
from tests.rig import Influxd, Mosquitto, until, wait_for


async def test_agent_broker_restart_loses_nothing_and_keeps_original_timestamps(
        broker: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory, make_agent: AgentFactory,
        buffer_file: BufferFile) -> None:
    start_ingest()
    agent = make_agent()
    async with agent:
        await until(lambda: len(influx_seqs(influxd, db, S)) >= 5, what="readings stored")
        broker.stop()
        down_ms = now_ms()
        await until(lambda: not agent.connected and agent.buffered >= 10, what="readings piling up offline")
        broker.start()  # the agent and ingest race back; ingest's session keeps what it misses meanwhile
        up_ms = now_ms()
        await until(lambda: agent.connected, what="the agent back")
        await until(lambda: agent.buffered == 0, what="the backlog sent")
        last = buffer_file.buffer(station=S).seq

    def all_stored() -> dict[int, int]:
        found = influx_seqs(influxd, db, S)
        return found if len(found) >= last else {}

    stored = wait_for(all_stored, timeout=30, what=f"seq 1..{last} in InfluxDB")
    assert sorted(stored) == list(range(1, last + 1)), "a seq is missing or extra"
    assert len(influx_readings(influxd, db, S)) == last, "a seq was used twice"
    offline = [ts for ts in stored.values() if down_ms <= ts < up_ms]
    assert len(offline) >= 10, "readings taken while the broker was down lost their original timestamps"


async def test_agent_replays_oldest_first_in_batches_at_its_rate_while_live_readings_go_at_once(
        make_agent: AgentFactory, collect: CollectorFactory, network: SimNetwork) -> None:
    """On a clock the test moves one period at a time, the backlog never gets ahead of replay_rate."""
    clock = ManualClock(time.time())
    received: list[tuple[float, Any]] = []  # (the agent's clock when it arrived, message), in order of arrival
    collector = collect(f"stations/v1/{S}/+")
    collector.client.on_message = lambda _c, _u, m: received.append((clock.time(), m))
    agent = make_agent(replay_rate=3, clock=clock)

    def replayed() -> int:
        return sum(len(doc) for _t, m in list(received) if isinstance(doc := json.loads(m.payload), list))

    async with agent:
        await until(lambda: agent.connected, what="connected")
        network.cut()
        await until(lambda: not agent.connected, what="the connection lost")
        while agent.buffered < 12:
            produced = agent.stats.produced
            clock.advance(1)
            await until(lambda: agent.stats.produced > produced, what="readings of the next period")  # noqa: B023 - awaited in this iteration
        restored_ms = round(clock.time() * 1000) + 1
        network.restore()
        clock.advance(1)  # the backoff's wait (at most 1 s) is over
        await until(lambda: agent.connected, what="reconnected")
        reconnected = clock.time()
        while agent.buffered:
            sent = replayed()
            clock.advance(1)
            await until(lambda: replayed() > sent or not agent.buffered, what="the next replay step")  # noqa: B023 - awaited in this iteration
        last_seq = agent._buffer.seq
    after = [(t, m, json.loads(m.payload)) for t, m in received
             if m.topic.endswith(("/occupancy", "/charger", "/temperature"))]
    batches = [(t, doc) for t, _m, doc in after if isinstance(doc, list)]
    backlog = [r for _t, doc in batches for r in doc if r["ts"] < restored_ms]
    assert len(backlog) >= 12
    assert all(len(doc) <= 3 for _t, doc in batches), "a replay step sent more than replay_rate readings"
    for t in {t for t, _doc in batches if t >= reconnected}:
        sent = sum(len(doc) for u, doc in batches if reconnected <= u <= t)
        assert sent <= 3 * (round(t - reconnected) + 1), "the backlog went faster than replay_rate"
    # QoS 1 is at least once: a batch whose PUBACK was slow (on a loaded machine) may go again with the next
    # step; what is new in each step must still be the oldest not sent yet
    first_sent = list(dict.fromkeys(r["seq"] for r in backlog))
    assert first_sent == sorted(first_sent), "backlog not sent oldest first"
    arrivals = [doc for _t, _m, doc in after]
    first_live = next(i for i, doc in enumerate(arrivals) if isinstance(doc, dict) and doc["ts"] > restored_ms)
    last_batch = max(i for i, doc in enumerate(arrivals) if isinstance(doc, list))
    assert first_live < last_batch, "live readings waited behind the backlog"
    seqs = [doc["seq"] for _t, _m, doc in after if isinstance(doc, dict)] + [r["seq"] for _t, d in batches for r in d]
    assert set(seqs) == set(range(1, last_seq + 1))


async def test_agent_refuses_a_bad_config_and_keeps_the_old_one(
        broker: Mosquitto, make_agent: AgentFactory, collect: CollectorFactory, buffer_file: BufferFile) -> None:
    config_topic = topic(S, Kind.CONFIG)
    publish(broker.port, [(config_topic, {"rev": "r1", "generation": 1, "occupancy_interval_s": 1, "charger_interval_s": 3600,
                                          "temperature_interval_s": 3600, "status_interval_s": 2})], retain=True)
    status = collect(topic(S, Kind.STATUS))
    data = collect(topic(S, Kind.OCCUPANCY))
    agent = make_agent(config=None)
    async with agent:
        await until(lambda: any(s.get("config_rev") == "r1" for s in statuses(status)), what="config r1 reported")
        await until(lambda: len(readings(data)) >= 3, what="occupancy every second, as config r1 says")
        publish(broker.port, [(config_topic, {"rev": "r2", "generation": 2, "occupancy_interval_s": 0})], retain=True)
        refused = await until(lambda: [s for s in statuses(status) if s.get("error")], what="the refusal reported")
        assert refused[-1]["config_rev"] == "r1"
        assert "occupancy_interval_s" in refused[-1]["error"]
        assert agent.config.rev == "r1"
        assert agent.config.occupancy_interval_s == 1
        publish(broker.port, [(config_topic, b"{not json")], retain=True)
        await until(lambda: "json" in (statuses(status)[-1].get("error") or "").lower(), what="bad JSON refused")
        publish(broker.port, [(config_topic, {"rev": "r3", "generation": 3, "status_interval_s": 1})], retain=True)
        await until(lambda: statuses(status)[-1].get("config_rev") == "r3" and "error" not in statuses(status)[-1],
                    what="config r3 applied, the error cleared")
    saved = buffer_file.buffer(station=S).config()
    assert saved is not None
    assert json.loads(saved)["rev"] == "r3"


async def test_agent_last_will_reaches_subscribers_when_its_connection_is_cut(
        broker: Mosquitto, make_agent: AgentFactory, collect: CollectorFactory, network: SimNetwork) -> None:
    status = collect(topic(S, Kind.STATUS))
    agent = make_agent()
    async with agent:
        await until(lambda: statuses(status) and statuses(status)[0]["state"] == "online", what="online status")
        network.cut()
        await until(lambda: any(m.payload == WILL for m in status.messages), what="the last will")
        retained = collect(topic(S, Kind.STATUS))
        await until(lambda: retained.messages, what="the retained status")
        assert (retained.messages[0].payload, retained.messages[0].retain) == (WILL, True)


async def test_agent_clean_shutdown_publishes_offline_itself(make_agent: AgentFactory,
                                                             collect: CollectorFactory) -> None:
    status = collect(topic(S, Kind.STATUS))
    agent = make_agent()
    async with agent:
        await until(lambda: agent.connected and agent.stats.acknowledged, what="connected and reporting")
    # the broker acknowledged the goodbye before the agent left; its delivery to us may come a moment later
    await until(lambda: [s["state"] for s in statuses(status)][-1:] == ["offline"], what="the agent's own offline status")
    last = statuses(status)[-1]
    assert {"ts", "fw", "uptime_s", "buffered", "config_rev"} <= last.keys(), "the will, not a clean goodbye"
    assert all(m.payload != WILL for m in status.messages)


class _Broken:
    charger_id = "C2"

    def read(self) -> ChargerState:
        raise RuntimeError("I2C bus stuck")


async def test_agent_counts_driver_errors_and_keeps_reporting(tmp_path: Path, station: Station,
                                                              make_agent: AgentFactory,
                                                              collect: CollectorFactory) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"occupancy": {"people": 2},
                                  "temperature": {"outdoor": {"celsius": 99.0}}}))  # outside the contract
    stub = stub_drivers(station, StubValues(path=values))
    data, status = collect(f"stations/v1/{S}/+"), collect(topic(S, Kind.STATUS))
    agent = make_agent(drivers=Drivers(stub.occupancy, (stub.chargers[0], _Broken()), stub.sensors))
    async with agent:
        await until(lambda: agent.stats.driver_errors >= 6, what="driver errors counted")
        await until(lambda: any((s.get("driver_errors") or 0) >= 4 for s in statuses(status)),
                    what="driver errors in the status")
        got = readings(data)
        assert {r.get("charger_id") for r in got if "charger_id" in r} == {"C1"}
        assert {r.get("sensor") for r in got if "sensor" in r} == {"indoor"}
        assert any(r.get("people") == 2 for r in got)
        values.write_text(json.dumps({"temperature": {"outdoor": {"celsius": -7.25}}}))
        await until(lambda: any(r.get("sensor") == "outdoor" for r in readings(data)), what="outdoor back")
        assert agent.connected


async def test_agent_buffer_bound_drops_the_oldest_and_reports_it(make_agent: AgentFactory,
                                                                  collect: CollectorFactory,
                                                                  network: SimNetwork) -> None:
    data, status = collect(f"stations/v1/{S}/+"), collect(topic(S, Kind.STATUS))
    agent = make_agent(max_readings=8)
    network.cut()
    async with agent:
        await until(lambda: agent.dropped >= 7, what="readings dropped at the bound")
        network.restore()
        await until(lambda: agent.connected and agent.buffered == 0, what="the rest sent")
        dropped, last = agent.dropped, agent._buffer.seq
        await until(lambda: any((s.get("dropped") or 0) >= dropped for s in statuses(status)),
                    what="dropped in the status")
    seqs = sorted(r["seq"] for r in readings(data))
    assert seqs == list(range(dropped + 1, last + 1)), "not exactly the oldest were dropped"
