"""Simulated drivers: the agent's driver interfaces, answered by a :class:`StationModel`.

They read the model at the simulation's true time (a station whose clock is skewed still sees
the world as it is) and tell the agent when its occupancy may next change, in the agent's own
clock, so the agent wakes exactly then instead of polling.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_stubs.clock import Clock
from firmware_stubs.drivers import ChargerState, Drivers, PeopleCount, TemperatureSample
from simulator.model import StationModel


@dataclass(slots=True, frozen=True)
class SimOccupancy:
    model: StationModel
    world: Clock
    agent: Clock

    def read(self) -> PeopleCount:
        return self.model.people(self.world.time())

    def next_change(self) -> float | None:
        return self.model.next_change() + (self.agent.time() - self.world.time())


@dataclass(slots=True, frozen=True)
class SimCharger:
    charger_id: str
    model: StationModel
    world: Clock

    def read(self) -> ChargerState:
        return self.model.charger(self.charger_id, self.world.time())


@dataclass(slots=True, frozen=True)
class SimTemperature:
    sensor: str
    model: StationModel
    world: Clock

    def read(self) -> TemperatureSample:
        return self.model.temperature(self.sensor, self.world.time())


def sim_drivers(model: StationModel, *, world: Clock, agent: Clock) -> Drivers:
    """Drivers for every device of the model's station."""
    station = model.station
    return Drivers(
        occupancy=SimOccupancy(model, world, agent),
        chargers=tuple(SimCharger(c.id, model, world) for c in station.chargers),
        sensors=tuple(SimTemperature(s, model, world) for s in station.sensors),
    )
