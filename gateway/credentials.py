"""Secrets the gateway checks: API tokens (stored as SHA-256 hashes) and station passwords (Mosquitto's hashes).

API tokens are 256-bit random strings shown once; the tokens file keeps only their SHA-256, which
suffices for secrets of that entropy. Station passwords are checked against the broker's own
password file (PBKDF2-SHA512, Mosquitto's ``$7$`` format), so a station has one password for MQTT
and HTTP, and the gateway stores none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml

from gateway.exceptions import CredentialsError
from telemetry.files import replace_file

_PBKDF2_ITERATIONS = 101  # what mosquitto_passwd writes
_SALT_BYTES = 12


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(slots=True, frozen=True)
class Token:
    name: str
    role: Role


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The YAML file of API tokens: ``tokens: [{name, role, sha256}]``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_digest: dict[str, Token] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        try:
            doc = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
            entries = doc.get("tokens", []) if isinstance(doc, dict) else None
            if not isinstance(entries, list):
                raise CredentialsError(f"{self.path}: expected a mapping with a 'tokens' list")
            for entry in entries:
                self._by_digest[str(entry["sha256"])] = Token(str(entry["name"]), Role(entry["role"]))
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise CredentialsError(f"{self.path}: cannot read the tokens file: {exc}") from exc

    def verify(self, token: str) -> Token | None:
        return self._by_digest.get(_digest(token))

    def add(self, name: str, role: Role) -> str:
        """Create a token, store its hash (file mode 0600) and return it: it is shown this once."""
        if any(t.name == name for t in self._by_digest.values()):
            raise CredentialsError(f"a token named {name!r} exists already")
        token = secrets.token_urlsafe(32)
        self._by_digest[_digest(token)] = Token(name, role)
        entries = [{"name": t.name, "role": t.role.value, "sha256": d} for d, t in self._by_digest.items()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, yaml.safe_dump({"tokens": entries}, sort_keys=False), mode=0o600)
        return token


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Mosquitto's ``$7$`` hash (PBKDF2-SHA512), as ``mosquitto_passwd`` writes it."""
    salt = salt or secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS, 64)
    return f"$7${_PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, hashed: str) -> bool:
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations),
                                  len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def read_password_file(path: Path) -> dict[str, str]:
    """``user:hash`` lines of a Mosquitto password file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read the password file: {exc}") from exc
    users = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            user, sep, hashed = line.partition(":")
            if not sep:
                raise CredentialsError(f"{path}: malformed line for {user!r}")
            users[user] = hashed
    return users


class StationPasswords:
    """Checks a station's password against the broker's password file (re-read when it changes)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mtime = 0.0
        self._users: dict[str, str] = {}

    @property
    def configured(self) -> bool:
        return self.path is not None

    def check(self, station_id: str, password: str) -> bool:
        if self.path is None:
            return False
        mtime = self.path.stat().st_mtime
        if mtime != self._mtime:
            self._users, self._mtime = read_password_file(self.path), mtime
        hashed = self._users.get(station_id)
        return hashed is not None and check_password(password, hashed)
