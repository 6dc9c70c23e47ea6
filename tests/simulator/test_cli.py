"""``python -m simulator`` as a process: a short run's table, SIGINT, refusals that name the problem."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Spawn
from tests.rig import Mosquitto, wait_for

SimulatorProcess = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def simulator(tmp_path: Path, broker: Mosquitto, spawn: Spawn) -> SimulatorProcess:
    """Start ``python -m simulator ARGS`` against this test's broker; stdout/stderr to files; killed after."""

    def start(*args: str) -> subprocess.Popen[bytes]:
        return spawn("simulator", *args, env={"MQTT_URL": broker.url}, stdout=tmp_path / "out.txt",
                     stderr=tmp_path / "err.txt")

    return start


def table_rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.startswith(("PL-", "total"))]


def test_simulator_runs_a_scenario_file_and_prints_the_table(tmp_path: Path, simulator: SimulatorProcess) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("malformed: {rate: 0.05}\nfaults:\n"
                        "  - {kind: heating_failure, station: PL-KT-005, at: 0s, for: 1h}\n"
                        "  - {kind: sensor_dropout, station: PL-KT-003, sensor: outdoor, at: 0s, for: 10m}\n")
    proc = simulator("--stations", "5", "--shard", "0/2", "--start", "now-2h", "--duration", "20m", "--speed", "max",
                     "--seed", "3",
                     "--scenario", str(scenario), "--reboot", "PL-KT-001@5m+1m", "--progress-interval", "0")
    assert proc.wait(60) == 0, (tmp_path / "err.txt").read_text()[-2000:]
    rows = table_rows((tmp_path / "out.txt").read_text())
    assert [r[0] for r in rows] == ["PL-KT-001", "PL-KT-003", "PL-KT-005", "total"]
    header = ["station", "produced", "acked", "buffered", "dropped", "drv_err", "reboots",
              "json", "schema", "kind", "stn", "large", "ts", "topic"]
    table = {r[0]: dict(zip(header[1:], (int(v.replace(",", "")) for v in r[1:]), strict=True)) for r in rows}
    assert table["total"]["produced"] == table["total"]["acked"] > 400
    assert table["PL-KT-001"]["reboots"] == 1
    assert table["PL-KT-003"]["drv_err"] == 10, "the outdoor sensor read every minute for 10 minutes"
    assert sum(table["total"][k] for k in header[7:]) > 0


def test_simulator_stops_on_sigint_with_the_table(tmp_path: Path, simulator: SimulatorProcess) -> None:
    proc = simulator("--stations", "2", "--start", "now-1h", "--speed", "100", "--progress-interval", "0.2")
    wait_for(lambda: "stations 2/2 up, 2 connected" in (tmp_path / "err.txt").read_text(), timeout=60,
             what="a progress line with both stations connected")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    rows = table_rows((tmp_path / "out.txt").read_text())
    assert [r[0] for r in rows] == ["PL-KT-001", "PL-KT-002", "total"]


@pytest.mark.parametrize(("args", "message"), [
    (("--stations", "46"), "make-registry --stations N"),
    (("--network-loss", "PL-XX-001@1m+1m"), "not among the simulated stations"),
    (("--flatline", "PL-KT-001/attic@1m+1m"), "no sensor 'attic'"),
    (("--start", "2020-01-01T00:00:00+08:00"), "more than 30 days ago"),
    (("--start", "yesterday"), "expected now, now-2h or RFC 3339"),
    (("--buffer-max", "0"), "--replay-rate/--buffer-max: agent_buffer_max: Input should be greater than or equal to 1"),
    (("--replay-rate", "-1"), "--replay-rate/--buffer-max: agent_replay_rate: Input should be greater than 0"),
])
def test_simulator_refuses_bad_arguments_naming_them(tmp_path: Path, simulator: SimulatorProcess,
                                                     args: tuple[str, ...], message: str) -> None:
    proc = simulator(*args)
    assert proc.wait(30) != 0
    assert message in (tmp_path / "err.txt").read_text()


def test_simulator_backfills_the_recent_past_quickly(tmp_path: Path, simulator: SimulatorProcess) -> None:
    proc = simulator("--stations", "2", "--backfill", "1h", "--duration", "1h", "--progress-interval", "0")
    assert proc.wait(60) == 0, (tmp_path / "err.txt").read_text()[-2000:]
    out = (tmp_path / "out.txt").read_text()
    total = next(r for r in table_rows(out) if r[0] == "total")
    assert int(total[1].replace(",", "")) > 700, "an hour of two stations: about 800 readings"
    assert " in " in out.splitlines()[0]
    assert float(out.splitlines()[0].split(" in ")[1].split(" s ")[0]) < 30, "a backfill runs at full speed"
