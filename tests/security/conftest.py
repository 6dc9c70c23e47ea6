"""Fixtures for the security tests: provisioned broker credentials and a broker that enforces them."""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.provision import Provisioned, load_secrets, provision
from telemetry import registry
from tests.conftest import IngestFactory
from tests.mqtt import client, wait_all
from tests.rig import GatewayProcess, Influxd, IngestProcess, Mosquitto, wait_for


@dataclass(frozen=True)
class Credentials:
    """What ``python -m gateway provision`` wrote, and the passwords in it."""

    files: Provisioned
    passwords: dict[str, str]

    def broker_config(self) -> str:
        """The lines that turn authentication and the ACL on (as docker-compose's broker has them)."""
        return f"password_file {self.files.passwd}\nacl_file {self.files.acl}\nallow_anonymous false\n"

    def url(self, broker: Mosquitto, user: str, *, port: int | None = None, scheme: str = "mqtt") -> str:
        return f"{scheme}://{user}:{self.passwords[user]}@127.0.0.1:{port or broker.port}"


def provisioned(directory: Path) -> Credentials:
    files = provision(registry.load(), directory)
    return Credentials(files, load_secrets(files.secrets))


@pytest.fixture
def credentials(tmp_path: Path) -> Credentials:
    return provisioned(tmp_path / "auth")


@pytest.fixture
def auth_broker(tmp_path: Path, credentials: Credentials) -> Iterator[Mosquitto]:
    """Mosquitto with the provisioned password file and ACL, anonymous access off."""
    server = Mosquitto(tmp_path / "mosquitto-auth", extra=credentials.broker_config()).start()
    yield server
    server.stop()


IngestAs = Callable[..., IngestProcess]


@pytest.fixture
def broker(auth_broker: Mosquitto) -> Mosquitto:
    """In this suite the shared fixtures (``start_ingest``) get the broker with passwords and ACL."""
    return auth_broker


@pytest.fixture
def ingest_as_service(start_ingest: IngestFactory, auth_broker: Mosquitto, credentials: Credentials) -> IngestAs:
    """``python -m ingest`` connecting as the ``ingest`` user; killed after the test."""

    def start(*, influx: Influxd | None = None, **env: str) -> IngestProcess:
        return start_ingest(influx=influx, **{"MQTT_URL": credentials.url(auth_broker, "ingest"),
                                              "INGEST_BATCH_SECONDS": "0.1", **env})

    return start


GatewayAs = Callable[..., GatewayProcess]


@pytest.fixture
def gateway_as_service(tmp_path: Path, auth_broker: Mosquitto, credentials: Credentials, influxd: Influxd,
                       db: str) -> Iterator[GatewayAs]:
    """``python -m gateway`` connecting as the ``gateway`` user, checking station passwords; stopped after."""
    started: list[GatewayProcess] = []

    def start(*, influx: Influxd | None = None, **env: str) -> GatewayProcess:
        proc = GatewayProcess(tmp_path / f"gateway{len(started)}", MQTT_URL=credentials.url(auth_broker, "gateway"),
                              INFLUX_URL=(influx or influxd).url, INFLUX_DB=db,
                              STATION_PASSWORD_FILE=str(credentials.files.passwd), **env)
        started.append(proc)
        return proc.start()  # type: ignore[return-value]

    yield start
    for proc in started:
        proc.stop()


class Session:
    """One authenticated paho client (own network thread) that records what it is told and receives."""

    def __init__(self, port: int, user: str | None, password: str | None, *, tls: ssl.SSLContext | None = None,
                 will: str | None = None, client_id: str | None = None) -> None:
        self.client = client(port, client_id=client_id or f"sec-{uuid.uuid4().hex[:8]}", username=user,
                             password=password)
        self.client.max_inflight_messages_set(1000)
        if tls is not None:
            self.client.tls_set_context(tls)
        if will is not None:
            self.client.will_set(will, b'{"state":"offline"}', qos=1, retain=True)
        self.connack: ReasonCode | None = None
        self.disconnects = 0
        self.granted: list[int] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self._answered = threading.Event()
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, m: self.messages.append(m)
        self.client.reconnect_delay_set(60, 120)  # a refused or dropped session stays down: tests look at it
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._answered.wait(10)

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: mqtt.ConnectFlags, reason: ReasonCode,
                    _p: Properties | None) -> None:
        self.connack = reason
        self._answered.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: mqtt.DisconnectFlags, _r: ReasonCode,
                       _p: Properties | None) -> None:
        self.disconnects += 1
        self._answered.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode],
                      _p: Properties | None) -> None:
        self.granted.extend(int(c.value) for c in codes)
        self._subscribed.set()

    def subscribe(self, topic_filter: str) -> int:
        """Subscribe at QoS 1; the broker's answer (1 granted, 128 refused)."""
        self._subscribed.clear()
        self.client.subscribe(topic_filter, qos=1)
        if not self._subscribed.wait(10):
            raise AssertionError(f"no SUBACK for {topic_filter}")
        return self.granted[-1]

    def publish(self, messages: Iterable[tuple[str, Any]], *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for every PUBACK."""
        infos = []
        for topic, payload in messages:
            body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
            info = self.client.publish(topic, body, qos=1, retain=retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise AssertionError(f"publish to {topic} failed locally: {info.rc}")
            infos.append(info)
        wait_all(infos, 10)

    def wait_disconnected(self) -> None:
        wait_for(lambda: self.disconnects > 0, timeout=10, what="the broker closing the connection")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


SessionFactory = Callable[..., Session]


@pytest.fixture
def session(auth_broker: Mosquitto, credentials: Credentials) -> Iterator[SessionFactory]:
    """``session("PL-KT-001")``: a client logged in with that user's provisioned password; closed after."""
    made: list[Session] = []

    def make(user: str | None, password: str | None = None, **kwargs: Any) -> Session:
        secret = password if password is not None else credentials.passwords.get(user or "")
        made.append(Session(kwargs.pop("port", auth_broker.port), user, secret, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.close()
