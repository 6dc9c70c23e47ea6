"""The stub drivers: values from a file (re-read when it changes) or from text, failures on demand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firmware_stubs.drivers import ChargerState, PeopleCount, StubValues, TemperatureSample, stub_drivers
from firmware_stubs.exceptions import DriverError
from telemetry.registry import Station


def test_stub_drivers_read_a_yaml_file_and_follow_its_changes(tmp_path: Path, station: Station) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("occupancy: {people: 3, entries: 10, exits: 7}\n"
                    "chargers: {C1: {sockets_in_use: 2, power_w: 410.5, energy_wh: 1234.5, fault: E07}}\n"
                    "temperature: {indoor: {celsius: 18.5, humidity_pct: 40}}\n")
    drivers = stub_drivers(station, StubValues(path=path))
    assert drivers.occupancy is not None
    assert drivers.occupancy.read() == PeopleCount(3, 10, 7)
    assert drivers.occupancy.next_change() is None
    c1, c2 = drivers.chargers
    assert (c1.charger_id, c1.read()) == ("C1", ChargerState(2, 410.5, 1234.5, "E07"))
    assert (c2.charger_id, c2.read()) == ("C2", ChargerState(0, 0.0, 0.0))  # not in the file: idle
    indoor, outdoor = drivers.sensors
    assert (indoor.read(), outdoor.read()) == (TemperatureSample(18.5, 40), TemperatureSample(-5.0))
    path.write_text('{"occupancy": {"people": 4}, "chargers": {"C2": {"error": "no answer on RS-485"}}}')
    os.utime(path, ns=(0, 10**9))  # a new mtime even on a coarse clock
    assert drivers.occupancy.read() == PeopleCount(4)
    with pytest.raises(DriverError, match="charger C2: no answer on RS-485"):
        c2.read()


def test_stub_drivers_fail_while_the_file_is_missing_or_invalid(tmp_path: Path, station: Station) -> None:
    path = tmp_path / "values.json"
    drivers = stub_drivers(station, StubValues(path=path))
    assert drivers.occupancy is not None
    with pytest.raises(DriverError, match="occupancy"):
        drivers.occupancy.read()
    path.write_text('{"occupancy": {"people": -1}}')
    with pytest.raises(DriverError, match="not a valid stub document"):
        drivers.occupancy.read()
    path.write_text('{"occupancy": {"people": 1}}')
    assert drivers.occupancy.read() == PeopleCount(1)


def test_stub_values_from_text_are_validated_up_front(station: Station) -> None:
    drivers = stub_drivers(station, StubValues(text='{"temperature": {"outdoor": {"celsius": -11.5}}}'))
    assert drivers.sensors[1].read() == TemperatureSample(-11.5)
    with pytest.raises(ValueError, match="AGENT_STUB_VALUES"):
        StubValues(text='{"occupancy": {"persons": 1}}')
