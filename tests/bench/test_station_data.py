"""The long-range bench's generator: ingest's line protocol, the agents' rates, counters that behave."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

import pytest

from bench.station_data import CHARGER_MS, DAY_MS, MINUTE_MS, REBOOT_DOWN_MS, StationDays
from ingest import lineprotocol
from telemetry.contract import Charger, Occupancy, Status, Temperature
from telemetry.registry import Station, load

STATIONS = [s for s in load().reporting if s.id in ("PL-KT-001", "PL-KT-007", "PL-HT-004")]
START = 1_795_000_000_000 // DAY_MS * DAY_MS
DAYS = 2
DAYS_COUNTERS = 60


@dataclass(slots=True, frozen=True)
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, str]
    ts: int


def parse(line: str) -> Point:
    """Our lines only: no spaces or commas inside tag or string values."""
    series, fields, ts = line.split(" ")
    measurement, *tags = series.split(",")
    return Point(measurement, dict(t.split("=", 1) for t in tags), dict(f.split("=", 1) for f in fields.split(",")),
                 int(ts))


def as_ingest_writes(station: Station, p: Point) -> str:
    """The same values through the contract's models and ``ingest/lineprotocol.py``."""
    f, ts = p.fields, p.ts
    match p.measurement:
        case "occupancy":
            return lineprotocol.reading(station, Occupancy(ts=ts, seq=int(f["seq"][:-1]), people=int(f["people"][:-1]),
                                                           entries=int(f["entries"][:-1]), exits=int(f["exits"][:-1])))
        case "charger":
            return lineprotocol.reading(station, Charger(
                ts=ts, seq=int(f["seq"][:-1]), charger_id=p.tags["charger"], sockets_in_use=int(f["sockets_in_use"][:-1]),
                power_w=float(f["power_w"]), energy_wh=float(f["energy_wh"]), fault=f.get("fault", "").strip('"') or None))
        case "temperature":
            return lineprotocol.reading(station, Temperature(ts=ts, seq=int(f["seq"][:-1]), sensor=p.tags["sensor"],
                                                             celsius=float(f["celsius"]),
                                                             humidity_pct=float(f["humidity_pct"])))
        case _:
            return lineprotocol.status(station, Status(
                state="online", ts=ts, uptime_s=int(f["uptime_s"][:-1]), buffered=0, dropped=0, driver_errors=0,
                fw=f["fw"].strip('"'), config_rev=f["config_rev"].strip('"')), 0)


@pytest.fixture(scope="module")
def days() -> list[list[list[str]]]:
    """Lines per day, per station."""
    generator = StationDays(STATIONS, seed=1, start_ms=START)
    return [list(generator.day(START + d * DAY_MS)) for d in range(DAYS)]


def points(days: list[list[list[str]]], station: int) -> list[Point]:
    return [parse(line) for day in days for line in day[station]]


def test_station_data_lines_are_the_lines_ingest_writes_for_the_same_readings(days: list[list[list[str]]]) -> None:
    for i, station in enumerate(STATIONS):
        lines = [line for day in days for line in day[i]]
        assert [as_ingest_writes(station, parse(line)) for line in lines] == lines


def test_station_data_sends_at_the_agents_rates(days: list[list[list[str]]]) -> None:
    """Every 30 s per charger, every 60 s per sensor and for the status, occupancy also on change."""
    for i, station in enumerate(STATIONS):
        by_series: dict[tuple[str, str], set[int]] = defaultdict(set)
        for p in points(days, i):
            by_series[p.measurement, p.tags.get("charger") or p.tags.get("sensor") or ""].add(p.ts)
        assert len(by_series) == 2 + len(station.chargers) + len(station.sensors)
        for (measurement, _), ts in by_series.items():
            interval = CHARGER_MS if measurement == "charger" else MINUTE_MS
            expected = DAYS * DAY_MS // interval
            down = DAYS * (REBOOT_DOWN_MS // interval)  # at most one reboot a day
            if measurement == "occupancy":
                assert len(ts) > expected + 100, (station.id, len(ts))
            else:
                assert expected - down <= len(ts) <= expected, (station.id, measurement, len(ts))


def test_station_data_seq_numbers_every_reading_of_a_station_once_in_time_order(days: list[list[list[str]]]) -> None:
    for i in range(len(STATIONS)):
        readings = sorted((int(p.fields["seq"][:-1]), p.ts) for p in points(days, i) if "seq" in p.fields)
        assert [seq for seq, _ in readings] == list(range(1, len(readings) + 1))
        assert all(a <= b for (_, a), (_, b) in itertools.pairwise(readings))


def _fields(lines: list[str], measurement: str) -> list[dict[str, str]]:
    """The fields of one measurement's lines, oldest first (no tags parsed: the test's one station)."""
    found = sorted((int(ts), fields) for _, fields, ts in (x.split(" ") for x in lines if x.startswith(measurement)))
    return [dict(f.split("=", 1) for f in fields.split(",")) for _, fields in found]


def _occupancy(lines: list[str]) -> list[tuple[int, int, int]]:
    return [(int(f["people"][:-1]), int(f["entries"][:-1]), int(f["exits"][:-1])) for f in _fields(lines, "occupancy,")]


def test_station_data_counters_only_go_up_but_at_a_reboot_and_people_fit() -> None:
    station = STATIONS[0]
    generator = StationDays([station], seed=1, start_ms=START)
    lines = [line for d in range(DAYS_COUNTERS) for station_lines in generator.day(START + d * DAY_MS) for line in station_lines]
    values = _occupancy(lines)
    assert all(0 <= people <= station.capacity for people, _, _ in values)
    resets = 0
    for (p0, e0, x0), (p1, e1, x1) in itertools.pairwise(values):
        if e1 >= e0 and x1 >= x0:
            assert p1 - p0 == (e1 - e0) - (x1 - x0), "people change by the doors' steps"
        else:
            assert (e1 < e0, x1 < x0) == (True, True), "a reboot resets both counters"
            resets += 1
    assert 1 <= resets <= 8, f"the odd reboot in 60 days: {resets}"
    energy = {c.id: [float(f["energy_wh"]) for f in _fields([x for x in lines if f",charger={c.id} " in x], "charger,")]
              for c in station.chargers}
    assert all(a <= b for e in energy.values() for a, b in itertools.pairwise(e)), "an energy meter only goes up"
    assert all(e[-1] > e[0] for e in energy.values()), "every charger draws some energy in 60 days"


def test_station_data_is_the_same_for_the_same_seed(days: list[list[list[str]]]) -> None:
    again = StationDays(STATIONS, seed=1, start_ms=START)
    assert list(again.day(START)) == days[0]
    other = StationDays(STATIONS, seed=2, start_ms=START)
    assert list(other.day(START)) != days[0]
