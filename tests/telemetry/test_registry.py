"""The station registry: the shipped file, and clear errors naming the station."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry import registry
from telemetry.registry import RegistryError, StationKind

GOOD = """stations:
  - id: PL-KT-001
    name: 平凉市工人文化宫驿站
    district: kongtong
    kind: smart
    capacity: 20
    location: {lat: 35.543, lon: 106.665}
    chargers: [{id: C1, sockets: 10}, {id: C2, sockets: 10}]
    sensors: [indoor, outdoor]
"""


def one(**changes: str) -> str:
    text = GOOD
    for key, value in changes.items():
        old = next(line for line in GOOD.splitlines() if line.strip().startswith(f"{key}:") or
                   line.strip().startswith(f"- {key}:"))
        text = text.replace(old, old.split(":")[0] + ": " + value)
    return text


def test_registry_shipped_file_has_142_stations_45_reporting() -> None:
    reg = registry.load()
    assert len(reg) == 142
    kinds = [s.kind for s in reg.stations]
    assert (kinds.count(StationKind.SMART), kinds.count(StationKind.VISUAL), kinds.count(StationKind.BASIC)) == (
        15, 30, 97)
    assert len(reg.reporting) == 45
    assert {s.district for s in reg.stations} == set(registry.DISTRICT_CODES)
    first = reg.get("PL-KT-001")
    assert first is not None
    assert first.name == "平凉市工人文化宫驿站"
    assert first.sockets("C2") == 10
    assert first.sockets("C9") is None


def test_registry_format_example_parses() -> None:
    reg = registry.parse(GOOD)
    assert reg.stations[0].chargers[1].sockets == 10


@pytest.mark.parametrize(("text", "message"), [
    (GOOD + GOOD.split("\n", 1)[1], "station #2 (PL-KT-001): duplicate id PL-KT-001 (first at station #1)"),
    (one(district="xian"), "station #1 (PL-KT-001): district: Value error, unknown district 'xian'"),
    (one(kind="deluxe"), "station #1 (PL-KT-001): kind: Input should be 'smart', 'visual' or 'basic'"),
    (one(id="PL-KT-01"), "station #1 (PL-KT-01): id: Value error, malformed id"),
    (one(id="PL-HT-001"), "station #1 (PL-HT-001): Value error, id PL-HT-001 does not carry the code KT"),
    (one(chargers="[{id: C1, sockets: 0}]"), ("station #1 (PL-KT-001): chargers.0.sockets: Input should be "
                                             "greater than or equal to 1")),
    (one(sensors="[indoor, indoor]"), "station #1 (PL-KT-001): Value error, duplicate sensor indoor"),
    ("stations: 3", "expected a mapping with a 'stations' list"),
    ("stations: [", "not valid YAML"),
])
def test_registry_errors_name_the_station(text: str, message: str) -> None:
    with pytest.raises(RegistryError) as info:
        registry.parse(text, "x.yaml")
    assert message in str(info.value)


def test_registry_lists_every_problem_not_just_the_first() -> None:
    text = one(district="xian") + GOOD.split("\n", 1)[1].replace("PL-KT-001", "bad").replace("smart", "odd")
    with pytest.raises(RegistryError) as info:
        registry.parse(text)
    assert "3 problem(s)" in str(info.value)


def test_registry_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read the station registry"):
        registry.load(tmp_path / "nope.yaml")


def test_registry_in_json_loads_the_same_stations() -> None:
    import json  # noqa: PLC0415

    import yaml  # noqa: PLC0415

    doc = yaml.safe_load(GOOD)
    assert registry.parse(json.dumps(doc)).stations == registry.parse(GOOD).stations
    assert registry.parse("{stations: []}").stations == ()  # YAML flow style, not JSON
