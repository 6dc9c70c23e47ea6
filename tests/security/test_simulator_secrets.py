"""``python -m simulator --secrets FILE``: each agent logs in as its station, as devices do on a broker with ACLs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.rig import ROOT, Mosquitto, child_env
from tests.security.conftest import Credentials


def simulate(tmp_path: Path, broker: Mosquitto, *args: str) -> subprocess.CompletedProcess[str]:
    env = child_env({"MQTT_URL": broker.url})  # no credentials: only --secrets can log the agents in
    return subprocess.run([sys.executable, "-m", "simulator", "--stations", "3", "--start", "now-30m", "--duration",
                           "30m", "--speed", "max", "--progress-interval", "0", "--drain-timeout", "2", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def totals(out: str) -> tuple[int, int]:
    """(produced, acknowledged) of the table's total row."""
    row = next(line.split() for line in out.splitlines() if line.startswith("total"))
    return int(row[1].replace(",", "")), int(row[2].replace(",", ""))


def test_simulator_agents_log_in_as_their_stations_with_secrets(tmp_path: Path, auth_broker: Mosquitto,
                                                                credentials: Credentials) -> None:
    done = simulate(tmp_path, auth_broker, "--secrets", str(credentials.files.secrets))
    assert done.returncode == 0, done.stderr[-2000:]
    produced, acked = totals(done.stdout)
    assert produced == acked > 100
    log = (auth_broker.dir / "mosquitto.log").read_text()
    for station in ("PL-KT-001", "PL-KT-002", "PL-KT-003"):
        assert f"as station-{station} (p2, c1, k60, u'{station}')" in log
    assert "Denied PUBLISH" not in log, "an agent published outside its own topics"


def test_simulator_without_secrets_is_refused_by_the_broker(tmp_path: Path, auth_broker: Mosquitto) -> None:
    done = simulate(tmp_path, auth_broker)
    assert done.returncode == 0, done.stderr[-2000:]
    produced, acked = totals(done.stdout)
    assert produced > 100
    assert acked == 0
    assert "not authorised" in (auth_broker.dir / "mosquitto.log").read_text()


@pytest.mark.parametrize(("change", "message"), [
    ("chmod", "lets others read the passwords; chmod 600 it first"),
    ("drop", "no password for 1 station(s) in the secrets file: PL-KT-002"),
])
def test_simulator_refuses_a_readable_or_incomplete_secrets_file(tmp_path: Path, auth_broker: Mosquitto,
                                                                 credentials: Credentials, change: str,
                                                                 message: str) -> None:
    secrets = credentials.files.secrets
    if change == "chmod":
        secrets.chmod(0o640)
    else:
        doc = yaml.safe_load(secrets.read_text())
        del doc["PL-KT-002"]
        secrets.write_text(yaml.safe_dump(doc))
    done = simulate(tmp_path, auth_broker, "--secrets", str(secrets))
    assert done.returncode != 0
    assert message in done.stderr
