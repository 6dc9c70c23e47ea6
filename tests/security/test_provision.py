"""``python -m gateway provision``: the broker's password file and ACL, and the passwords, from the registry."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.credentials import check_password, read_password_file
from gateway.exceptions import CredentialsError
from gateway.provision import SERVICE_USERS, acl_text, load_secrets, provision
from telemetry import registry
from tests.rig import ROOT

REG = registry.load()
EXTRA = {"id": "PL-KT-900", "name": "新站", "district": "kongtong", "kind": "visual", "capacity": 6,
         "location": {"lat": 35.5, "lon": 106.6}, "chargers": [{"id": "C1", "sockets": 4}], "sensors": ["indoor"]}


def registry_with(path: Path, *, extra: bool, drop: str | None = None) -> registry.Registry:
    doc = yaml.safe_load(registry.DEFAULT_FILE.read_text(encoding="utf-8"))
    doc["stations"] = [s for s in doc["stations"] if s["id"] != drop] + ([EXTRA] if extra else [])
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return registry.load(path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_provision_one_user_per_reporting_station_and_the_services(tmp_path: Path) -> None:
    done = provision(REG, tmp_path)
    secrets = load_secrets(done.secrets)
    hashes = read_password_file(done.passwd)
    expected = [*SERVICE_USERS, *(s.id for s in REG.reporting)]
    assert list(hashes) == expected
    assert len(expected) == 47
    assert set(secrets) == set(expected)
    assert all(check_password(secrets[u], hashes[u]) for u in expected), "a hash does not match its password"
    assert all(hashes[u].startswith("$7$101$") for u in expected), "not mosquitto_passwd's format"
    assert len(set(secrets.values())) == 47
    assert all(len(p) >= 32 for p in secrets.values())
    assert (mode(done.secrets), mode(done.passwd), mode(done.acl)) == (0o600, 0o644, 0o644)
    assert done.added == tuple(expected)
    assert done.removed == ()


def test_provision_acl_gives_each_user_exactly_its_topics() -> None:
    text = acl_text(REG)
    users: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("user "):
            current = line.split(" ", 1)[1]
            users[current] = []
        elif line and not line.startswith("#"):
            assert current is not None, f"{line!r} would apply to anonymous clients"
            users[current].append(line)
    assert "pattern" not in text
    assert users["ingest"] == ["topic read stations/v1/#"]
    assert users["gateway"] == ["topic read stations/v1/#", "topic write stations/v1/+/config",
                                "topic write stations/v1/+/charger", "topic write stations/v1/+/occupancy",
                                "topic write stations/v1/+/temperature"]
    assert users["PL-KT-001"] == [
        "topic write stations/v1/PL-KT-001/charger", "topic write stations/v1/PL-KT-001/occupancy",
        "topic write stations/v1/PL-KT-001/temperature", "topic write stations/v1/PL-KT-001/status",
        "topic read stations/v1/PL-KT-001/config"]
    assert set(users) == {"ingest", "gateway", *(s.id for s in REG.reporting)}
    assert "PL-KT-042" not in users, "a basic station has no telemetry and no user"


def test_provision_rerun_keeps_passwords_adds_new_stations_and_drops_removed_ones(tmp_path: Path) -> None:
    out = tmp_path / "auth"
    first = provision(REG, out)
    before = load_secrets(first.secrets)
    passwd_before = first.passwd.read_text()
    again = provision(REG, out)
    assert again.added == again.removed == ()
    assert load_secrets(again.secrets) == before
    assert again.passwd.read_text() == passwd_before, "an unchanged registry must give an unchanged password file"

    grown = provision(registry_with(tmp_path / "grown.yaml", extra=True), out)
    assert grown.added == ("PL-KT-900",)
    after = load_secrets(grown.secrets)
    assert {u: p for u, p in after.items() if u != "PL-KT-900"} == before
    hashes = read_password_file(grown.passwd)
    assert check_password(after["PL-KT-900"], hashes["PL-KT-900"])
    assert "user PL-KT-900\n" in grown.acl.read_text()

    shrunk = provision(registry_with(tmp_path / "shrunk.yaml", extra=True, drop="PL-KT-002"), out)
    assert shrunk.removed == ("PL-KT-002",)
    assert "PL-KT-002" not in read_password_file(shrunk.passwd)
    assert "PL-KT-002" not in shrunk.acl.read_text()
    assert load_secrets(shrunk.secrets)["PL-KT-002"] == before["PL-KT-002"], "its password is kept for its return"
    back = provision(REG, out)
    assert back.added == ()
    assert check_password(before["PL-KT-002"], read_password_file(back.passwd)["PL-KT-002"])


def test_provision_secrets_file_elsewhere_and_never_readable_by_others(tmp_path: Path) -> None:
    secrets = tmp_path / "private" / "mqtt.yaml"
    done = provision(REG, tmp_path / "broker", secrets_file=secrets)
    assert done.secrets == secrets
    assert not (tmp_path / "broker" / "secrets.yaml").exists()
    assert mode(secrets) == 0o600
    secrets.chmod(0o644)
    with pytest.raises(CredentialsError, match=r"mode 0644 lets others read the passwords; chmod 600"):
        provision(REG, tmp_path / "broker", secrets_file=secrets)
    secrets.chmod(0o600)
    secrets.write_text("- not a mapping\n")
    with pytest.raises(CredentialsError, match="expected a mapping of user names to passwords"):
        provision(REG, tmp_path / "broker", secrets_file=secrets)


def test_provision_command_writes_the_files_and_prints_no_password(tmp_path: Path) -> None:
    out = tmp_path / "auth"
    registry_with(tmp_path / "stations.yaml", extra=True)
    env = {"PATH": os.environ["PATH"], "STATIONS_FILE": str(tmp_path / "stations.yaml")}
    proc = subprocess.run([sys.executable, "-m", "gateway", "provision", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    secrets = load_secrets(out / "secrets.yaml")
    assert len(secrets) == 48
    assert "48 MQTT users (ingest, gateway, 46 stations): 48 new, 0 removed" in proc.stderr
    assert proc.stdout.splitlines()[0].startswith(f"{out / 'passwd'}\t")
    assert not any(p in proc.stdout + proc.stderr for p in secrets.values())
    again = subprocess.run([sys.executable, "-m", "gateway", "provision", "--out", str(out)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60, check=True)
    assert "0 new, 0 removed" in again.stderr
    assert load_secrets(out / "secrets.yaml") == secrets
