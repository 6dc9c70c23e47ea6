"""Broker credentials and access control, generated from the station registry.

``python -m gateway provision [--out DIR] [--secrets FILE]`` writes three files::

    DIR/passwd          Mosquitto's password file: one user per reporting station (user name =
                        station id) plus the service users ``ingest`` and ``gateway``, each with
                        Mosquitto's own ``$7$`` hash (PBKDF2-SHA512). The broker and the gateway's
                        HTTP ingress (STATION_PASSWORD_FILE) read it.
    DIR/acl             Mosquitto's ACL file: each user gets only what is listed under it.
    FILE                the passwords in clear (YAML, ``user: password``), mode 0600, for whoever
                        installs the devices and configures the services (default DIR/secrets.yaml).

Passwords are random and written once: re-running keeps every password of the secrets file (and
the hash already in ``passwd``, so an unchanged registry gives unchanged files) and adds users
for new stations. A station that left the registry loses its user and ACL entries; its password
stays in the secrets file, so it gets it back if it returns.

Why explicit per-user ``topic`` lines rather than ``pattern ... %u``: a pattern applies to every
user (``ingest`` would get ``stations/v1/ingest/...``), and the registry already lists each
station, so each user's entries say exactly what it may do.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.credentials import check_password, hash_password, read_password_file
from gateway.exceptions import CredentialsError
from telemetry.contract import TELEMETRY_KINDS, TOPIC_ROOT, Kind, topic
from telemetry.credentials import CredentialsFileError, read_credentials, write_credentials
from telemetry.files import replace_file
from telemetry.registry import Registry

INGEST_USER: Final = "ingest"
GATEWAY_USER: Final = "gateway"
SERVICE_USERS: Final = (INGEST_USER, GATEWAY_USER)
PASSWORD_FILE: Final = "passwd"  # noqa: S105 - a file name
ACL_FILE: Final = "acl"
SECRETS_FILE: Final = "secrets.yaml"
_PASSWORD_BYTES: Final = 24  # 192 bits; token_urlsafe needs no percent-encoding in MQTT_URL
_TELEMETRY: Final = sorted(k.value for k in TELEMETRY_KINDS)

_ACL_HEAD = f"""\
# Mosquitto ACL of yizhan, written by `python -m gateway provision` from the station registry.
# Do not edit: re-run the command after changing the registry, then reload the broker (SIGHUP).
# A user may do only what is listed under it; anonymous clients are refused (allow_anonymous false).
# A station publishes its own telemetry and status (its last will included) and reads its own
# config; it can read nothing else, so it cannot subscribe to {TOPIC_ROOT}/# or another's config.

user {INGEST_USER}
topic read {TOPIC_ROOT}/#

# The gateway reads everything (live state, retained configs), writes configs, and publishes
# telemetry for stations that use its HTTP ingress.
user {GATEWAY_USER}
topic read {TOPIC_ROOT}/#
topic write {TOPIC_ROOT}/+/{Kind.CONFIG.value}
""" + "".join(f"topic write {TOPIC_ROOT}/+/{kind}\n" for kind in _TELEMETRY)


@dataclass(slots=True, frozen=True)
class Provisioned:
    """What a run wrote: the users of ``passwd`` and what changed since the last run."""

    passwd: Path
    acl: Path
    secrets: Path
    users: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]


def acl_text(registry: Registry) -> str:
    """The ACL file for the service users and every reporting station of ``registry``."""
    parts = [_ACL_HEAD]
    for station in registry.reporting:
        sid = station.id
        lines = [f"topic write {topic(sid, Kind(kind))}" for kind in _TELEMETRY]
        lines += [f"topic write {topic(sid, Kind.STATUS)}", f"topic read {topic(sid, Kind.CONFIG)}"]
        parts.append(f"\nuser {sid}\n" + "\n".join(lines) + "\n")
    return "".join(parts)


def load_secrets(path: Path) -> dict[str, str]:
    """The ``user: password`` mapping of a secrets file (empty when it does not exist).

    Raises:
        CredentialsError: the file is readable by others than its owner, or not such a mapping.
    """
    try:
        return read_credentials(path)
    except CredentialsFileError as exc:
        raise CredentialsError(str(exc)) from exc


def broker_users(registry: Registry) -> tuple[str, ...]:
    """Every broker user: the services, then each reporting station (user name = station id)."""
    return (*SERVICE_USERS, *(s.id for s in registry.reporting))


def ensure_passwords(users: tuple[str, ...], secrets_path: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """Every password of the secrets file, plus a new random one for each user it lacks (written
    back before any hash is, so that no hash is ever without its password); and those new users.

    Raises:
        CredentialsError: the secrets file is readable by others than its owner, or not a mapping.
    """
    known = load_secrets(secrets_path)
    added = tuple(u for u in users if u not in known)
    passwords = {**known, **{u: secrets.token_urlsafe(_PASSWORD_BYTES) for u in added}}
    if added or not secrets_path.exists():
        secrets_path.parent.mkdir(parents=True, exist_ok=True)
        write_credentials(secrets_path, passwords)
    return passwords, added


def provision(registry: Registry, out: Path, *, secrets_file: Path | None = None) -> Provisioned:
    """Write ``passwd``, ``acl`` and the secrets file; keep every existing password."""
    secrets_path = secrets_file or out / SECRETS_FILE
    passwd_path, acl_path = out / PASSWORD_FILE, out / ACL_FILE
    hashes = read_password_file(passwd_path) if passwd_path.exists() else {}
    users = broker_users(registry)
    out.mkdir(parents=True, exist_ok=True)
    passwords, added = ensure_passwords(users, secrets_path)
    lines = [f"{user}:{_hash(passwords[user], hashes.get(user))}" for user in users]
    replace_file(passwd_path, "\n".join(lines) + "\n", mode=0o644)
    replace_file(acl_path, acl_text(registry), mode=0o644)
    removed = tuple(sorted(set(hashes) - set(users)))
    return Provisioned(passwd_path, acl_path, secrets_path, users, added, removed)


def _hash(password: str, old: str | None) -> str:
    """The existing hash while it still matches (the file stays the same), else a new one."""
    return old if old is not None and check_password(password, old) else hash_password(password)
