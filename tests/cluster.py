"""A real three-node RabbitMQ cluster for tests: Debian's ``rabbitmq-server`` with its MQTT plugin.

Every node runs on free loopback ports (AMQP, MQTT, Erlang distribution) with its own data and log
folders under the test's directory, a random node name and a cookie shared by the three (a HOME
holding ``.erlang.cookie``). The machine's own node (``rabbit@localhost``, port 5672) is never
touched: ``RABBITMQ_CONF_ENV_FILE`` points at an empty file so that ``/etc/rabbitmq/rabbitmq-env.conf``
cannot rename a node. Node 0 boots first, then the other two at once; they join through
``classic_config`` peer discovery. They are stopped by the pid of their ``beam.smp``
(``RABBITMQ_PID_FILE``), never by name.

Pitfalls and figures: ``../shared/cluster/README.md`` and docs/scaling.md.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import quote

from tests.rig import free_port, port_open, wait_for

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
"""The server script itself: ``/usr/sbin/rabbitmq-server`` switches to the rabbitmq user and directory."""
RABBITMQCTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
BOOT_TIMEOUT = 120.0
"""Three nodes booting at once on two shared cores take 10-20 s; a loaded machine several times that."""
SIZE = 3
GUEST = "guest"
"""The default user of a fresh node (``loopback_users = none`` lets it in over loopback)."""


class RabbitMQMissingError(RuntimeError):
    """``rabbitmq-server`` is not installed: ``scripts/setup.sh`` installs it (CI runs it)."""


def require_rabbitmq() -> None:
    """Fail, never skip, when the server is missing: a skipped cluster test would hide the gap."""
    if not RABBITMQ_SERVER.exists() or not RABBITMQCTL.exists():
        raise RabbitMQMissingError(
            f"{RABBITMQ_SERVER} is missing: install Debian's rabbitmq-server (bash scripts/setup.sh does)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); it has stopped running all the same
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@dataclass
class Node:
    """One node of the cluster: its name, ports and folders."""

    index: int
    name: str
    amqp_port: int
    mqtt_port: int
    dist_port: int
    dir: Path
    amqps_port: int = 0
    """TLS listeners, in a cluster made with ``tls`` (0 otherwise)."""
    mqtts_port: int = 0
    plain: bool = True
    """Whether the plain AMQP and MQTT listeners are on (``amqp_port``, ``mqtt_port``)."""
    config: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    pid_file: Path = field(init=False)
    config_file: Path = field(init=False)
    log_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.pid_file, self.config_file, self.log_dir = (self.dir / "beam.pid", self.dir / "rabbitmq.conf",
                                                         self.dir / "log")

    def amqp_url(self, user: str = GUEST, password: str = GUEST, vhost: str = "/") -> str:
        secret = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"amqp://{secret}@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"

    def mqtt_url(self, user: str | None = None, password: str | None = None) -> str:
        if user is None:
            return f"mqtt://127.0.0.1:{self.mqtt_port}"
        secret = "" if password is None else f":{quote(password, safe='')}"
        return f"mqtt://{quote(user, safe='')}{secret}@127.0.0.1:{self.mqtt_port}"

    def listening_ports(self) -> list[int]:
        plain = [self.amqp_port, self.mqtt_port] if self.plain else []
        return plain + [p for p in (self.amqps_port, self.mqtts_port) if p]

    def beam_pid(self) -> int | None:
        """The pid of the node's ``beam.smp``, once it wrote its pid file."""
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the node's log and of the server script's output: what a failure shows."""
        paths = [p for p in (*sorted(self.log_dir.glob("*.log")), self.dir / "server.out") if p.exists()]
        return "\n".join(f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                         for p in paths)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the nodes' TLS listeners: the CA, the server certificate and its key."""

    ca: Path
    cert: Path
    key: Path


def _listeners(node: Node, tls: TlsFiles | None) -> list[str]:
    lines = [f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}", f"mqtt.listeners.tcp.1 = 127.0.0.1:{node.mqtt_port}"] \
        if node.plain else ["listeners.tcp = none", "mqtt.listeners.tcp = none"]
    if tls is not None:
        lines += [f"listeners.ssl.1 = 127.0.0.1:{node.amqps_port}", f"mqtt.listeners.ssl.1 = 127.0.0.1:{node.mqtts_port}",
                  f"ssl_options.cacertfile = {tls.ca}", f"ssl_options.certfile = {tls.cert}",
                  f"ssl_options.keyfile = {tls.key}"]
    return lines


def default_settings(*, anonymous: bool) -> str:
    """What a node does beyond its listeners and peers, unless the cluster is given ``settings``."""
    lines = [f"mqtt.allow_anonymous = {'true' if anonymous else 'false'}", "mqtt.vhost = /", "mqtt.exchange = amq.topic",
             "ssl_options.verify = verify_none", "ssl_options.fail_if_no_peer_cert = false"]
    if anonymous:
        lines += ["mqtt.default_user = guest", "mqtt.default_pass = guest"]
    return "\n".join(lines) + "\n"


def _node_config(node: Node, peers: Sequence[str], *, tls: TlsFiles | None, settings: str) -> str:
    lines = [
        *_listeners(node, tls),
        "loopback_users = none",
        "cluster_formation.peer_discovery_backend = classic_config",
        *(f"cluster_formation.classic_config.nodes.{i + 1} = {peer}" for i, peer in enumerate(peers)),
        # tests start, kill and restart nodes often: keep the disk alarm out of the way on small disks
        "disk_free_limit.absolute = 50MB",
        "log.file.level = info",
        "log.console = false",
    ]
    return "\n".join(lines) + "\n" + settings


class Cluster:
    """Three RabbitMQ nodes on loopback, joined into one cluster; a context manager that stops them.

    Args:
        directory: where the nodes keep their data, logs, configs and the shared cookie.
        anonymous: whether MQTT clients without a user name get in (as guest); with the vhost ``/``
            and TLS without client certificates, this makes :func:`default_settings`.
        settings: ``rabbitmq.conf`` lines instead of :func:`default_settings` (a shipped config
            without its listeners, paths and peers); ``anonymous`` then does nothing.
        tls: turns the TLS listeners on (``amqps_port``, ``mqtts_port`` of each node).
        plain: ``False`` turns the plain AMQP and MQTT listeners off (their ports stay closed).
        extra: more lines for every node, after the settings.
        node_extra: more lines per node, called with the node (ports of extra listeners).
    """

    def __init__(self, directory: Path, *, anonymous: bool = True, settings: str | None = None,
                 tls: TlsFiles | None = None, plain: bool = True, extra: str = "",
                 node_extra: Callable[[Node], str] | None = None, plugins: Sequence[str] = ("rabbitmq_mqtt",)) -> None:
        require_rabbitmq()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        tag = f"yz{secrets.token_hex(4)}"
        self.nodes = [Node(i, f"{tag}-{i}@localhost", free_port(), free_port(), free_port(), self.dir / f"n{i}",
                           amqps_port=free_port() if tls else 0, mqtts_port=free_port() if tls else 0, plain=plain)
                      for i in range(SIZE)]
        self.home = self.dir / "home"
        self.home.mkdir(exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self.empty_env_file = self.dir / "rabbitmq-env.conf"
        self.empty_env_file.write_text("")
        self.plugins_file = self.dir / "enabled_plugins"
        self.plugins_file.write_text(f"[{','.join(plugins)}].\n")
        self.mqtt = "rabbitmq_mqtt" in plugins
        peers = [n.name for n in self.nodes]
        own = default_settings(anonymous=anonymous) if settings is None else settings
        for node in self.nodes:
            node.dir.mkdir(exist_ok=True)
            more = node_extra(node) if node_extra is not None else ""
            node.config = _node_config(node, peers, tls=tls, settings=own + extra + more)
            node.config_file.write_text(node.config)

    # -- environment -------------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(HOME=str(self.home), RABBITMQ_CONF_ENV_FILE=str(self.empty_env_file),
                   ERL_EPMD_ADDRESS="127.0.0.1", LC_ALL=env.get("LC_ALL", "C.UTF-8"))
        return env

    def _server_env(self, node: Node) -> dict[str, str]:
        return self._base_env() | {
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(node.config_file),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.plugins_file),
            "RABBITMQ_MNESIA_BASE": str(node.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.log_dir),
            "RABBITMQ_PID_FILE": str(node.pid_file),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(node.dir / "plugins-expand"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.dir / "advanced.config"),
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            # three nodes share two cores with the tests: schedulers that spin when idle steal them
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+sbwt none +sbwtdcpu none +sbwtdio none",
        }

    def ctl_env(self) -> dict[str, str]:
        """The environment in which ``rabbitmqctl -n <node>`` reaches these nodes (their cookie)."""
        # the CLI's own distribution listener: an ephemeral port, not the shared 35672-35682 range
        return self._base_env() | {"RABBITMQ_CTL_DIST_PORT_MIN": "0", "RABBITMQ_CTL_DIST_PORT_MAX": "0",
                                   "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}"}

    # -- control -----------------------------------------------------------------------------------

    def ctl(self, *args: str, node: int = 0, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n <node> ...``: its standard output; a failure raises with its output."""
        cmd = [str(RABBITMQCTL), "-n", self.nodes[node].name, *args]
        done = subprocess.run(cmd, env=self.ctl_env(), capture_output=True, text=True, timeout=timeout,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[1:])} exited {done.returncode}: {done.stdout}{done.stderr}")
        return done.stdout

    def ctl_json(self, *args: str, node: int = 0) -> object:
        return json.loads(self.ctl(*args, "--formatter", "json", node=node))

    def running_nodes(self, seen_from: int = 0) -> set[str]:
        status = self.ctl_json("cluster_status", node=seen_from)
        assert isinstance(status, dict)
        return set(status.get("running_nodes", []))

    def _spawn(self, node: Node) -> None:
        node.pid_file.unlink(missing_ok=True)
        with (node.dir / "server.out").open("ab") as out:
            node.proc = subprocess.Popen([str(RABBITMQ_SERVER)], env=self._server_env(node), cwd=node.dir,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def _await_listening(self, node: Node, deadline: float) -> None:
        # cheap polls (a socket, a pid) while it boots: every rabbitmqctl costs a second of CPU; the
        # listeners open once the node and its plugins have started
        while not all(port_open(p) for p in node.listening_ports()):
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise AssertionError(f"node {node.name} exited {node.proc.returncode} while booting:\n"
                                     f"{node.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"node {node.name} did not boot within {BOOT_TIMEOUT} s:\n{node.log_tail()}")
            time.sleep(0.1)

    def _await_joined(self, observer: int, deadline: float) -> None:
        want = {n.name for n in self.nodes if self._is_up(n)}
        wait_for(lambda: want <= self.running_nodes(observer), timeout=max(deadline - time.monotonic(), 10.0),
                 interval=0.5, what=f"{sorted(want)} running in one cluster as {self.nodes[observer].name} sees it")

    def _boot(self, indices: Sequence[int], deadline: float) -> None:
        for i in indices:
            self._spawn(self.nodes[i])
        for i in indices:
            self._await_listening(self.nodes[i], deadline)

    @staticmethod
    def _is_up(node: Node) -> bool:
        return node.proc is not None and node.proc.poll() is None

    def _mqtt_tracking_ready(self, observer: int) -> bool:
        # every running node's member of the MQTT plugin's client-id tracker (a Raft cluster) answers
        # and counts all three: a node whose member never joined hangs in its next boot
        expression = (
            f"Ns = [node() | nodes()], length(Ns) =:= {SIZE} andalso lists:all(fun(N) -> "
            f"case catch ra:members({{mqtt_node, N}}, 5000) of {{ok, M, _}} -> length(M) =:= {SIZE}; _ -> false end "
            "end, Ns).")
        return self.eval(expression, node=observer).strip() == "true"

    def _await_mqtt_tracking(self, observer: int) -> None:
        # with a node down the tracker may have no leader to answer: check the whole cluster only
        if self.mqtt and all(self._is_up(n) for n in self.nodes):
            wait_for(lambda: self._mqtt_tracking_ready(observer), timeout=60, interval=0.5,
                     what="the MQTT client-id tracker with a member on each of the three nodes")

    def up(self) -> Self:
        """Boot node 0, then the other two at once, and wait until the three run as one cluster.

        Not all three at once: they form one cluster that way, but the MQTT plugin's client-id
        tracker can then leave a node's member out, and that node hangs when it boots again.
        """
        deadline = time.monotonic() + BOOT_TIMEOUT
        try:
            self._boot([0], deadline)
            self._boot([1, 2], time.monotonic() + BOOT_TIMEOUT)
            self._await_joined(0, deadline + BOOT_TIMEOUT)
            self._await_mqtt_tracking(0)
        except BaseException:
            self.down()
            raise
        return self

    def start(self, i: int) -> None:
        """Start node ``i`` again; returns once it runs and is back in the cluster."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        self._boot([i], deadline)
        self._await_joined(i, deadline)
        self._await_mqtt_tracking(i)

    def stop(self, i: int) -> None:
        """Stop node ``i`` gracefully (``rabbitmqctl stop`` waits for its beam to exit)."""
        node = self.nodes[i]
        self.ctl("stop", str(node.pid_file), node=i)
        self._reap(node)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``'s ``beam.smp`` (its pid from the pid file); returns once it is gone."""
        node = self.nodes[i]
        pid = node.beam_pid()
        if pid is None:
            raise AssertionError(f"node {node.name} has no pid file at {node.pid_file}")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _pid_alive(pid), timeout=15, what=f"beam.smp {pid} of {node.name} gone")
        self._reap(node)

    def _reap(self, node: Node) -> None:
        if node.proc is not None:
            try:
                node.proc.wait(15)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
            node.proc = None

    def down(self) -> None:
        """Stop every node by pid (SIGKILL its beam, then the server script); never by name."""
        for node in self.nodes:
            pid = node.beam_pid()
            if pid is not None and _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
            self._reap(node)
            pid = node.beam_pid()
            if pid is not None:
                wait_for(lambda p=pid: not _pid_alive(p), timeout=15, what=f"beam.smp {pid} gone")  # type: ignore[misc]

    def __enter__(self) -> Self:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- what tests ask ----------------------------------------------------------------------------

    def amqp_urls(self, user: str = GUEST, password: str = GUEST) -> str:
        return ",".join(n.amqp_url(user, password) for n in self.nodes)

    def mqtt_urls(self, user: str | None = None, password: str | None = None) -> str:
        return ",".join(n.mqtt_url(user, password) for n in self.nodes)

    def index_of(self, name: str) -> int:
        for node in self.nodes:
            if node.name == name:
                return node.index
        raise KeyError(name)

    def queue_leader(self, queue: str, vhost: str = "/") -> int:
        """The index of the node that leads the quorum queue ``queue`` now."""
        rows = self.ctl_json("list_queues", "-p", vhost, "name", "leader", node=self._any_running())
        assert isinstance(rows, list)
        for row in rows:
            if row["name"] == queue:
                return self.index_of(row["leader"])
        raise KeyError(f"no queue {queue!r} in vhost {vhost!r}: {rows}")

    def queue_members(self, queue: str, vhost: str = "/") -> set[int]:
        rows = self.ctl_json("list_queues", "-p", vhost, "name", "members", node=self._any_running())
        assert isinstance(rows, list)
        for row in rows:
            if row["name"] == queue:
                return {self.index_of(name) for name in row["members"]}
        raise KeyError(f"no queue {queue!r} in vhost {vhost!r}: {rows}")

    def _any_running(self) -> int:
        for node in self.nodes:
            if self._is_up(node):
                return node.index
        raise AssertionError("no node of the cluster is running")

    def new_vhost(self) -> str:
        """A fresh vhost, guest with full permissions on it: one per test keeps tests apart.

        An MQTT client reaches it with the user name ``"<vhost>:guest"``.
        """
        vhost = f"t{secrets.token_hex(5)}"
        # one CLI call instead of two (add_vhost, set_permissions): each costs seconds of CPU
        self.eval(f'ok = rabbit_vhost:add(<<"{vhost}">>, <<"tests">>), '
                  f'ok = rabbit_auth_backend_internal:set_permissions(<<"guest">>, <<"{vhost}">>, '
                  f'<<".*">>, <<".*">>, <<".*">>, <<"tests">>).', node=self._any_running())
        return vhost

    def eval(self, expression: str, node: int = 0) -> str:
        """``rabbitmqctl eval``: an Erlang expression on the node, for what the CLI says in several calls."""
        return self.ctl("eval", expression, node=node)


@contextmanager
def running_cluster(directory: Path, **kwargs: object) -> Iterator[Cluster]:
    """A cluster for the duration of the block, stopped by pid also when the block raises."""
    cluster = Cluster(directory, **kwargs)  # type: ignore[arg-type]
    try:
        yield cluster.up()
    finally:
        cluster.down()
        shutil.rmtree(directory / "home", ignore_errors=True)
