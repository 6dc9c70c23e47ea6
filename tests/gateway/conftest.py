"""A running stack for the gateway's tests: mosquitto, influxd, ingest and ``python -m gateway``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.credentials import Role, TokenStore, hash_password
from tests.rig import GatewayProcess, Influxd, IngestProcess, Mosquitto

PASSWORDS = {"PL-KT-001": "pw-kt-001", "PL-KT-002": "pw-kt-002"}


@dataclass
class Stack:
    broker: Mosquitto
    influxd: Influxd
    db: str
    ingest: IngestProcess
    gateway: GatewayProcess
    viewer: httpx.Client
    operator: httpx.Client
    anonymous: httpx.Client
    dir: Path

    def close(self) -> None:
        for client in (self.viewer, self.operator, self.anonymous):
            client.close()
        self.gateway.stop()
        self.ingest.stop()
        self.broker.stop()


def write_password_file(path: Path, passwords: dict[str, str]) -> Path:
    path.write_text("".join(f"{user}:{hash_password(pw)}\n" for user, pw in passwords.items()))
    return path


def start_stack(directory: Path, influxd: Influxd, **gateway_env: str) -> Stack:
    db = f"gw_{uuid.uuid4().hex[:10]}"
    broker = Mosquitto(directory / "mosquitto").start()
    ingest = IngestProcess(directory / "ingest", MQTT_URL=broker.url, INFLUX_URL=influxd.url, INFLUX_DB=db,
                           MQTT_CLIENT_ID=f"ingest-{db}")
    ingest.start()
    passwords = write_password_file(directory / "passwd", PASSWORDS)
    gateway = GatewayProcess(directory / "gateway", MQTT_URL=broker.url, INFLUX_URL=influxd.url, INFLUX_DB=db,
                             STATION_PASSWORD_FILE=str(passwords), **gateway_env)
    tokens = TokenStore(Path(gateway.env["GATEWAY_TOKENS_FILE"]))
    viewer, operator = tokens.add("dispatch", Role.VIEWER), tokens.add("on-call", Role.OPERATOR)
    gateway.start()
    return Stack(broker, influxd, db, ingest, gateway,
                 httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {viewer}"}, timeout=10),
                 httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {operator}"}, timeout=10),
                 httpx.Client(base_url=gateway.url, timeout=10), directory)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, influxd: Influxd) -> Iterator[Stack]:
    """One stack for a module of read-mostly tests."""
    running = start_stack(tmp_path_factory.mktemp("gateway"), influxd)
    yield running
    running.close()
