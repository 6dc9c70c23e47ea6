"""``make-registry``: synthetic registries that the registry parser (and so ingest) accepts."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from simulator.synthetic import make_registry
from telemetry.registry import load, parse
from tests.rig import ROOT, child_env


def test_make_registry_writes_a_valid_registry_spread_like_the_real_one() -> None:
    reg = parse(make_registry(600, seed=4))
    assert len(reg) == len(reg.reporting) == 600
    districts = Counter(s.district for s in reg.stations)
    assert districts.most_common(1)[0][0] == "kongtong"
    assert len(districts) == 7
    assert 0.25 < sum(s.kind == "smart" for s in reg.stations) / 600 < 0.42
    assert all(s.chargers and s.sensors and s.capacity > 0 for s in reg.stations)
    assert make_registry(600, seed=4) == make_registry(600, seed=4)


def test_make_registry_command_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "stations.yaml"
    env = child_env()
    subprocess.run([sys.executable, "-m", "simulator", "make-registry", "--stations", "5", "-o", str(out)],
                   cwd=ROOT, env=env, check=True, timeout=30)
    assert len(load(out).reporting) == 5


def test_synthetic_registry_as_json_is_the_same_registry() -> None:
    assert parse(make_registry(50, as_json=True)).stations == parse(make_registry(50)).stations
