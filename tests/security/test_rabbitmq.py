"""The RabbitMQ cluster as deployed: three real nodes booted from ``deploy/rabbitmq/rabbitmq.conf`` (TLS
listeners only, anonymous MQTT off) loading at boot the definitions ``gateway provision --broker rabbitmq``
wrote; every client logs in with its provisioned password over TLS.

What RabbitMQ 3.10's MQTT plugin does with a refused operation, pinned here: a PUBLISH on a topic the
user may not write is never acknowledged and the connection is closed (nothing reaches the queue); a
SUBSCRIBE to a filter it may not read gets no SUBACK and the connection is closed; a bad or missing
password gets CONNACK "bad user name or password".
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiormq
import pytest

from gateway.provision import load_secrets
from gateway.rabbitmq import DEFAULT_QUEUE, DEFAULT_VHOST, provision_rabbitmq
from telemetry import registry
from tests.cluster import RABBITMQCTL, Cluster, Node, TlsFiles, running_cluster
from tests.rig import ROOT, child_env, wait_for
from tests.security.certs import Authority, authority
from tests.security.conftest import Session
from tests.security.test_provision import registry_with

SHIPPED = ROOT / "deploy" / "rabbitmq"
_OWN_KEYS = ("listeners.", "mqtt.listeners.", "ssl_options.cacertfile", "ssl_options.certfile",
             "ssl_options.keyfile", "cluster_formation.", "definitions.local.path", "log.")
"""What the test cluster sets itself: its ports, certificate paths, peers, definitions path and logs."""
REG = registry.load()
A, B = REG.reporting[0].id, REG.reporting[1].id


def shipped_settings(definitions: Path) -> str:
    """deploy/rabbitmq/rabbitmq.conf without the keys the test cluster owns, plus its definitions path."""
    lines = [ln for ln in (SHIPPED / "rabbitmq.conf").read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.lstrip().startswith("#") and not ln.split("=")[0].strip().startswith(_OWN_KEYS)]
    return "\n".join([*lines, f"definitions.local.path = {definitions}"]) + "\n"


def shipped_plugins() -> list[str]:
    text = (SHIPPED / "enabled_plugins").read_text(encoding="utf-8")
    return [p.strip() for p in text.strip().removeprefix("[").removesuffix("].").split(",")]


@dataclass
class Secure:
    cluster: Cluster
    passwords: dict[str, str]
    ca: Authority
    auth: Path
    context: ssl.SSLContext

    def session(self, user: str | None, password: str | None = None, *, node: int = 0,
                client_id: str | None = None) -> Session:
        secret = password if password is not None else self.passwords.get(user or "")
        cid = client_id or (f"station-{user}" if user and user.startswith("PL-") else f"sec-{uuid.uuid4().hex[:8]}")
        return Session(self.cluster.nodes[node].mqtts_port, user, secret, tls=self.context, client_id=cid)

    def amqps_url(self, node: Node, user: str, password: str | None = None) -> str:
        secret = self.passwords[user] if password is None else password
        return f"amqps://{user}:{secret}@127.0.0.1:{node.amqps_port}/{DEFAULT_VHOST}"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    base = tmp_path_factory.mktemp("rabbit-secure")
    done = provision_rabbitmq(REG, base / "auth", secrets_file=base / "auth" / "secrets.yaml")
    ca = authority(base / "pki")
    server = ca.issue("rabbitmq", server=True)
    with running_cluster(base / "cluster", settings=shipped_settings(done.definitions), plugins=shipped_plugins(),
                         tls=TlsFiles(ca.cert, server.cert, server.key), plain=False) as cluster:
        yield Secure(cluster, load_secrets(done.secrets), ca, base / "auth", ssl.create_default_context(cafile=ca.cert))


@pytest.fixture
def sessions(secure: Secure) -> Iterator[list[Session]]:
    """The sessions a test opens, closed after it."""
    made: list[Session] = []
    yield made
    for s in made:
        s.close()


async def _consume_until(secure: Secure, marker: bytes, *, node: int = 1) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """What ingest's user consumes from the queue (declared and bound again, as ingest does), up to ``marker``."""
    connection = await aio_pika.connect(secure.amqps_url(secure.cluster.nodes[node], "ingest"),
                                        ssl_context=secure.context)
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(DEFAULT_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind("amq.topic", "stations.v1.#")
        async with asyncio.timeout(30), queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                got.append(message)
                if message.body == marker:
                    break
    return got


def _marker() -> bytes:
    return json.dumps({"marker": uuid.uuid4().hex}).encode()


async def test_rabbitmq_station_publishes_its_readings_into_the_queue_for_ingest(secure: Secure,
                                                                                 sessions: list[Session]) -> None:
    station = secure.session(A, node=0)
    sessions.append(station)
    assert station.accepted
    marker = _marker()
    station.publish([(f"stations/v1/{A}/occupancy", b'{"n": 1}'), (f"stations/v1/{A}/status", marker)])
    got = await _consume_until(secure, marker, node=2)
    assert [m.routing_key for m in got][-2:] == [f"stations.v1.{A}.occupancy", f"stations.v1.{A}.status"]


async def test_rabbitmq_station_cannot_publish_as_another_station(secure: Secure, sessions: list[Session]) -> None:
    intruder = secure.session(A)
    sessions.append(intruder)
    with pytest.raises(AssertionError, match="not acknowledged"):
        intruder.publish([(f"stations/v1/{B}/occupancy", b'{"forged": true}')])
    intruder.wait_disconnected()
    honest = secure.session(B, node=1)
    sessions.append(honest)
    marker = _marker()
    honest.publish([(f"stations/v1/{B}/occupancy", marker)])
    got = await _consume_until(secure, marker)
    assert b'{"forged": true}' not in [m.body for m in got], "a forged reading reached the queue"


def test_rabbitmq_station_reads_its_own_config_and_no_other(secure: Secure, sessions: list[Session]) -> None:
    gateway = secure.session("gateway", node=1)
    sessions.append(gateway)
    gateway.publish([(f"stations/v1/{A}/config", b'{"for": "A"}'), (f"stations/v1/{B}/config", b'{"for": "B"}')],
                    retain=True)
    station = secure.session(A, node=1)  # retained messages are kept per node in 3.10
    sessions.append(station)
    assert station.subscribe(f"stations/v1/{A}/config") == 1
    wait_for(lambda: station.messages, timeout=10, what="the station's own retained config")
    assert [m.payload for m in station.messages] == [b'{"for": "A"}']
    for other in (f"stations/v1/{B}/config", "stations/v1/+/config", "stations/v1/#", "#"):
        snoop = secure.session(A, node=1)
        sessions.append(snoop)
        with pytest.raises(AssertionError, match="no SUBACK"):
            snoop.subscribe(other)
        snoop.wait_disconnected()
        assert snoop.messages == [], other


def test_rabbitmq_station_cannot_subscribe_with_another_stations_client_id(secure: Secure,
                                                                          sessions: list[Session]) -> None:
    """Its subscription queue is named by the client id; another station's name is not its to declare."""
    station = secure.session(A, client_id=f"station-{B}")
    sessions.append(station)
    assert station.accepted
    with pytest.raises(AssertionError, match="no SUBACK"):
        station.subscribe(f"stations/v1/{A}/config")


def test_rabbitmq_anonymous_unknown_and_wrong_passwords_are_refused(secure: Secure, sessions: list[Session]) -> None:
    for user, password in ((None, None), ("nobody", "x"), (A, "wrong"), (A, secure.passwords[B]), ("guest", "guest"),
                           ("ingest", "")):
        refused = secure.session(user, password)
        sessions.append(refused)
        assert not refused.accepted, (user, password)
        assert str(refused.connack) == "Bad user name or password", (user, password)


async def test_rabbitmq_amqp_wrong_password_and_guest_are_refused(secure: Secure) -> None:
    node = secure.cluster.nodes[0]
    for user, password in (("ingest", "wrong"), ("guest", "guest")):
        with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
            await aio_pika.connect(f"amqps://{user}:{password}@127.0.0.1:{node.amqps_port}/{DEFAULT_VHOST}",
                                   ssl_context=secure.context)


async def test_rabbitmq_ingest_consumes_the_queue_and_cannot_publish_nor_declare(secure: Secure,
                                                                                 sessions: list[Session]) -> None:
    connection = await aio_pika.connect(secure.amqps_url(secure.cluster.nodes[0], "ingest"),
                                        ssl_context=secure.context)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("amq.topic", ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match=r"exchange 'amq\.topic'"):
            await exchange.publish(aio_pika.Message(b'{"forged": true}'), routing_key=f"stations.v1.{A}.occupancy")
        other = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="queue 'other'"):
            await other.declare_queue("other", durable=True)
        default = await connection.channel(publisher_confirms=True)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await default.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=DEFAULT_QUEUE)
    as_mqtt = secure.session("ingest")
    sessions.append(as_mqtt)
    with pytest.raises(AssertionError, match="not acknowledged"):
        as_mqtt.publish([(f"stations/v1/{A}/occupancy", b'{"forged": true}')])
    marker = _marker()
    sessions.append(secure.session(A))
    sessions[-1].publish([(f"stations/v1/{A}/occupancy", marker)])
    got = await _consume_until(secure, marker)
    assert b'{"forged": true}' not in [m.body for m in got]


def test_rabbitmq_gateway_reads_every_station_and_publishes_for_them(secure: Secure, sessions: list[Session]) -> None:
    gateway = secure.session("gateway", node=2)
    sessions.append(gateway)
    assert gateway.subscribe("stations/v1/#") == 1
    sessions.append(secure.session(A, node=0))
    sessions[-1].publish([(f"stations/v1/{A}/status", b'{"state": "online"}')])
    gateway.publish([(f"stations/v1/{B}/occupancy", b'{"via": "http"}')])
    wait_for(lambda: {m.topic for m in gateway.messages} >= {f"stations/v1/{A}/status", f"stations/v1/{B}/occupancy"},
             timeout=10, what="both messages at the gateway")
    with pytest.raises(AssertionError, match="not acknowledged"):
        gateway.publish([(f"stations/v1/{B}/status", b'{"state": "offline"}')])


def _tls_refused(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return "handshake completed"
        except ssl.SSLCertVerificationError as exc:
            return exc.verify_message


def test_rabbitmq_tls_only_plain_ports_closed_and_other_cas_refused(secure: Secure, tmp_path: Path) -> None:
    for node in secure.cluster.nodes:
        for port in (node.amqp_port, node.mqtt_port):
            with socket.socket() as s, pytest.raises(ConnectionRefusedError):
                s.connect(("127.0.0.1", port))
    stranger = ssl.create_default_context(cafile=authority(tmp_path / "other", "other").cert)
    node = secure.cluster.nodes[1]
    for port in (node.amqps_port, node.mqtts_port):
        # the nodes send their CA along (ssl_options.cacertfile): a root the client does not trust
        assert _tls_refused(port, stranger) == "self-signed certificate in certificate chain"
        assert _tls_refused(port, secure.context) == "handshake completed"


def _provision_cli(secure: Secure, stations: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = child_env(secure.cluster.ctl_env() | {"STATIONS_FILE": str(stations)})
    cmd = [sys.executable, "-m", "gateway", "provision", "--broker", "rabbitmq", "--out", str(secure.auth),
           "--apply", secure.cluster.nodes[2].name, "--rabbitmqctl", str(RABBITMQCTL), *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=True)


def test_rabbitmq_apply_adds_new_stations_and_deletes_removed_ones(secure: Secure, sessions: list[Session],
                                                                   tmp_path: Path) -> None:
    changed = tmp_path / "stations.yaml"
    registry_with(changed, extra=True, drop=B)
    connected = secure.session(B, node=0)
    sessions.append(connected)
    assert connected.accepted
    try:
        proc = _provision_cli(secure, changed)
        assert f"deleted 1 users of stations no longer in the registry: {B}" in proc.stderr
        connected.wait_disconnected()  # deleting the user closes its connections
        passwords = load_secrets(secure.auth / "secrets.yaml")
        newcomer = secure.session("PL-KT-900", passwords["PL-KT-900"], node=1)
        sessions.append(newcomer)
        assert newcomer.accepted
        newcomer.publish([("stations/v1/PL-KT-900/occupancy", b"{}")])
        gone = secure.session(B, node=2)
        sessions.append(gone)
        assert not gone.accepted, "a removed station still logs in"
        sessions.append(secure.session(A))
        assert sessions[-1].accepted, "the others keep their passwords"
    finally:
        back = _provision_cli(secure, registry.DEFAULT_FILE)
    assert "deleted 1 users of stations no longer in the registry: PL-KT-900" in back.stderr
    returned = secure.session(B, node=2)
    sessions.append(returned)
    assert returned.accepted, "a station that returns logs in with its old password"



def _drop(session: Session) -> None:
    """Cut the connection without a DISCONNECT, as a station that loses power: the broker sends its will."""
    sock = session.client.socket()
    assert isinstance(sock, ssl.SSLSocket), sock
    sock.shutdown(socket.SHUT_RDWR)


def test_rabbitmq_last_will_goes_out_on_the_stations_own_topic_only(secure: Secure,
                                                                    sessions: list[Session]) -> None:
    """A will on another station's topic is accepted at CONNECT and never published."""
    gateway = secure.session("gateway", node=2)
    sessions.append(gateway)
    assert gateway.subscribe("stations/v1/+/status") == 1
    forged = Session(secure.cluster.nodes[0].mqtts_port, A, secure.passwords[A], tls=secure.context,
                     will=f"stations/v1/{B}/status", client_id=f"station-{A}-forger")
    own = Session(secure.cluster.nodes[1].mqtts_port, A, secure.passwords[A], tls=secure.context,
                  will=f"stations/v1/{A}/status", client_id=f"station-{A}")
    sessions += [forged, own]
    assert forged.accepted
    assert own.accepted
    _drop(forged)
    _drop(own)
    wait_for(lambda: gateway.messages, timeout=15, what="the station's own last will at the gateway")
    marker = _marker()
    sessions.append(secure.session(A, node=2))
    sessions[-1].publish([(f"stations/v1/{A}/status", marker)])
    wait_for(lambda: marker in [m.payload for m in gateway.messages], timeout=15, what="the marker status")
    assert [m.topic for m in gateway.messages] == [f"stations/v1/{A}/status"] * 2, "a forged will went out"
