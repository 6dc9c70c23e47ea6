"""Fault scenarios from flags and files, checked against the stations they name."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from simulator.exceptions import ScenarioError
from simulator.faults import (
    ChargerFault,
    ClockSkew,
    NetworkLoss,
    Reboot,
    SensorDropout,
    load_scenario,
    parse_duration,
    parse_fault_flag,
)
from telemetry import registry

STATIONS = registry.load().reporting


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("30m", 1800.0), ("1h30m", 5400.0), ("2d", 172800.0), ("2.5h", 9000.0), ("-4m", -240.0),
    ("+10s", 10.0), (45, 45.0),
])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "5x", "1h-3m", True])
def test_durations_refused(text: str | bool) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_fault_flags() -> None:
    assert parse_fault_flag("network_loss", "PL-KT-001@30m+30m") == NetworkLoss(station="PL-KT-001", at=1800,
                                                                               for_=1800)
    assert parse_fault_flag("reboot", "PL-KT-002@1h") == Reboot(station="PL-KT-002", at=3600, for_=30)
    assert parse_fault_flag("charger_fault", "PL-KT-003/C2:E12@10m+1h") == ChargerFault(
        station="PL-KT-003", charger="C2", code="E12", at=600, for_=3600)
    assert parse_fault_flag("sensor_dropout", "PL-KT-004/indoor@0s+5m") == SensorDropout(
        station="PL-KT-004", sensor="indoor", at=0, for_=300)
    skew = parse_fault_flag("clock_skew", "PL-KT-005=-30s")
    assert skew == ClockSkew(station="PL-KT-005", skew=-30)
    assert (skew.at, skew.for_) == (0.0, math.inf)
    with pytest.raises(ScenarioError, match="--reboot PL-KT-001@soon"):
        parse_fault_flag("reboot", "PL-KT-001@soon")


def test_scenario_file_and_its_checks(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("""
malformed: {rate: 0.01, kinds: [bad_json, too_large]}
faults:
  - {kind: network_loss, station: PL-KT-001, at: 30m, for: 30m}
  - {kind: heating_failure, station: PL-KT-002, at: 1h, for: 3h}
  - {kind: sensor_flatline, station: PL-KT-003, sensor: outdoor, at: 0s, for: 2h}
""")
    scenario = load_scenario(path)
    assert scenario.malformed.rate == 0.01
    assert [k.value for k in scenario.malformed.kinds] == ["bad_json", "too_large"]
    scenario.check(STATIONS)
    faults = scenario.station_faults("PL-KT-002", 1000.0)
    assert [(w.start, w.end) for w in faults.heating] == [(4600.0, 15400.0)]
    path.write_text("""
faults:
  - {kind: sensor_dropout, station: PL-KT-001, sensor: attic, at: 1m, for: 1m}
  - {kind: charger_fault, station: PL-KT-001, charger: C9, at: 1m, for: 1m}
  - {kind: reboot, station: PL-XX-001, at: 1m}
""")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path).check(STATIONS)
    assert "no sensor 'attic'" in str(err.value)
    assert "no charger 'C9'" in str(err.value)
    assert "PL-XX-001" in str(err.value)
    path.write_text("faults: [{kind: earthquake, station: PL-KT-001}]")
    with pytest.raises(ScenarioError, match="invalid scenario"):
        load_scenario(path)
