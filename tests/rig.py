"""Real servers for tests and benchmarks: ``mosquitto`` and ``influxd`` on free loopback ports.

Each server runs in its own temporary directory and is stopped by whoever started it. The broker
runs the delivery limits of the shipped ``deploy/mosquitto/mosquitto.conf`` (no silent drops for
a slow subscriber), with the listener, persistence and auth of the test.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from telemetry.storage import MONITOR_MEASUREMENTS, Tier, qualified

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
_OWN_KEYS = ("listener", "persistence_location", "log_dest", "pid_file", "password_file", "acl_file",
             "allow_anonymous", "user", "cafile", "certfile", "keyfile", "require_certificate")

T = TypeVar("T")


@functools.cache
def setting_names() -> frozenset[str]:
    """Every environment variable a service of this project reads, from their Settings classes."""
    from dashboards.config import Settings as DashboardsSettings  # noqa: PLC0415 - only for child processes
    from firmware_stubs.config import Settings as AgentSettings  # noqa: PLC0415
    from gateway.config import Settings as GatewaySettings  # noqa: PLC0415
    from ingest.config import Settings as IngestSettings  # noqa: PLC0415
    from simulator.config import Settings as SimulatorSettings  # noqa: PLC0415

    classes = (DashboardsSettings, AgentSettings, GatewaySettings, IngestSettings, SimulatorSettings)
    return frozenset(name.upper() for cls in classes for name in cls.model_fields)


def child_env(overrides: Mapping[str, str] | None = None, *, keep: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment for a child process: ours without the project's settings (but those starting
    with ``keep``), so that a variable exported in the shell cannot redirect a test, plus ``overrides``."""
    names = setting_names()
    return {k: v for k, v in os.environ.items() if k.upper() not in names or k.startswith(keep)} | dict(
        overrides or {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Poll(Generic[T]):
    """One condition polled until a deadline; the last value or error goes into the failure."""

    def __init__(self, check: Callable[[], T], timeout: float, what: str) -> None:
        self.check, self.timeout, self.what = check, timeout, what
        self.deadline = time.monotonic() + timeout
        self.last: object = None

    def attempt(self) -> bool:
        try:
            self.last = self.check()
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last failure
            self.last = exc
        else:
            if self.last:
                return True
        if time.monotonic() > self.deadline:
            raise AssertionError(f"timed out after {self.timeout} s waiting for {self.what}; last seen: {self.last!r}")
        return False


def wait_for(check: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05,
             what: str = "condition") -> T:
    """Poll ``check`` until it returns a truthy value; fail naming what was expected and last seen."""
    poll = _Poll(check, timeout, what)
    while not poll.attempt():
        time.sleep(interval)
    return poll.last  # type: ignore[return-value]


async def until(check: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05,
                what: str = "condition") -> T:
    """``wait_for`` for async tests: polls without blocking the event loop (agents, simulations)."""
    poll = _Poll(check, timeout, what)
    while not poll.attempt():
        await asyncio.sleep(interval)
    return poll.last  # type: ignore[return-value]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Ask ``proc`` to stop with ``sig``; kill it if it has not within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


MOSQUITTO_DEFAULT_LOG = ("error", "warning", "notice", "information")
"""What Mosquitto logs when its config names no ``log_type`` (the shipped config): benchmarks use it."""


class Mosquitto:
    """A ``mosquitto`` process with its own config, port and persistence directory.

    Tests log every packet (``log_types`` "all", which they read); benchmarks log what production does.
    """

    def __init__(self, directory: Path, *, extra: str = "", persistence: bool = True,
                 log_types: tuple[str, ...] = ("all",)) -> None:
        self.dir = directory
        self.log_types = log_types
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.extra = extra
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config(self) -> str:
        shipped = [ln for ln in SHIPPED_MOSQUITTO_CONF.read_text().splitlines()
                   if ln.strip() and not ln.lstrip().startswith("#") and ln.split()[0] not in _OWN_KEYS
                   and ln.split()[0] != "persistence"]
        own = [f"listener {self.port} 127.0.0.1", f"persistence {'true' if self.persistence else 'false'}",
               f"persistence_location {self.dir}/", f"log_dest file {self.dir}/mosquitto.log",
               *(f"log_type {t}" for t in self.log_types)]
        if os.geteuid() == 0:
            own.append("user root")
        if "allow_anonymous" not in self.extra:
            own.append("allow_anonymous true")
        return "\n".join([*shipped, *own, self.extra]) + "\n"

    def start(self) -> Mosquitto:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(self._listening, timeout=10, what=f"mosquitto on port {self.port}")
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = self.dir / "mosquitto.log"
            raise AssertionError(f"mosquitto exited: {log.read_text()[-2000:] if log.exists() else 'no log'}")
        return port_open(self.port)

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Influxd:
    """An ``influxd`` 1.x process with its own data directory and ports.

    Args:
        https: (certificate, key) to serve HTTPS only; ``ca`` then verifies it for our own requests.
        data_options: more lines of the ``[data]`` section (benchmarks: compaction timing).
    """

    def __init__(self, directory: Path, *, https: tuple[Path, Path] | None = None, ca: Path | None = None,
                 data_options: str = "") -> None:
        self.dir = directory
        self.data_options = data_options
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.rpc_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.https = https
        self.context = ssl.create_default_context(cafile=str(ca)) if ca else None

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    def _open(self, request: str | urllib.request.Request, timeout: float) -> Any:
        return urllib.request.urlopen(request, timeout=timeout, context=self.context)  # noqa: S310 - loopback

    def start(self) -> Influxd:
        conf = self.dir / "influxdb.conf"
        conf.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{self.dir}/meta"
[data]
  dir = "{self.dir}/data"
  wal-dir = "{self.dir}/wal"
  query-log-enabled = false
{self.data_options}
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
{self._https_config()}
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
""")
        log = (self.dir / "influxd.log").open("ab")
        self.proc = subprocess.Popen(["influxd", "-config", str(conf)], stdout=log, stderr=log)
        log.close()
        wait_for(self._ping, timeout=30, what=f"influxd on {self.url}")
        return self

    def _https_config(self) -> str:
        if self.https is None:
            return ""
        cert, key = self.https
        return f'  https-enabled = true\n  https-certificate = "{cert}"\n  https-private-key = "{key}"'

    def _ping(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"influxd exited: {(self.dir / 'influxd.log').read_text()[-2000:]}")
        try:
            with self._open(f"{self.url}/ping", 1) as r:
                return bool(r.status == 204)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc:
            stop_process(self.proc, sig)
            self.proc = None

    def query(self, q: str, db: str | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL; return the series of the first statement (empty when none)."""
        params = {"q": q, "epoch": "ms"}
        if db:
            params["db"] = db
        url = f"{self.url}/query?{urllib.parse.urlencode(params)}"
        with self._open(url, 30) as r:
            body = json.loads(r.read())
        result = body["results"][0]
        if "error" in result:
            raise AssertionError(f"InfluxQL error for {q!r}: {result['error']}")
        return list(result.get("series", []))

    def write(self, db: str, body: str) -> None:
        """Write line protocol (ms precision) straight to InfluxDB, creating the database."""
        self.query(f'CREATE DATABASE "{db}"')
        url = f"{self.url}/write?db={urllib.parse.quote(db)}&precision=ms"
        request = urllib.request.Request(url, data=body.encode(), method="POST")  # noqa: S310 - loopback
        with self._open(request, 10) as r:
            if r.status != 204:
                raise AssertionError(f"write answered {r.status}")

    def rows(self, q: str, db: str) -> list[dict[str, Any]]:
        """The rows of all series of a query, as dicts (tags of a GROUP BY included)."""
        out: list[dict[str, Any]] = []
        for series in self.query(q, db):
            tags = series.get("tags", {})
            out.extend({**tags, **dict(zip(series["columns"], values, strict=True))} for values in series["values"])
        return out

    def count(self, measurement: str, field: str, db: str, where: str = "") -> int:
        """``count(field)``; ingest's own measurements are read from their ``monitor`` tier."""
        source = qualified(Tier.MONITOR, measurement) if measurement in MONITOR_MEASUREMENTS else f'"{measurement}"'
        series = self.query(f'SELECT count("{field}") FROM {source} {where}', db)
        return int(series[0]["values"][0][1]) if series else 0


def rebuild_rollups(influxd: Influxd, db: str, *, since_ms: int, spool: Path) -> None:
    """Ingest's own rebuild (``python -m ingest rollup --since``) of the rollups of every closed hour
    since ``since_ms`` in ``db`` (its checkpoint in ``spool``)."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since_ms // 1000))
    env = child_env({"INFLUX_URL": influxd.url, "INFLUX_DB": db, "INGEST_SPOOL_DIR": str(spool)})
    done = subprocess.run([sys.executable, "-m", "ingest", "rollup", "--since", since], cwd=ROOT, env=env,
                          capture_output=True, timeout=600, check=False)
    if done.returncode:
        raise AssertionError(f"ingest rollup exited {done.returncode}: {done.stderr.decode()[-2000:]}")


@contextmanager
def mosquittos(directory: Path, n: int) -> Iterator[list[Mosquitto]]:
    """``n`` independent mosquittos (brokers to fail over through), stopped at the end."""
    started: list[Mosquitto] = []
    try:
        for i in range(n):
            started.append(Mosquitto(directory / f"mosquitto{i}").start())  # noqa: PERF401 - one at a time: a failed start stops those started
        yield started
    finally:
        for b in started:
            b.stop()


@contextmanager
def running(server: Mosquitto | Influxd) -> Iterator[Mosquitto | Influxd]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus exposition to ``{"name{labels}": value}``."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class ServiceProcess:
    """``python -m <module>`` as a child process, configured through its environment."""

    module = ""

    def __init__(self, directory: Path, **env: str) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.env = {"LOG_LEVEL": "INFO", **self.own_env(), **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / f"{self.module}.log"

    def own_env(self) -> dict[str, str]:
        return {}

    def ready(self) -> bool:
        return True

    def start(self, *, wait_ready: bool = True) -> ServiceProcess:
        env = child_env(self.env)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", self.module], cwd=ROOT, env=env, stdout=log,
                                         stderr=log)
        if wait_ready:
            wait_for(self.ready, timeout=30, what=f"{self.module} ready")
        return self

    def restart(self, *, wait_ready: bool = True) -> ServiceProcess:
        """Start again with the same settings."""
        return self.start(wait_ready=wait_ready)

    def _get(self, path: str) -> bytes:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.module} exited ({self.proc.returncode}): {self.log.read_text()[-3000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return bytes(r.read())

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self._get("/metrics").decode())

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        stop_process(self.proc, sig, timeout)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class IngestProcess(ServiceProcess):
    """``python -m ingest``; ready once connected to the broker."""

    module = "ingest"

    def own_env(self) -> dict[str, str]:
        return {"INGEST_HTTP_ADDR": f"127.0.0.1:{self.http_port}", "INGEST_SPOOL_DIR": str(self.dir / "spool")}

    def ready(self) -> bool:
        return bool(self.health().get("mqtt_connected"))

    def health(self) -> dict[str, Any]:
        return dict(json.loads(self._get("/healthz")))


class GatewayProcess(ServiceProcess):
    """``python -m gateway``; ready once connected to the broker and InfluxDB."""

    module = "gateway"

    def own_env(self) -> dict[str, str]:
        return {"GATEWAY_ADDR": f"127.0.0.1:{self.http_port}", "GATEWAY_TOKENS_FILE": str(self.dir / "tokens.yaml")}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def ready(self) -> bool:
        try:
            self._get("/readyz")
        except urllib.error.HTTPError:
            return False
        return True
