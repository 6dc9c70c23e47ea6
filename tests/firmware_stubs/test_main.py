"""``python -m firmware_stubs`` as a process: killed and restarted, stopped, misconfigured."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware_stubs.agent import WILL
from telemetry.contract import Kind, topic
from tests.conftest import IngestFactory, Spawn
from tests.firmware_stubs.conftest import CollectorFactory, S, influx_readings, influx_seqs, statuses
from tests.mqtt import publish
from tests.rig import Influxd, Mosquitto, wait_for

AgentProcess = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def agent_process(tmp_path: Path, broker: Mosquitto, spawn: Spawn) -> AgentProcess:
    """Start ``python -m firmware_stubs --station S`` on this test's broker and buffer; killed after."""

    def start(*args: str, **env: str) -> subprocess.Popen[bytes]:
        return spawn("firmware_stubs", *(args or ("--station", S)), stdout=tmp_path / "agent.log",
                     env={"MQTT_URL": broker.url, "AGENT_BUFFER_PATH": str(tmp_path / "buffer.sqlite3"), **env})

    return start


def stored_rows(path: Path) -> dict[int, int]:
    """seq -> ts of the readings in the agent's buffer file (read while the agent runs)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return {seq: ts for seq, ts in conn.execute("SELECT seq, ts FROM readings")}
    finally:
        conn.close()


def test_agent_process_killed_and_restarted_continues_seq_and_sends_the_unsent(
        tmp_path: Path, broker: Mosquitto, influxd: Influxd, db: str, start_ingest: IngestFactory,
        agent_process: AgentProcess, collect: CollectorFactory) -> None:
    start_ingest()
    publish(broker.port, [(topic(S, Kind.CONFIG), {"rev": "fast", "generation": 1, "occupancy_interval_s": 1, "charger_interval_s": 1,
                                                   "temperature_interval_s": 1, "status_interval_s": 1})], retain=True)
    first = agent_process()
    wait_for(lambda: len(influx_seqs(influxd, db, S)) >= 5, what="the first agent's readings in InfluxDB")
    broker.stop()
    buffer = tmp_path / "buffer.sqlite3"
    wait_for(lambda: len(stored_rows(buffer)) >= 8, what="readings piling up in the buffer while the broker is down")
    first.kill()
    first.wait()
    unsent = stored_rows(buffer)
    broker.start()
    status = collect(topic(S, Kind.STATUS))
    agent_process()
    last_unsent = max(unsent)

    def continued() -> dict[int, int]:
        found = influx_seqs(influxd, db, S)
        return found if found and max(found) >= last_unsent + 5 else {}

    stored = wait_for(continued, timeout=30, what="the restarted agent's readings after the unsent ones")
    assert sorted(stored) == list(range(1, max(stored) + 1)), "seq skipped or lost a reading"
    assert len(influx_readings(influxd, db, S)) == len(stored), "a seq was used twice (restarted?)"
    assert {seq: stored[seq] for seq in unsent} == unsent, "an unsent reading was lost or changed its ts"
    wait_for(lambda: any(s.get("state") == "online" for s in statuses(status)), what="the restarted agent online")
    wait_for(lambda: not stored_rows(buffer), what="the buffer emptied (every reading acknowledged)")


def test_agent_process_last_will_on_kill_and_offline_on_sigterm(broker: Mosquitto, agent_process: AgentProcess,
                                                                collect: CollectorFactory) -> None:
    status = collect(topic(S, Kind.STATUS))
    proc = agent_process()
    wait_for(lambda: statuses(status) and statuses(status)[-1]["state"] == "online", what="online")
    proc.kill()
    proc.wait()
    wait_for(lambda: status.messages[-1].payload == WILL, what="the last will after kill -9")
    proc = agent_process()
    wait_for(lambda: statuses(status)[-1]["state"] == "online", what="online again")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    last = json.loads(status.messages[-1].payload)
    assert last["state"] == "offline"
    assert "ts" in last, "the will, not the agent's own offline status"


@pytest.mark.parametrize(("args", "env", "message"), [
    ((), {"AGENT_BUFFER_MAX": "0"}, "AGENT_BUFFER_MAX"),
    ((), {"MQTT_URL": "http://broker"}, "MQTT_URL"),
    ((), {"AGENT_STUB_VALUES": '{"occupancy": {"persons": 1}}'}, "AGENT_STUB_VALUES"),
    (("--station", "PL-KT-999"), {}, "station PL-KT-999 is not in the registry"),
    (("--station", "PL-KT-042"), {}, "station PL-KT-042 is basic: it has no telemetry"),
    (("--station", ""), {}, "no station: give --station or STATION_ID"),
])
def test_agent_process_refuses_bad_settings_naming_them(tmp_path: Path, agent_process: AgentProcess,
                                                        args: tuple[str, ...], env: dict[str, str],
                                                        message: str) -> None:
    proc = agent_process(*args, **env)
    code = proc.wait(30)
    assert code != 0
    assert message in (tmp_path / "agent.log").read_text()
