"""The simulated station: a Pingliang winter day, its faults, and determinism however it is read."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_stubs.exceptions import DriverError
from simulator.model import StationFaults, StationModel, Window, local_hour
from telemetry import registry
from telemetry.registry import Station

MIDNIGHT = datetime(2025, 1, 14, tzinfo=timezone(timedelta(hours=8))).timestamp()  # local midnight
REPORTING = registry.load().reporting
SMART = next(s for s in REPORTING if s.id == "PL-KT-001")


def minutes(start: float, hours: float, step: float = 60.0) -> list[float]:
    return [start + i * step for i in range(int(hours * 3600 / step))]


def _people_over_a_day(station: Station, seed: int) -> list[int]:
    model = StationModel(station=station, seed=seed, start=MIDNIGHT)
    out = []
    for t in minutes(MIDNIGHT, 24, step=120):
        count = model.people(t)
        assert count.entries is not None
        assert count.exits is not None
        assert count.entries - count.exits == count.people
        out.append(count.people)
    return out


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), capacity=st.integers(1, 8))
def test_model_people_never_exceed_capacity_and_the_door_counters_agree(seed: int, capacity: int) -> None:
    people = _people_over_a_day(SMART.model_copy(update={"capacity": capacity}), seed)
    assert 0 <= min(people) <= max(people) <= capacity


def test_model_turns_people_away_when_full() -> None:
    people = _people_over_a_day(SMART.model_copy(update={"capacity": 2}), 1)
    assert people.count(2) >= 10, "a two-place station should be full at the meal peaks"


def test_model_riders_at_meal_peaks_and_sanitation_workers_early() -> None:
    by_hour: dict[int, list[int]] = {h: [] for h in range(24)}
    for station in REPORTING[:15]:
        model = StationModel(station=station, seed=3, start=MIDNIGHT)
        for t in minutes(MIDNIGHT, 72, step=300):
            by_hour[int(local_hour(t))].append(model.people(t).people)
    mean = {h: statistics.fmean(v) for h, v in by_hour.items()}
    night = statistics.fmean(mean[h] for h in (1, 2, 3))
    assert statistics.fmean(mean[h] for h in (11, 12, 13)) > 4 * night
    assert statistics.fmean(mean[h] for h in (17, 18, 19)) > 4 * night
    assert statistics.fmean(mean[h] for h in (5, 6)) > 2 * night
    assert mean[12] > mean[15]
    assert mean[18] > mean[15]


def test_model_chargers_follow_occupancy_and_meters_only_go_up() -> None:
    model = StationModel(station=SMART, seed=5, start=MIDNIGHT)
    sockets = {c.id: c.sockets for c in SMART.chargers}
    last = dict.fromkeys(sockets, 0.0)
    in_use: dict[str, list[int]] = {"peak": [], "night": []}
    for t in minutes(MIDNIGHT, 48):
        for cid, total in sockets.items():
            state = model.charger(cid, t)
            assert 0 <= state.sockets_in_use <= total
            assert (state.power_w > 0) == (state.sockets_in_use > 0)
            assert state.energy_wh >= last[cid], "an energy meter went down"
            last[cid] = state.energy_wh
            h = local_hour(t)
            if 11.5 <= h < 13.5 or 17.5 <= h < 20:
                in_use["peak"].append(state.sockets_in_use)
            elif 1 <= h < 4:
                in_use["night"].append(state.sockets_in_use)
    assert statistics.fmean(in_use["peak"]) > 3 * statistics.fmean(in_use["night"]) + 0.2


def test_model_temperatures_of_a_pingliang_winter() -> None:
    model = StationModel(station=SMART, seed=9, start=MIDNIGHT)
    times = minutes(MIDNIGHT, 72, step=600)
    outdoor = {t: model.temperature("outdoor", t).celsius for t in times}
    indoor = [model.temperature("indoor", t).celsius for t in times]
    assert -15.0 <= min(outdoor.values()) <= -8.0
    assert 0.0 <= max(outdoor.values()) <= 6.0
    assert 5 <= local_hour(min(outdoor, key=outdoor.__getitem__)) <= 8, "coldest before dawn"
    assert 13 <= local_hour(max(outdoor, key=outdoor.__getitem__)) <= 16, "warmest mid-afternoon"
    assert min(indoor) >= 16.0
    assert max(indoor) <= 22.0
    highland = next(s for s in REPORTING if s.district == "zhuanglang")
    valley = next(s for s in REPORTING if s.district == "jingchuan")
    cold = StationModel(station=highland, seed=9, start=MIDNIGHT)
    mild = StationModel(station=valley, seed=9, start=MIDNIGHT)
    assert statistics.fmean(cold.outdoor(t) for t in times) < statistics.fmean(mild.outdoor(t) for t in times) - 1


def test_model_heating_failure_falls_towards_outdoor_and_recovers() -> None:
    fail = Window(MIDNIGHT + 8 * 3600, MIDNIGHT + 14 * 3600)
    model = StationModel(station=SMART, seed=2, start=MIDNIGHT, faults=StationFaults(heating=[fail]))
    before = model.temperature("indoor", fail.start).celsius
    during = model.temperature("indoor", fail.end - 60).celsius
    outside = model.temperature("outdoor", fail.end - 60).celsius
    assert before > 16.0
    assert outside < during < before - 6.0, "6 hours without heating should cool it well down"
    assert model.temperature("indoor", fail.end + 3 * 3600).celsius > 16.0, "it recovers when the heating is back"


def test_model_charger_fault_and_sensor_flatline_and_dropout() -> None:
    window = Window(MIDNIGHT + 11 * 3600, MIDNIGHT + 14 * 3600)
    faults = StationFaults(chargers={"C1": [(window, "E07")]}, flatline={"outdoor": [window]},
                           dropout={"indoor": [window]})
    model = StationModel(station=SMART, seed=4, start=MIDNIGHT, faults=faults)
    energy = model.charger("C1", window.start).energy_wh
    flat = model.temperature("outdoor", window.start + 60).celsius
    for t in minutes(window.start + 60, 2.9):
        state = model.charger("C1", t)
        assert (state.fault, state.power_w, state.energy_wh) == ("E07", 0.0, energy)
        assert model.temperature("outdoor", t).celsius == flat
        with pytest.raises(DriverError, match="sensor indoor"):
            model.temperature("indoor", t)
    assert model.charger("C1", window.end).fault is None
    assert model.temperature("outdoor", window.end + 60).celsius != flat
    model.temperature("indoor", window.end)


@pytest.mark.parametrize("station", [SMART, REPORTING[-1]], ids=lambda s: s.id)
def test_model_is_the_same_however_often_it_is_read(station: Station) -> None:
    often = StationModel(station=station, seed=11, start=MIDNIGHT)
    seldom = StationModel(station=station, seed=11, start=MIDNIGHT)
    other = StationModel(station=station, seed=12, start=MIDNIGHT)

    def sample(model: StationModel, t: float) -> tuple[object, ...]:
        return (model.people(t), *(model.charger(c.id, t) for c in station.chargers),
                *(model.temperature(s, t) for s in station.sensors))

    every_minute = {t: sample(often, t) for t in minutes(MIDNIGHT, 12)}
    every_seventh = {t: sample(seldom, t) for t in minutes(MIDNIGHT, 12, step=420)}
    assert every_seventh == {t: every_minute[t] for t in every_seventh}
    assert every_seventh != {t: sample(other, t) for t in every_seventh}
