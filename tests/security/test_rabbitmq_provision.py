"""``python -m gateway provision --broker rabbitmq``: RabbitMQ definitions from the registry, without a broker
(tests/security/test_rabbitmq.py checks them against a real cluster)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.exceptions import CredentialsError
from gateway.provision import SERVICE_USERS, load_secrets, provision
from gateway.rabbitmq import (
    BINDING_KEY,
    DEFAULT_QUEUE,
    HASHING,
    TAG,
    check_password,
    hash_password,
    provision_rabbitmq,
    station_grant,
)
from telemetry import registry
from tests.rig import ROOT
from tests.security.test_provision import registry_with

REG = registry.load()


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _by_user(doc: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    return {entry["user"]: entry for entry in doc[section]}


def test_rabbitmq_hash_is_rabbitmqs_salted_sha256() -> None:
    hashed = hash_password("s3cret", salt=b"\x01\x02\x03\x04")
    raw = base64.b64decode(hashed)
    assert raw[:4] == b"\x01\x02\x03\x04"
    assert raw[4:] == hashlib.sha256(b"\x01\x02\x03\x04s3cret").digest()
    assert check_password("s3cret", hashed)
    assert not check_password("s3cret!", hashed)
    assert not check_password("s3cret", "not base64 at all")
    assert not check_password("s3cret", base64.b64encode(b"short").decode())
    assert hash_password("s3cret") != hash_password("s3cret"), "a random salt per hash"


def test_rabbitmq_definitions_hold_every_user_hashed_the_vhost_and_the_queue(tmp_path: Path) -> None:
    done = provision_rabbitmq(REG, tmp_path, secrets_file=tmp_path / "secrets.yaml")
    doc = _doc(done.definitions)
    passwords = load_secrets(done.secrets)
    expected = [*SERVICE_USERS, *(s.id for s in REG.reporting)]
    assert [u["name"] for u in doc["users"]] == expected
    for user in doc["users"]:
        assert user["hashing_algorithm"] == HASHING
        assert user["tags"] == [TAG]
        assert check_password(passwords[user["name"]], user["password_hash"])
    text = done.definitions.read_text(encoding="utf-8")
    assert not any(p in text for p in passwords.values()), "a clear password in the definitions"
    assert stat.S_IMODE(done.definitions.stat().st_mode) == 0o644
    assert stat.S_IMODE(done.secrets.stat().st_mode) == 0o600
    assert doc["vhosts"] == [{"name": "yizhan"}]
    assert doc["queues"] == [{"name": DEFAULT_QUEUE, "vhost": "yizhan", "durable": True, "auto_delete": False,
                              "arguments": {"x-queue-type": "quorum"}}]
    assert doc["bindings"] == [{"source": "amq.topic", "vhost": "yizhan", "destination": DEFAULT_QUEUE,
                                "destination_type": "queue", "routing_key": "stations.v1.#", "arguments": {}}]
    assert set(_by_user(doc, "permissions")) == set(_by_user(doc, "topic_permissions")) == set(expected)
    assert all(t["exchange"] == "amq.topic" for t in doc["topic_permissions"])


def _allowed(pattern: str, name: str) -> bool:
    # RabbitMQ matches permissions with Erlang's re (PCRE); these patterns mean the same in Python
    return re.search(pattern, name) is not None


def test_rabbitmq_station_may_publish_and_read_only_its_own_routing_keys() -> None:
    grant = station_grant("PL-KT-001")
    for kind in ("occupancy", "charger", "temperature", "status"):
        assert _allowed(grant.topic_write, f"stations.v1.PL-KT-001.{kind}")
        assert not _allowed(grant.topic_write, f"stations.v1.PL-KT-002.{kind}")
    for key in ("stations.v1.PL-KT-001.config", "stations.v1.PL-KT-001.occupancy.x", "stations.v1.PL-KT-0011.status",
                "stations.v1.PLxKT-001.status", "stations.v1.*.status", "stations.v1.#"):
        assert not _allowed(grant.topic_write, key), key
    assert _allowed(grant.topic_read, "stations.v1.PL-KT-001.config")
    for key in ("stations.v1.PL-KT-002.config", "stations.v1.*.config", "stations.v1.#", "#",
                "stations.v1.PL-KT-001.#", "stations.v1.PL-KT-001.occupancy"):
        assert not _allowed(grant.topic_read, key), key
    own, other = "mqtt-subscription-station-PL-KT-001qos1", "mqtt-subscription-station-PL-KT-002qos1"
    assert _allowed(grant.configure, own)
    assert _allowed(grant.configure, own.replace("qos1", "qos0"))
    for name in (other, "yizhan.ingest", "amq.topic"):
        assert not _allowed(grant.configure, name), name
    assert _allowed(grant.write, "amq.topic")
    assert not _allowed(grant.write, "amq.default")
    assert not _allowed(grant.read, "yizhan.ingest")


def test_rabbitmq_services_get_the_queue_or_the_topics_they_need(tmp_path: Path) -> None:
    doc = _doc(provision_rabbitmq(REG, tmp_path, secrets_file=tmp_path / "secrets.yaml").definitions)
    perms, topics = _by_user(doc, "permissions"), _by_user(doc, "topic_permissions")
    ingest = perms["ingest"]
    assert _allowed(ingest["configure"], "yizhan.ingest")
    assert _allowed(ingest["read"], "yizhan.ingest")
    assert _allowed(ingest["read"], "amq.topic"), "to bind the queue"
    for name in ("amq.topic", "amq.default", "other", "yizhan.ingest2", "mqtt-subscription-xqos1"):
        assert not _allowed(ingest["write"], name), name
        assert not _allowed(ingest["configure"], name), name
    assert _allowed(topics["ingest"]["read"], BINDING_KEY)
    assert not _allowed(topics["ingest"]["write"], "stations.v1.PL-KT-001.occupancy")
    gateway = perms["gateway"]
    assert _allowed(gateway["configure"], "mqtt-subscription-gateway-1qos1")
    assert not _allowed(gateway["configure"], "mqtt-subscription-station-PL-KT-001qos1"), "a station's own queue"
    assert not _allowed(gateway["configure"], "yizhan.ingest")
    assert _allowed(topics["gateway"]["read"], "stations.v1.#")
    for kind in ("config", "occupancy", "charger", "temperature"):
        assert _allowed(topics["gateway"]["write"], f"stations.v1.PL-KT-009.{kind}")
    assert not _allowed(topics["gateway"]["write"], "stations.v1.PL-KT-009.status"), "a station's own status"


def test_rabbitmq_rerun_is_idempotent_and_shares_passwords_with_mosquitto(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.yaml"
    mosquitto = provision(REG, tmp_path / "mosquitto", secrets_file=secrets)
    passwords = load_secrets(secrets)
    first = provision_rabbitmq(REG, tmp_path / "rabbit", secrets_file=secrets)
    assert first.added == (), "the Mosquitto run made every password already"
    assert load_secrets(secrets) == passwords
    text = first.definitions.read_text(encoding="utf-8")
    again = provision_rabbitmq(REG, tmp_path / "rabbit", secrets_file=secrets)
    assert again.definitions.read_text(encoding="utf-8") == text, "an unchanged registry gives an unchanged file"
    assert (again.added, again.removed) == ((), ())
    assert mosquitto.users == first.users

    changed = registry_with(tmp_path / "changed.yaml", extra=True, drop="PL-KT-002")
    moved = provision_rabbitmq(changed, tmp_path / "rabbit", secrets_file=secrets)
    assert moved.added == ("PL-KT-900",)
    assert moved.removed == ("PL-KT-002",)
    assert "PL-KT-002" not in {u["name"] for u in _doc(moved.definitions)["users"]}
    assert load_secrets(secrets)["PL-KT-002"] == passwords["PL-KT-002"], "kept for the station's return"


def test_rabbitmq_refuses_a_file_that_is_not_definitions(tmp_path: Path) -> None:
    (tmp_path / "definitions.json").write_text("[1, 2]")
    with pytest.raises(CredentialsError, match="not a RabbitMQ definitions file"):
        provision_rabbitmq(REG, tmp_path, secrets_file=tmp_path / "secrets.yaml")


def test_rabbitmq_provision_command_writes_definitions_and_prints_no_password(tmp_path: Path) -> None:
    out = tmp_path / "auth"
    env = {"PATH": os.environ["PATH"], "STATIONS_FILE": str(registry.DEFAULT_FILE)}
    cmd = [sys.executable, "-m", "gateway", "provision", "--broker", "rabbitmq", "--out", str(out),
           "--vhost", "v1", "--queue", "q.ingest"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    secrets = load_secrets(out / "secrets.yaml")
    assert "47 MQTT users (ingest, gateway, 45 stations): 47 new, 0 removed" in proc.stderr
    assert proc.stdout.splitlines()[0].startswith(f"{out / 'definitions.json'}\t")
    assert "import_definitions" in proc.stderr
    assert not any(p in proc.stdout + proc.stderr for p in secrets.values())
    doc = _doc(out / "definitions.json")
    assert doc["vhosts"] == [{"name": "v1"}]
    assert [q["name"] for q in doc["queues"]] == ["q.ingest"]
    assert not (out / "passwd").exists(), "the Mosquitto files are another --broker"


def test_rabbitmq_apply_reports_a_failing_rabbitmqctl_and_exits(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "STATIONS_FILE": str(registry.DEFAULT_FILE)}
    cmd = [sys.executable, "-m", "gateway", "provision", "--broker", "rabbitmq", "--out", str(tmp_path),
           "--apply", "rabbit@nowhere", "--rabbitmqctl", "false"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "gateway: false -n rabbit@nowhere import_definitions" in proc.stderr
    assert "exited 1" in proc.stderr
    assert (tmp_path / "definitions.json").is_file(), "written before the import was tried"
    missing = subprocess.run([*cmd[:-1], str(tmp_path / "no-such-ctl")], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60, check=False)
    assert missing.returncode == 1
    assert "No such file or directory" in missing.stderr
