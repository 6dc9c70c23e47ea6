"""A station's winter day in Pingliang, simulated: people, e-bike chargers and temperatures.

Everything is a deterministic function of the seed, the station and simulated time, never of
when or how often it is read, so the same seed gives the same readings:

- People arrive as a Poisson process whose rate follows the day (Beijing time, UTC+8) and the
  square root of capacity: delivery riders at the meal peaks (about 11:00-13:30 and 17:00-20:00),
  sanitation workers early (about 05:00-07:00, in small groups), a trickle of others by day.
  Each stays a while; when the station is full, newcomers are turned away, so people never
  exceed capacity. ``entries``/``exits`` are cumulative door counters.
- Some arrivals plug in an e-bike (riders most often); a session draws 150-350 W on one socket
  until its owner leaves (in the evening some leave it charging for a few hours). Energy meters
  integrate the power, so they only go up; a faulted charger draws nothing and reports its code.
- Outdoors: about -12 °C before dawn to +3 °C mid-afternoon, with per-district offsets and a
  smooth day-to-day drift of the whole city's weather. Indoors: heated to 20 °C by day, 17.5 °C
  at night, plus a little per person present, which keeps it within 16-22 °C; when the heating
  fails it falls towards the outdoor temperature (time constant 3 h) and recovers when the
  heating is back.

Time is simulated epoch seconds; the model advances lazily to whatever moment it is read at.
Faults (heating, chargers, sensors) are windows of simulated time, part of the same function.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from firmware_stubs.drivers import ChargerState, PeopleCount, TemperatureSample
from firmware_stubs.exceptions import DriverError
from telemetry.registry import Station

TZ_OFFSET: Final = 8 * 3600
"""Pingliang keeps Beijing time."""
GRID: Final = 60.0
"""Indoor temperature is integrated on this grid (seconds)."""
WARM_UP: Final = 3 * 3600.0
"""The model starts this long before the run, so the run opens on a station in its normal state."""

DISTRICT_OFFSET: Final = {  # °C against Kongtong: the higher loess plateau counties are colder
    "kongtong": 0.0, "huating": -0.8, "jingchuan": 0.6, "lingtai": 0.4, "chongxin": -0.5,
    "zhuanglang": -1.5, "jingning": -1.2,
}


def unit(*key: object) -> float:
    """A uniform number in [0, 1) that depends only on ``key`` (noise that no read order changes)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def local_hour(t: float) -> float:
    return ((t + TZ_OFFSET) % 86400.0) / 3600.0


def window(h: float, start: float, end: float, ramp: float = 0.5) -> float:
    """1 within [start, end] (hours), cosine ramps of ``ramp`` hours on either side, else 0."""
    if h <= start - ramp or h >= end + ramp:
        return 0.0
    if h < start:
        return 0.5 - 0.5 * math.cos(math.pi * (h - start + ramp) / ramp)
    if h > end:
        return 0.5 + 0.5 * math.cos(math.pi * (h - end) / ramp)
    return 1.0


def day_shape(h: float) -> float:
    """-1 at the coldest moment (06:30) to +1 at the warmest (14:30)."""
    if 6.5 <= h < 14.5:
        return -math.cos(math.pi * (h - 6.5) / 8.0)
    return math.cos(math.pi * ((h - 14.5) % 24.0) / 16.0)


@dataclass(slots=True, frozen=True)
class Visitor:
    """A kind of visitor: arrivals per hour at a 20-place station, stay and charging habits."""

    name: str
    stay_min_s: float
    stay_mean_s: float
    stay_max_s: float
    charge_p: float
    group_max: int
    peak_rate: float

    def rate(self, h: float) -> float:
        match self.name:
            case "rider":
                return 22.0 * window(h, 11.0, 13.5) + 16.0 * window(h, 17.0, 20.0) + 1.0 * window(h, 9.0, 21.5)
            case "sanitation":
                return 9.0 * window(h, 5.0, 7.0, 0.25) + 0.5 * window(h, 13.0, 14.5)
            case _:
                return 3.0 * window(h, 8.0, 21.0) + 0.3


VISITORS: Final = (
    Visitor("rider", 8 * 60, 14 * 60, 60 * 60, 0.55, 1, 23.0),
    Visitor("sanitation", 20 * 60, 15 * 60, 90 * 60, 0.3, 3, 9.5),
    Visitor("other", 10 * 60, 25 * 60, 120 * 60, 0.1, 1, 3.3),
)
_PEAK: Final = sum(v.peak_rate for v in VISITORS)


def _pick(x: float, h: float) -> Visitor | None:
    """Thinning: which visitor an arrival candidate is, or None (``x`` uniform in [0, _PEAK))."""
    for visitor in VISITORS:
        rate = visitor.rate(h)
        if x < rate:
            return visitor
        x -= rate
    return None


@dataclass(slots=True, frozen=True)
class Window:
    """A fault active in [start, end) of simulated time."""

    start: float
    end: float

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(slots=True)
class StationFaults:
    """The time-window faults of one station's hardware."""

    heating: list[Window] = field(default_factory=list)
    chargers: dict[str, list[tuple[Window, str]]] = field(default_factory=dict)
    flatline: dict[str, list[Window]] = field(default_factory=dict)
    dropout: dict[str, list[Window]] = field(default_factory=dict)


def _active(windows: Sequence[Window], t: float) -> Window | None:
    return next((w for w in windows if w.covers(t)), None)


def _uptime(windows: Sequence[tuple[Window, str]], a: float, b: float) -> float:
    """Seconds of [a, b) outside the fault windows."""
    total = b - a
    for w, _ in windows:
        total -= max(0.0, min(b, w.end) - max(a, w.start))
    return max(0.0, total)


@dataclass(slots=True)
class _Charger:
    id: str
    sockets: int
    faults: list[tuple[Window, str]]
    energy_wh: float
    updated: float
    sessions: dict[int, float] = field(default_factory=dict)  # session -> nominal watts

    @property
    def power(self) -> float:
        return sum(self.sessions.values())

    def settle(self, t: float) -> None:
        """Bring the energy meter to ``t`` at the power drawn since the last change."""
        if t > self.updated:
            self.energy_wh += self.power * _uptime(self.faults, self.updated, t) / 3600.0
            self.updated = t

    def fault(self, t: float) -> str | None:
        return next((code for w, code in self.faults if w.covers(t)), None)


_LEAVE, _UNPLUG = 0, 1


class StationModel:
    """One station's people, chargers and temperatures over simulated time.

    Args:
        station: from the registry (capacity, district, chargers, sensors).
        seed: the simulation's seed.
        start: when the run begins (epoch seconds); the model starts ``WARM_UP`` before.
        faults: windows of heating, charger and sensor faults.
    """

    def __init__(self, *, station: Station, seed: int, start: float, faults: StationFaults | None = None) -> None:
        self.station = station
        self._seed = seed
        self._faults = faults or StationFaults()
        self._rng = random.Random(f"{seed}:{station.id}:events")  # noqa: S311 - simulation, not secrets
        sid = station.id
        # small stations are relatively busier (they are where space is short): rates go with sqrt(capacity)
        self._scale = math.sqrt(station.capacity / 20.0) * (0.6 + 0.8 * unit(seed, sid, "busy"))
        self._site = (unit(seed, sid, "site") - 0.5) * 0.6 + DISTRICT_OFFSET.get(station.district, 0.0)
        self._setpoint_offset = (unit(seed, sid, "setpoint") - 0.5) * 1.0
        t0 = round(start - WARM_UP, 3)
        self._now = t0
        self._people = 0
        self._base = int(unit(seed, sid, "door") * 50_000)
        self._entries = self._exits = 0
        self._events: list[tuple[float, int, int, int]] = []  # (time, order, what, session)
        self._order = 0
        self._session_charger: dict[int, int] = {}
        self._chargers = [
            _Charger(c.id, c.sockets, self._faults.chargers.get(c.id, []),
                     round(5_000 + unit(seed, sid, "meter", c.id) * 200_000, 1), t0) for c in station.chargers]
        self._next_arrival = t0
        self._draw_next_arrival()
        self._grid = math.floor(t0 / GRID) * GRID + GRID
        self._indoor = self._setpoint(t0)
        self._flat: dict[tuple[str, float], TemperatureSample] = {}

    # --- reading -----------------------------------------------------------------------------

    def people(self, t: float) -> PeopleCount:
        self.advance(t)
        return PeopleCount(self._people, self._base + self._entries, self._base + self._exits)

    def next_change(self) -> float:
        """When the number of people may next change (an arrival or a departure)."""
        leave = min((e[0] for e in self._events if e[2] == _LEAVE), default=math.inf) if self._events else math.inf
        return min(self._next_arrival, leave)

    def charger(self, charger_id: str, t: float) -> ChargerState:
        self.advance(t)
        c = next(c for c in self._chargers if c.id == charger_id)
        code = c.fault(t)
        nominal = c.power
        energy = c.energy_wh + nominal * _uptime(c.faults, c.updated, t) / 3600.0
        noise = unit(self._seed, self.station.id, c.id, round(t * 1000))
        power = 0.0 if code or not nominal else nominal * (0.98 + 0.04 * noise)
        return ChargerState(len(c.sessions), round(power, 1), round(energy, 1), code)

    def temperature(self, sensor: str, t: float) -> TemperatureSample:
        self.advance(t)
        if _active(self._faults.dropout.get(sensor, []), t):
            raise DriverError(f"sensor {sensor}", "no response (simulated dropout)")
        flat = _active(self._faults.flatline.get(sensor, []), t)
        if flat is not None:
            return self._flat.setdefault((sensor, flat.start), self._sample(sensor, t, noise=False))
        return self._sample(sensor, t, noise=True)

    def _sample(self, sensor: str, t: float, *, noise: bool) -> TemperatureSample:
        jitter = unit(self._seed, self.station.id, sensor, round(t * 1000)) - 0.5 if noise else 0.0
        if sensor == "outdoor":
            humidity = 65.0 - 20.0 * day_shape(local_hour(t)) + 10.0 * jitter
            return TemperatureSample(round(self.outdoor(t) + 0.3 * jitter, 2), round(min(95.0, max(15.0, humidity)), 1))
        humidity = 32.0 + 0.3 * self._people - 1.5 * (self._indoor - 19.0) + 2.0 * jitter
        return TemperatureSample(round(self._indoor + 0.1 * jitter, 2), round(min(60.0, max(15.0, humidity)), 1))

    def outdoor(self, t: float) -> float:
        """The outdoor temperature without sensor noise."""
        day = (t + TZ_OFFSET) / 86400.0 - 0.5  # day-to-day drift anchored at local noon
        d0 = math.floor(day)
        frac = day - d0
        drift = (1 - frac) * unit(self._seed, "day", d0) + frac * unit(self._seed, "day", d0 + 1)  # one city
        return -4.5 + self._site + 3.0 * (drift - 0.5) + 7.0 * day_shape(local_hour(t))

    def heating_failed(self, t: float) -> bool:
        return _active(self._faults.heating, t) is not None

    def _setpoint(self, t: float) -> float:
        h = local_hour(t)
        return (20.0 if 7.0 <= h < 22.0 else 17.5) + self._setpoint_offset

    # --- the event process -------------------------------------------------------------------

    def advance(self, t: float) -> None:
        """Process every arrival, departure, unplug and temperature step up to ``t``."""
        while True:
            event = self._events[0][0] if self._events else math.inf
            nxt = min(event, self._next_arrival, self._grid)
            if nxt > t:
                break
            self._now = nxt
            if event == nxt:
                _, _, what, session = heapq.heappop(self._events)
                if what == _LEAVE:
                    self._people -= 1
                    self._exits += 1
                else:
                    self._unplug(session, nxt)
            elif self._next_arrival == nxt:
                self._arrive(nxt)
                self._draw_next_arrival()
            else:
                self._step_indoor(nxt)
                self._grid += GRID
        self._now = max(self._now, t)

    def _draw_next_arrival(self) -> None:
        peak = max(_PEAK * self._scale, 1e-9)
        self._next_arrival = round(self._next_arrival + self._rng.expovariate(peak / 3600.0), 3)

    def _arrive(self, t: float) -> None:
        rng, h = self._rng, local_hour(t)
        visitor = _pick(rng.random() * _PEAK, h)
        if visitor is None:
            return  # thinned: nobody came at this moment
        for _ in range(rng.randint(1, visitor.group_max)):
            stay = min(visitor.stay_max_s, visitor.stay_min_s + rng.expovariate(1.0 / visitor.stay_mean_s))
            plug = rng.random() < visitor.charge_p
            watts = rng.uniform(150.0, 350.0)
            linger = rng.uniform(1.0, 3.0) * 3600.0 if 19.0 <= h < 22.0 and rng.random() < 0.15 else 0.0
            if self._people >= self.station.capacity:
                continue  # full: turned away
            self._people += 1
            self._entries += 1
            leave = round(t + stay, 3)
            self._push(leave, _LEAVE, 0)
            if plug:
                self._plug(t, watts, round(leave + linger, 3))

    def _plug(self, t: float, watts: float, until: float) -> None:
        free = [c for c in self._chargers if len(c.sessions) < c.sockets and c.fault(t) is None]
        if not free:
            return
        charger = max(free, key=lambda c: c.sockets - len(c.sessions))
        charger.settle(t)
        self._order += 1
        session = self._order
        charger.sessions[session] = watts
        self._session_charger[session] = self._chargers.index(charger)
        self._push(until, _UNPLUG, session)

    def _unplug(self, session: int, t: float) -> None:
        charger = self._chargers[self._session_charger.pop(session)]
        charger.settle(t)
        charger.sessions.pop(session, None)

    def _push(self, t: float, what: int, session: int) -> None:
        self._order += 1
        heapq.heappush(self._events, (t, self._order, what, session))

    def _step_indoor(self, t: float) -> None:
        if self.heating_failed(t):
            target, tau = self.outdoor(t) + 1.5 + 0.05 * self._people, 3 * 3600.0
        else:
            target, tau = self._setpoint(t) + min(1.5, 0.08 * self._people), 1200.0
        self._indoor += (target - self._indoor) * (1.0 - math.exp(-GRID / tau))
