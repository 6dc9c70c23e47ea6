"""RabbitMQ users, permissions and the ingest queue, generated from the station registry.

``python -m gateway provision --broker rabbitmq [--out DIR] [--apply NODE]`` writes
``DIR/definitions.json``: RabbitMQ definitions that ``rabbitmqctl import_definitions`` imports and
that a node loads at boot (``definitions.local.path`` in rabbitmq.conf). They hold

- one user per reporting station (user name = station id), and ``ingest`` and ``gateway``, with the
  passwords of the same secrets file as the Mosquitto files (a station has one password), hashed in
  RabbitMQ's ``rabbit_password_hashing_sha256`` format, never in clear; every user carries the tag
  ``yizhan``, which is how ``--apply`` knows the users it manages;
- the vhost, and per user the configure/write/read permissions on queues and exchanges and the
  topic permissions on ``amq.topic`` (the routing keys of MQTT topics: ``/`` becomes ``.``);
- the ingest queue (quorum, durable) and its binding to ``amq.topic`` with ``stations.v1.#``: it must
  exist before any device publishes, since a QoS 1 message that routes to no queue is confirmed
  and dropped.

What each user may do (RabbitMQ's MQTT plugin turns a subscription into a queue
``mqtt-subscription-<client id>qos<0|1>`` bound to ``amq.topic``; binding needs write on the queue
and read on the exchange, and the binding key must pass the user's topic read permission):

==========  ============================================  =====================================
user        publish (topic write on amq.topic)            subscribe (topic read)
==========  ============================================  =====================================
a station   ``stations.v1.<its id>.{charger,occupancy,    ``stations.v1.<its id>.config``
            temperature,status}``
ingest      nothing (no write on amq.topic)               consumes ``yizhan.ingest`` only
gateway     ``stations.v1.<any>.{config,charger,          ``stations.v1.#`` and below
            occupancy,temperature}``
==========  ============================================  =====================================

A station's queues are those of its agent's client id, ``station-<id>``; the gateway's may have any
client id but a station's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.exceptions import ApplyError, CredentialsError
from gateway.provision import GATEWAY_USER, INGEST_USER, broker_users, ensure_passwords
from telemetry.contract import TELEMETRY_KINDS, TOPIC_ROOT, Kind
from telemetry.files import replace_file
from telemetry.registry import Registry

DEFINITIONS_FILE: Final = "definitions.json"
HASHING: Final = "rabbit_password_hashing_sha256"
TAG: Final = "yizhan"
DEFAULT_VHOST: Final = "yizhan"
DEFAULT_QUEUE: Final = "yizhan.ingest"
EXCHANGE: Final = "amq.topic"
ROUTING_ROOT: Final = TOPIC_ROOT.replace("/", ".")
BINDING_KEY: Final = f"{ROUTING_ROOT}.#"
NOTHING: Final = "^$"
_SALT_BYTES: Final = 4  # what RabbitMQ itself uses
_TELEMETRY: Final = sorted(k.value for k in TELEMETRY_KINDS)
_ROOT_RE: Final = re.escape(ROUTING_ROOT)
_SUBSCRIPTION: Final = "mqtt-subscription-"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + SHA-256(salt + password))."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def check_password(password: str, hashed: str) -> bool:
    """Whether ``hashed`` (RabbitMQ's sha256 format) is the hash of ``password``."""
    try:
        raw = base64.b64decode(hashed, validate=True)
    except ValueError:
        return False
    return len(raw) == _SALT_BYTES + 32 and hmac.compare_digest(hash_password(password, salt=raw[:_SALT_BYTES]), hashed)


@dataclass(slots=True, frozen=True)
class Grant:
    """What one user may do: regular permissions (queues, exchanges) and topic permissions on amq.topic."""

    user: str
    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str


def _alternatives(names: Sequence[str]) -> str:
    return "(" + "|".join(re.escape(n) for n in names) + ")"


def _queues_of_client(client_id_re: str) -> str:
    return f"{re.escape(_SUBSCRIPTION)}{client_id_re}qos[01]"


def station_grant(station_id: str) -> Grant:
    sid = re.escape(station_id)
    own = _queues_of_client(re.escape(f"station-{station_id}"))
    return Grant(station_id, configure=f"^{own}$", write=f"^({re.escape(EXCHANGE)}|{own})$",
                 read=f"^({re.escape(EXCHANGE)}|{own})$",
                 topic_write=f"^{_ROOT_RE}\\.{sid}\\.{_alternatives([*_TELEMETRY, Kind.STATUS.value])}$",
                 topic_read=f"^{_ROOT_RE}\\.{sid}\\.{re.escape(Kind.CONFIG.value)}$")


def service_grants(queue: str) -> list[Grant]:
    q, exchange = re.escape(queue), re.escape(EXCHANGE)
    gateway_queues = _queues_of_client("(?!station-).*")
    return [
        Grant(INGEST_USER, configure=f"^{q}$", write=f"^{q}$", read=f"^({exchange}|{q})$",
              topic_write=NOTHING, topic_read=f"^{_ROOT_RE}\\."),
        Grant(GATEWAY_USER, configure=f"^{gateway_queues}$", write=f"^({exchange}|{gateway_queues})$",
              read=f"^({exchange}|{gateway_queues})$",
              topic_write=f"^{_ROOT_RE}\\.[^.]+\\.{_alternatives([Kind.CONFIG.value, *_TELEMETRY])}$",
              topic_read=f"^{_ROOT_RE}\\."),
    ]


def grants(registry: Registry, *, queue: str = DEFAULT_QUEUE) -> list[Grant]:
    """Every user's grant: the services first, then each reporting station."""
    return [*service_grants(queue), *(station_grant(s.id) for s in registry.reporting)]


def definitions(registry: Registry, hashes: Mapping[str, str], *, vhost: str = DEFAULT_VHOST,
                queue: str = DEFAULT_QUEUE) -> dict[str, Any]:
    """The definitions document for ``registry``; ``hashes`` holds each user's password hash."""
    granted = grants(registry, queue=queue)
    return {
        "users": [{"name": g.user, "password_hash": hashes[g.user], "hashing_algorithm": HASHING, "tags": [TAG],
                   "limits": {}} for g in granted],
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": g.user, "vhost": vhost, "configure": g.configure, "write": g.write,
                         "read": g.read} for g in granted],
        "topic_permissions": [{"user": g.user, "vhost": vhost, "exchange": EXCHANGE, "write": g.topic_write,
                               "read": g.topic_read} for g in granted],
        "queues": [{"name": queue, "vhost": vhost, "durable": True, "auto_delete": False,
                    "arguments": {"x-queue-type": "quorum"}}],
        "exchanges": [],
        "bindings": [{"source": EXCHANGE, "vhost": vhost, "destination": queue, "destination_type": "queue",
                      "routing_key": BINDING_KEY, "arguments": {}}],
        "parameters": [], "policies": [], "global_parameters": [],
    }


@dataclass(slots=True, frozen=True)
class RabbitProvisioned:
    """What a run wrote: the users of the definitions and what changed since the last run."""

    definitions: Path
    secrets: Path
    users: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]


def _old_hashes(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {str(u["name"]): str(u["password_hash"]) for u in doc.get("users", [])}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CredentialsError(f"{path}: not a RabbitMQ definitions file ({exc}); move it away to start anew") from exc


def provision_rabbitmq(registry: Registry, out: Path, *, secrets_file: Path, vhost: str = DEFAULT_VHOST,
                       queue: str = DEFAULT_QUEUE) -> RabbitProvisioned:
    """Write ``definitions.json`` and the secrets file; keep every existing password and matching hash."""
    path = out / DEFINITIONS_FILE
    old = _old_hashes(path)
    users = broker_users(registry)
    passwords, added = ensure_passwords(users, secrets_file)
    hashes = {u: old[u] if u in old and check_password(passwords[u], old[u]) else hash_password(passwords[u])
              for u in users}
    out.mkdir(parents=True, exist_ok=True)
    doc = definitions(registry, hashes, vhost=vhost, queue=queue)
    replace_file(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n", mode=0o644)
    return RabbitProvisioned(path, secrets_file, users, added, tuple(sorted(set(old) - set(users))))


def _ctl(rabbitmqctl: str, node: str, *args: str) -> str:
    cmd = [rabbitmqctl, "-n", node, *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603 - the operator's own CLI and arguments
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ApplyError(cmd, str(exc)) from exc
    if done.returncode != 0:
        raise ApplyError(cmd, f"exited {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def apply(path: Path, node: str, *, rabbitmqctl: str = "rabbitmqctl") -> tuple[str, ...]:
    """Import the definitions into ``node``'s cluster, then delete the users tagged ``yizhan`` that
    they no longer list (stations that left the registry); the deleted users' names."""
    _ctl(rabbitmqctl, node, "import_definitions", str(path))
    wanted = {u["name"] for u in json.loads(path.read_text(encoding="utf-8"))["users"]}
    listed = json.loads(_ctl(rabbitmqctl, node, "list_users", "--formatter", "json", "--silent"))
    stale = sorted(u["user"] for u in listed if TAG in _tags(u.get("tags")) and u["user"] not in wanted)
    for user in stale:
        _ctl(rabbitmqctl, node, "delete_user", user)
    return tuple(stale)


def _tags(tags: object) -> list[str]:
    # rabbitmqctl lists tags as a list, or as one comma-separated string in older formatters
    if isinstance(tags, str):
        return [t.strip() for t in tags.strip("[]").split(",")]
    return [str(t) for t in tags] if isinstance(tags, list) else []
