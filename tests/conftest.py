"""Fixtures: real ``mosquitto`` and ``influxd`` processes on free ports, and ingest as a process."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, running_cluster
from tests.rig import ROOT, Influxd, IngestProcess, Mosquitto, child_env, stop_process


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """One InfluxDB for the session; tests keep apart by database (see ``db``)."""
    server = Influxd(tmp_path_factory.mktemp("influxd")).start()
    yield server
    server.stop()


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[Influxd]:
    """An InfluxDB of this test alone, for tests that stop and restart it."""
    server = Influxd(tmp_path / "influxd").start()
    yield server
    server.stop()


@pytest.fixture
def db() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "mosquitto").start()
    yield server
    server.stop()


IngestFactory = Callable[..., IngestProcess]


@pytest.fixture
def start_ingest(tmp_path: Path, broker: Mosquitto, influxd: Influxd, db: str) -> Iterator[IngestFactory]:
    """Start ``python -m ingest`` against this test's broker and database; stopped after the test."""
    started: list[IngestProcess] = []

    def start(*, influx: Influxd | None = None, wait_ready: bool = True, **env: str) -> IngestProcess:
        settings = {"MQTT_URL": broker.url, "INFLUX_URL": (influx or influxd).url, "INFLUX_DB": db,
                    "MQTT_CLIENT_ID": f"ingest-{uuid.uuid4().hex[:8]}", **env}
        proc = IngestProcess(tmp_path / f"ingest{len(started)}", **settings)
        started.append(proc)
        proc.start(wait_ready=wait_ready)
        return proc

    yield start
    for proc in started:
        proc.kill()


Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """``spawn(module, *args, env=..., stdout=path, stderr=path)``: ``python -m module`` with a clean
    environment plus ``env`` (:func:`tests.rig.child_env`), output appended to files; killed after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(module: str, *args: str, env: dict[str, str], stdout: Path, stderr: Path | None = None) -> \
            subprocess.Popen[bytes]:
        with stdout.open("ab") as out, (stderr or stdout).open("ab") as err:
            proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=child_env(env),
                                    stdout=out, stderr=err)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_process(proc, signal.SIGKILL)


@pytest.fixture(scope="module")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three RabbitMQ nodes joined into one cluster for the module (tests/cluster.py); anonymous MQTT
    clients get in as guest. Tests keep apart with ``new_vhost()``; one that kills a node starts it again."""
    with running_cluster(tmp_path_factory.mktemp("rabbit")) as cluster:
        yield cluster
