"""The pipeline encrypted end to end: agent -> mqtts -> Mosquitto -> mqtts -> ingest -> https -> InfluxDB,
and the gateway on mqtts and https, with a throwaway CA; clients that do not trust it are refused."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.credentials import Role, TokenStore
from telemetry.contract import Kind, topic
from tests.payloads import now_ms, occupancy
from tests.rig import (
    ROOT,
    GatewayProcess,
    Influxd,
    IngestProcess,
    Mosquitto,
    child_env,
    free_port,
    port_open,
    stop_process,
    wait_for,
)
from tests.security.certs import Authority, Issued, authority
from tests.security.conftest import Credentials, Session

S = "PL-KT-003"


@dataclass
class Pki:
    ca: Authority
    stranger: Authority
    broker: Issued
    influxd: Issued
    ingest: Issued


@dataclass
class TlsBroker:
    broker: Mosquitto
    port: int
    """mqtts: server authentication, then user name and password."""
    cert_port: int
    """mqtts that also requires a client certificate signed by the CA."""


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = authority(tmp_path / "pki")
    return Pki(ca, authority(tmp_path / "pki-stranger", "stranger"), ca.issue("broker", server=True),
               ca.issue("influxd", server=True), ca.issue("ingest", server=False))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki, credentials: Credentials) -> Iterator[TlsBroker]:
    port, cert_port = free_port(), free_port()
    files = f"cafile {pki.ca.cert}\ncertfile {pki.broker.cert}\nkeyfile {pki.broker.key}\n"
    broker = Mosquitto(tmp_path / "mosquitto", extra=credentials.broker_config() + f"listener {port} 127.0.0.1\n{files}"
                       f"listener {cert_port} 127.0.0.1\n{files}require_certificate true\n").start()
    wait_for(lambda: port_open(port) and port_open(cert_port), timeout=10, what="the TLS listeners")
    yield TlsBroker(broker, port, cert_port)
    broker.stop()


@pytest.fixture
def https_influxd(tmp_path: Path, pki: Pki) -> Iterator[Influxd]:
    server = Influxd(tmp_path / "influxd", https=(pki.influxd.cert, pki.influxd.key), ca=pki.ca.cert).start()
    yield server
    server.stop()


def _refused(port: int, user: str, password: str, *, tls: ssl.SSLContext) -> bool:
    """The TLS handshake fails at once, or (TLS 1.3: the server checks the client's certificate after
    the client's handshake is done) the broker closes the connection without a CONNACK."""
    try:
        session = Session(port, user, password, tls=tls)
    except ssl.SSLError:  # TLS 1.2
        return True
    try:
        session.wait_disconnected()
        return session.connack is None
    finally:
        session.close()


def _context(ca: Path, client: Issued | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(client.cert, client.key)
    return ctx


def test_tls_agent_to_influxdb_and_the_gateway_all_encrypted(tmp_path: Path, pki: Pki, credentials: Credentials,
                                                             tls_broker: TlsBroker,
                                                             https_influxd: Influxd) -> None:
    db = "tls"
    ingest = IngestProcess(tmp_path / "ingest", MQTT_URL=credentials.url(tls_broker.broker, "ingest", port=tls_broker.cert_port,
                                                                   scheme="mqtts"),
                           MQTT_CA_FILE=str(pki.ca.cert), MQTT_CERT_FILE=str(pki.ingest.cert),
                           MQTT_KEY_FILE=str(pki.ingest.key), INFLUX_URL=https_influxd.url, INFLUX_DB=db,
                           INFLUX_CA_FILE=str(pki.ca.cert), INGEST_BATCH_SECONDS="0.1")
    gateway = GatewayProcess(tmp_path / "gateway", MQTT_URL=credentials.url(tls_broker.broker, "gateway",
                                                                      port=tls_broker.port, scheme="mqtts"),
                             MQTT_CA_FILE=str(pki.ca.cert), INFLUX_URL=https_influxd.url, INFLUX_DB=db,
                             INFLUX_CA_FILE=str(pki.ca.cert), STATION_PASSWORD_FILE=str(credentials.files.passwd))
    operator = TokenStore(Path(gateway.env["GATEWAY_TOKENS_FILE"])).add("on-call", Role.OPERATOR)
    env = child_env({"MQTT_URL": f"mqtts://127.0.0.1:{tls_broker.port}", "MQTT_CA_FILE": str(pki.ca.cert),
                     "STATION_PASSWORD": credentials.passwords[S], "AGENT_BUFFER_PATH": str(tmp_path / "agent.sqlite3")})
    ingest.start()
    gateway.start()
    with (tmp_path / "agent.log").open("wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "firmware_stubs", "--station", S], cwd=ROOT, env=env,
                                 stdout=log, stderr=log)
    api = httpx.Client(base_url=gateway.url, timeout=10)
    try:
        # the agent's first readings (occupancy, 2 chargers, 2 sensors) and its status, through ingest
        wait_for(lambda: https_influxd.count("occupancy", "seq", db) + https_influxd.count("charger", "seq", db)
                 + https_influxd.count("temperature", "seq", db) >= 5, what="the agent's readings in InfluxDB")
        wait_for(lambda: https_influxd.count("station_status", "online", db) >= 1, what="its status")
        # the gateway: reads live state over mqtts, InfluxDB over https, pushes a config the agent applies
        auth = {"Authorization": f"Bearer {operator}"}
        assert api.get("/readyz").json() == {"mqtt": True, "influxdb": True}
        wait_for(lambda: api.get(f"/v1/stations/{S}", headers=auth).json()["online"], what="the agent online")
        result = api.put(f"/v1/stations/{S}/config", params={"wait": 15}, headers=auth,
                         json={"rev": "tls-1", "status_interval_s": 30})
        assert result.status_code == 200, result.text
        assert result.json()["acknowledged"] is True
        # HTTP ingress: the gateway publishes for the station over mqtts, ingest stores it
        posted = api.post(f"/v1/stations/{S}/telemetry", params={"kind": "occupancy"}, auth=(S, credentials.passwords[S]),
                          json=occupancy(10_000, 4, ts=now_ms() - 100))
        assert posted.status_code == 202, posted.text
        wait_for(lambda: https_influxd.count("occupancy", "seq", db, "WHERE seq = 10000") == 1,
                 what="the ingress reading in InfluxDB")
        assert https_influxd.count("ingest_rejects", "detail", db) == 0
    finally:
        api.close()
        stop_process(agent, timeout=15)
        gateway.stop()
        ingest.stop()


def test_tls_clients_that_do_not_trust_the_ca_or_lack_a_certificate_are_refused(
        tmp_path: Path, pki: Pki, credentials: Credentials, tls_broker: TlsBroker) -> None:
    port, cert_port = tls_broker.port, tls_broker.cert_port
    ok = Session(port, S, credentials.passwords[S], tls=_context(pki.ca.cert))
    assert ok.accepted
    ok.close()
    for ctx in (ssl.create_default_context(), _context(pki.stranger.cert)):  # system CAs; another CA
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"), \
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
            pass
    # the listener that requires a client certificate: none, or one of another CA
    assert _refused(cert_port, S, credentials.passwords[S], tls=_context(pki.ca.cert))
    assert _refused(cert_port, S, credentials.passwords[S], tls=_context(pki.ca.cert, pki.stranger.issue("mallory",
                                                                                                  server=False)))
    with_cert = Session(cert_port, S, credentials.passwords[S], tls=_context(pki.ca.cert, pki.ingest))
    assert with_cert.accepted
    with_cert.close()

    # ingest configured with another CA: it never connects, and says why
    ingest = IngestProcess(tmp_path / "ingest", MQTT_URL=credentials.url(tls_broker.broker, "ingest", port=port,
                                                                   scheme="mqtts"),
                           MQTT_CA_FILE=str(pki.stranger.cert), INFLUX_URL="http://127.0.0.1:9")
    ingest.start(wait_ready=False)
    try:
        wait_for(lambda: "certificate verify failed" in ingest.log.read_text(), what="ingest refusing the broker")
        assert ingest.health()["mqtt_connected"] is False
    finally:
        ingest.kill()
    log = (tls_broker.broker.dir / "mosquitto.log").read_text()
    assert "peer did not return a certificate" in log
    assert "alert unknown ca" in log
    assert topic(S, Kind.OCCUPANCY) not in log, "nothing was published by a refused client"
