"""``python -m ingest``'s command line: help without a service, and the rollup rebuild."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from telemetry.storage import HOUR_MS
from tests.ingest import rollup_reference as ref
from tests.ingest.test_rollup import T0, raw_lines
from tests.rig import ROOT, Influxd, child_env


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingest", *args], cwd=ROOT, env=child_env(env), capture_output=True,
                          text=True, timeout=120, check=False)


def test_cli_help_prints_usage_and_starts_no_service() -> None:
    done = run("--help", env={"MQTT_URL": "mqtt://127.0.0.1:1"})
    assert done.returncode == 0
    assert "usage: python -m ingest" in done.stdout
    assert "rollup" in done.stdout
    assert "connect" not in done.stderr
    assert run("rollup", "--help").returncode == 0


def test_cli_rejects_a_bad_date() -> None:
    done = run("rollup", "--since", "yesterday")
    assert done.returncode == 2
    assert "expected 2026-01-01" in done.stderr


def test_cli_rollup_rebuilds_a_range_prints_a_summary_and_is_idempotent(influxd: Influxd, db: str,
                                                                           tmp_path: Path) -> None:
    influxd.write(db, "\n".join(raw_lines()))
    since = datetime.fromtimestamp(T0 / 1000, UTC).isoformat()
    until = datetime.fromtimestamp((T0 + 6 * HOUR_MS) / 1000, UTC).isoformat()
    env = {"INFLUX_URL": influxd.url, "INFLUX_DB": db, "INGEST_SPOOL_DIR": f"{tmp_path}/spool"}
    first = run("rollup", "--since", since, "--until", until, "--chunk-hours", "2", env=env)
    assert first.returncode == 0, first.stderr
    assert "rollup: 6 hours from" in first.stdout
    assert "100% 6/6 hours" in first.stderr  # plain progress lines: stderr is not a terminal
    stored = ref.stored(influxd, db)
    ref.assert_equal(stored, ref.expected(influxd, db))
    again = run("rollup", "--since", since, "--until", until, "--workers", "2", env=env)  # the same, in processes
    assert again.returncode == 0, again.stderr
    assert ref.stored(influxd, db) == stored
