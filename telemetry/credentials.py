"""The station credentials file: MQTT passwords in clear, ``user: password`` in YAML, mode 0600.

``python -m gateway provision`` writes it (one password per reporting station and service
user); whoever installs a device gives the station its own as ``STATION_PASSWORD``, and
``python -m simulator --secrets FILE`` logs every agent in with it. Both sides read and write it
here, so neither needs the other's package::

    # MQTT passwords of yizhan (python -m gateway provision). Secret: keep this file mode 0600.
    ingest: 3Jx...
    PL-KT-001: q0B...
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import yaml

from telemetry.files import replace_file

MODE: Final = 0o600
_HEAD: Final = ("# MQTT passwords of yizhan (python -m gateway provision). Secret: keep this file mode 0600.\n"
                "# A station's agent gets its own as STATION_PASSWORD; ingest and gateway theirs in MQTT_URL.\n")


class CredentialsFileError(Exception):
    """The credentials file is readable by others, cannot be read, or is not a mapping of passwords."""


def read_credentials(path: Path) -> dict[str, str]:
    """The ``user: password`` mapping of a credentials file (empty when it does not exist).

    Raises:
        CredentialsFileError: the file is readable by others than its owner, or not such a mapping.
    """
    if not path.exists():
        return {}
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CredentialsFileError(f"{path}: mode {mode:04o} lets others read the passwords; chmod 600 it first")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CredentialsFileError(f"{path}: cannot read the secrets file: {exc}") from exc
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                            for k, v in doc.items()):
        raise CredentialsFileError(f"{path}: expected a mapping of user names to passwords")
    return dict(doc)


def write_credentials(path: Path, passwords: Mapping[str, str]) -> None:
    """Replace the credentials file atomically with ``passwords`` (in their order), mode 0600."""
    text = _HEAD + yaml.safe_dump(dict(passwords), sort_keys=False, default_flow_style=False)
    replace_file(path, text, mode=MODE)
