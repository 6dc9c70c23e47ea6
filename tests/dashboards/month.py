"""A simulated month of raw readings, with faults, as ingest writes them, and its figures computed here.

The readings come from the simulator's station model (``simulator.model.StationModel``: people,
chargers and temperatures as functions of seed, station and time), sampled once a minute per
device, encoded by ingest's own line protocol (``ingest.lineprotocol.reading``). The faults are
the model's (heating failure, charger fault, sensor drop-out) plus two that only change what is
sampled: a network loss (no readings at all) and a door counter reset (entries restart at 0).

:func:`figures` computes every figure of the report straight from these readings, by the
definition in docs/rollups.md and docs/reports.md, without InfluxDB or the rollups, for the test to
compare with the report and the rollups.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from dashboards.report.period import Period, local_hour
from firmware_stubs.exceptions import DriverError
from ingest.lineprotocol import reading
from simulator.model import StationFaults, StationModel, Window
from telemetry.contract import MAX_AGE_MS, Charger, Occupancy, Temperature
from telemetry.registry import Station
from telemetry.storage import HOUR_MS, hour_of

STEP_MS: Final = 60_000
OFFSET_MS: Final = 7_000
"""Readings at 7 s past each minute: one per minute and device."""


@dataclass(slots=True, frozen=True)
class Scenario:
    """What goes wrong at one station: model faults, and silences and a counter reset in ms."""

    faults: StationFaults = field(default_factory=StationFaults)
    silent: tuple[tuple[int, int], ...] = ()
    counter_reset_ms: int | None = None


@dataclass(slots=True)
class Samples:
    """One station's raw readings, as plain tuples."""

    occupancy: list[tuple[int, int, int]] = field(default_factory=list)  # ts, people, entries
    chargers: dict[str, list[tuple[int, int, float, str | None]]] = field(default_factory=dict)  # ts, in use, Wh, fault
    temperature: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # ts, celsius


def window(start_ms: int, hours: float) -> Window:
    return Window(start_ms / 1000, start_ms / 1000 + hours * 3600)


class _Station:
    """Samples one station's model minute by minute, keeping ``seq`` and the door counter's reset."""

    def __init__(self, station: Station, scenario: Scenario, samples: Samples) -> None:
        self.station, self.scenario, self.samples = station, scenario, samples
        self.seq = 0
        self.reset_base: int | None = None

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _entries(self, model: StationModel, ts: int) -> int:
        reset = self.scenario.counter_reset_ms
        if reset is not None and ts >= reset and self.reset_base is None:
            self.reset_base = model.people(reset / 1000).entries or 0  # the counter restarts from 0 here
        return (model.people(ts / 1000).entries or 0) - (self.reset_base or 0)

    def readings(self, model: StationModel, ts: int) -> Iterator[Occupancy | Charger | Temperature]:
        entries = self._entries(model, ts)
        people = model.people(ts / 1000).people
        self.samples.occupancy.append((ts, people, entries))
        yield Occupancy(ts=ts, seq=self._next_seq(), people=people, entries=entries, exits=0)
        for spec in self.station.chargers:
            c = model.charger(spec.id, ts / 1000)
            self.samples.chargers.setdefault(spec.id, []).append((ts, c.sockets_in_use, c.energy_wh, c.fault))
            yield Charger(ts=ts, seq=self._next_seq(), charger_id=spec.id, sockets_in_use=c.sockets_in_use,
                          power_w=c.power_w, energy_wh=c.energy_wh, fault=c.fault)
        for sensor in self.station.sensors:
            try:
                t = model.temperature(sensor, ts / 1000)
            except DriverError:  # the model's sensor drop-out: no reading
                continue
            self.samples.temperature.setdefault(sensor, []).append((ts, t.celsius))
            yield Temperature(ts=ts, seq=self._next_seq(), sensor=sensor, celsius=t.celsius,
                              humidity_pct=t.humidity_pct)


def simulate(station: Station, spans: Iterable[tuple[int, int]], scenario: Scenario, *, seed: int = 1
             ) -> tuple[Samples, list[str]]:
    """Readings of ``station`` over each ``[start, end)`` (ms): the samples and their line protocol."""
    sampler, lines = _Station(station, scenario, Samples()), []
    for start, end in spans:
        model = StationModel(station=station, seed=seed, start=start / 1000, faults=scenario.faults)
        for ts in range(start + OFFSET_MS, end, STEP_MS):
            if not any(a <= ts < b for a, b in scenario.silent):
                lines += [reading(station, r) for r in sampler.readings(model, ts)]
    return sampler.samples, lines


@dataclass(slots=True, frozen=True)
class Expected:
    """One station's figures over a period, from its raw readings."""

    visits: int | None
    people_mean: float | None
    people_max: int | None
    hours_full: int
    cold_hours: int
    indoor_min: float | None
    energy_kwh: float
    socket_hours: float
    fault_minutes: int
    occupancy_minutes: int
    device_minutes: int


class _Within:
    """Membership of a time in a period, its bounds computed once (a test asks it a million times)."""

    def __init__(self, period: Period) -> None:
        self.start, self.end = period.start_ms, period.end_ms

    def __call__(self, ts: int) -> bool:
        return self.start <= ts < self.end


def steps(series: list[tuple[int, float]]) -> Iterator[tuple[int, float]]:
    """``(ts, step)`` of a counter: ``max(0, v_i - v_(i-1))`` when the reading before is at most MAX_AGE_MS old."""
    for (t0, v0), (t1, v1) in itertools.pairwise(series):
        if t1 - t0 <= MAX_AGE_MS:
            yield t1, max(0.0, v1 - v0)


def visit_steps(samples: Samples) -> list[tuple[int, float]]:
    return list(steps([(ts, float(entries)) for ts, _, entries in samples.occupancy]))


def _minutes(stamps: Iterable[int], within: _Within) -> int:
    return len({ts // STEP_MS for ts in stamps if within(ts)})


def _hourly(values: Iterable[tuple[int, float]], within: _Within) -> dict[int, list[float]]:
    hours: dict[int, list[float]] = defaultdict(list)
    for ts, v in values:
        if within(ts):
            hours[hour_of(ts)].append(v)
    return hours


def figures(station: Station, samples: Samples, period: Period) -> Expected:
    """The report's figures of one station, by the definitions, from the raw readings."""
    _in = _Within(period)
    occupancy = [(ts, people) for ts, people, _ in samples.occupancy if _in(ts)]
    indoor = [(ts, c) for ts, c in samples.temperature.get("indoor", []) if _in(ts)]
    chargers = samples.chargers.values()
    visits = [step for ts, step in visit_steps(samples) if _in(ts)]
    return Expected(
        visits=round(sum(visits)) if occupancy else None,
        people_mean=sum(p for _, p in occupancy) / len(occupancy) if occupancy else None,
        people_max=max((p for _, p in occupancy), default=None),
        hours_full=sum(max(v) >= station.capacity for v in _hourly(occupancy, _in).values()),
        cold_hours=sum(sum(v) / len(v) < 16.0 for v in _hourly(indoor, _in).values()),
        indoor_min=min((c for _, c in indoor), default=None),
        energy_kwh=sum(step for c in chargers for ts, step in steps([(t, wh) for t, _, wh, _ in c])
                       if _in(ts)) / 1000,
        socket_hours=sum(sum(v) / len(v) for c in chargers
                         for v in _hourly([(t, float(n)) for t, n, _, _ in c], _in).values()),
        fault_minutes=_minutes((t for c in chargers for t, _, _, fault in c if fault), _in),
        occupancy_minutes=_minutes((ts for ts, _ in occupancy), _in),
        device_minutes=_minutes((ts for ts, _ in occupancy), _in)
        + sum(_minutes((t for t, *_ in c), _in) for c in chargers)
        + sum(_minutes((t for t, _ in s), _in) for s in samples.temperature.values()),
    )


def visits_by(samples: Iterable[Samples], period: Period) -> tuple[list[int], list[int]]:
    """Visits per Beijing day of ``period`` and per hour of the Beijing day, over all stations."""
    _in = _Within(period)
    days, hours = [0.0] * len(period.days()), [0.0] * 24
    for s in samples:
        for ts, step in visit_steps(s):
            if _in(ts):
                days[(ts - period.start_ms) // (24 * HOUR_MS)] += step
                hours[local_hour(ts)] += step
    return [round(d) for d in days], [round(h) for h in hours]
