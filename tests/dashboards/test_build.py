"""``python -m dashboards build``: the committed provisioning files are what the code produces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from dashboards import provisioning
from telemetry.registry import load
from tests.rig import ROOT, child_env


def _run(*args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = child_env(env_vars)
    return subprocess.run([sys.executable, "-m", "dashboards", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_committed_provisioning_files_are_what_the_code_builds() -> None:
    stale = provisioning.stale(load())
    assert not stale, f"run `python -m dashboards build` and commit: stale {stale}"


def test_build_writes_every_file_and_check_finds_a_changed_or_extra_one(tmp_path: Path) -> None:
    built = _run("build", "--output", str(tmp_path))
    assert built.returncode == 0, built.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(provisioning.render(load()))
    assert _run("build", "--check", "--output", str(tmp_path)).returncode == 0

    overview = tmp_path / "dashboards/yizhan/overview.json"
    overview.write_text(overview.read_text(encoding="utf-8").replace("Stations online", "Stations up"), encoding="utf-8")
    (tmp_path / "dashboards/yizhan/old.json").write_text("{}", encoding="utf-8")
    checked = _run("build", "--check", "--output", str(tmp_path))
    assert checked.returncode == 1
    assert "dashboards/yizhan/overview.json" in checked.stderr
    assert "dashboards/yizhan/old.json" in checked.stderr


def test_build_follows_stations_file(tmp_path: Path) -> None:
    """Another city's registry: the map and the completeness groups are built from its stations."""
    stations = [s.model_dump(mode="json") for s in load().reporting[:2]]
    registry = tmp_path / "stations.yaml"
    registry.write_text(yaml.safe_dump({"stations": stations}, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "out"
    built = _run("build", "--output", str(out), STATIONS_FILE=str(registry))
    assert built.returncode == 0, built.stderr
    gazetteer = json.loads((out / "gazetteer/yizhan-stations.json").read_text(encoding="utf-8"))
    assert [g["key"] for g in gazetteer] == [s["id"] for s in stations]
    completeness = (out / "dashboards/yizhan/completeness.json").read_text(encoding="utf-8")
    assert "PL-KT-003" not in completeness
    assert stations[0]["id"] in completeness
