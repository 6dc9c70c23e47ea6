"""The station credentials file: what provisioning writes is what the simulator and installers read."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry.credentials import CredentialsFileError, read_credentials, write_credentials
from tests.rig import ROOT


def test_credentials_round_trip_in_order_and_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    write_credentials(path, {"ingest": "a-b_c", "PL-KT-001": "x" * 32})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_credentials(path) == {"ingest": "a-b_c", "PL-KT-001": "x" * 32}
    assert list(read_credentials(path)) == ["ingest", "PL-KT-001"]
    assert path.read_text().startswith("# MQTT passwords of yizhan")


def test_credentials_missing_file_is_empty_and_bad_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    assert read_credentials(path) == {}
    path.write_text("PL-KT-001: ''\n")
    path.chmod(0o600)
    with pytest.raises(CredentialsFileError, match="expected a mapping of user names to passwords"):
        read_credentials(path)
    path.chmod(0o640)
    with pytest.raises(CredentialsFileError, match="mode 0640 lets others read the passwords"):
        read_credentials(path)


def test_credentials_simulator_reads_them_without_the_gateway() -> None:
    code = "import sys, simulator.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'gateway'))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
