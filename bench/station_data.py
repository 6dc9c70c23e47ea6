"""Raw readings of real-rate stations over days or a year, as ingest's line protocol, generated fast.

Each station sends what its agent sends at the contract's default intervals: occupancy every 60 s
and on every change (an arrival or a departure), each charger every 30 s, each sensor every 60 s,
a status every 60 s; one ``seq`` per station over all its readings in time order. The values
follow ``simulator/model.py`` in a simpler form that runs a station-day in a few milliseconds:

- arrivals a Poisson process at the model's rate of the day (Beijing time), scaled like the
  model's by the square root of capacity; stays of 8-60 minutes; a full station turns people away;
  ``entries``/``exits`` cumulative door counters, reset to 0 by the odd reboot (one station-day in
  30: two minutes without readings, then the counters start again);
- a charging session for some arrivals, on the charger with the most free sockets, 150-350 W until
  the owner leaves; ``energy_wh`` cumulative (the meter is the charger's: a reboot keeps it); a
  charger-day in 60 has a fault of 1-4 hours (code E07, no power);
- indoor temperature at its set point plus the people's warmth; outdoor the model's day shape over
  a seasonal swing (-4.5 °C mean in January, 22 °C in July).

Generation is deterministic in the seed and goes a day at a time over all stations (the order
InfluxDB's shards are written best in); a station-day's lines are built in one tight loop per
kind with ingest's own tag escaping, and ``tests/bench`` checks them against ``ingest/lineprotocol.py``.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from ingest.lineprotocol import string_field, tag
from simulator.model import DISTRICT_OFFSET, VISITORS, day_shape, unit
from telemetry.registry import Station

DAY_MS: Final = 86_400_000
MINUTE_MS: Final = 60_000
CHARGER_MS: Final = 30_000
TZ_OFFSET_MS: Final = 8 * 3_600_000
REBOOT_P: Final = 1 / 30
REBOOT_DOWN_MS: Final = 120_000
FAULT_P: Final = 1 / 60
FAULT_CODE: Final = "E07"
PLUG_P: Final = 0.4
FW: Final = "1.4.2"
CONFIG_REV: Final = "default"

_PEAK_PER_H: Final = sum(v.peak_rate for v in VISITORS)


def _rate_per_h(ts_ms: int) -> float:
    """Arrivals per hour at a 20-place station at ``ts_ms``, by the model's visitors."""
    h = ((ts_ms + TZ_OFFSET_MS) % DAY_MS) / 3_600_000
    return sum(v.rate(h) for v in VISITORS)


@dataclass(slots=True)
class _Session:
    charger: int
    start: int
    end: int
    watts: float


@dataclass(slots=True)
class _Charger:
    id: str
    sockets: int
    energy_wh: float
    last_ts: int = 0
    last_w: float = 0.0


@dataclass(slots=True)
class StationState:
    """What a station carries from one day to the next: counters, people present, sessions, seq."""

    station: Station
    rng: random.Random
    phase_ms: int
    scale: float
    site: float
    setpoint: float
    chargers: list[_Charger]
    seq: int = 0
    arrivals: int = 0
    departures: int = 0
    entries_zero: int = 0
    exits_zero: int = 0
    boot_ms: int = 0
    present: list[int] = field(default_factory=list)
    sessions: list[_Session] = field(default_factory=list)

    @classmethod
    def start(cls, station: Station, *, seed: int, boot_ms: int) -> StationState:
        sid = station.id
        base = int(unit(seed, sid, "door") * 50_000)
        chargers = [_Charger(c.id, c.sockets, round(5_000 + unit(seed, sid, "meter", c.id) * 200_000, 1), boot_ms)
                    for c in station.chargers]
        return cls(station, random.Random(f"{seed}:{sid}:days"), int(unit(seed, sid, "phase") * 20_000),
                   math.sqrt(station.capacity / 20.0) * (0.6 + 0.8 * unit(seed, sid, "busy")),
                   (unit(seed, sid, "site") - 0.5) * 0.6 + DISTRICT_OFFSET.get(station.district, 0.0),
                   (unit(seed, sid, "setpoint") - 0.5) * 1.0, chargers,
                   entries_zero=-base, exits_zero=-base, boot_ms=boot_ms)


@dataclass(slots=True)
class _Day:
    """One station-day's events: admitted arrivals, departures, sessions, the reboot's down window."""

    start: int
    arrivals: list[int]
    departures: list[int]
    sessions: list[_Session]
    down: tuple[int, int] | None


def _arrival_times(state: StationState, start: int) -> list[int]:
    rng, out = state.rng, []
    peak = _PEAK_PER_H * state.scale / 3_600_000
    t = start + rng.expovariate(peak)
    while t < start + DAY_MS:
        if rng.random() * _PEAK_PER_H < _rate_per_h(int(t)):
            out.append(int(t))
        t += rng.expovariate(peak)
    return out


def _plug(state: StationState, active: list[list[int]], t: int, end: int) -> _Session | None:
    for ends in active:
        while ends and ends[0] <= t:
            heapq.heappop(ends)
    free = [(c.sockets - len(active[i]), i) for i, c in enumerate(state.chargers) if len(active[i]) < c.sockets]
    if not free:
        return None
    i = max(free)[1]
    heapq.heappush(active[i], end)
    return _Session(i, t, end, state.rng.uniform(150.0, 350.0))


def _events(state: StationState, start: int) -> _Day:
    """Admit the day's arrivals (a full station turns them away) and pair them with departures."""
    rng, present, capacity = state.rng, state.present, state.station.capacity
    active: list[list[int]] = [[] for _ in state.chargers]
    for s in state.sessions:
        heapq.heappush(active[s.charger], s.end)
    admitted, departures, sessions = [], [], [s for s in state.sessions if s.end > start]
    for t in _arrival_times(state, start):
        while present and present[0] <= t:
            departures.append(heapq.heappop(present))
        if len(present) >= capacity:
            continue
        end = t + int(min(3_600_000.0, 480_000 + rng.expovariate(1 / 900_000)))
        admitted.append(t)
        heapq.heappush(present, end)
        if active and rng.random() < PLUG_P and (session := _plug(state, active, t, end)):
            sessions.append(session)
    while present and present[0] < start + DAY_MS:
        departures.append(heapq.heappop(present))
    state.sessions = [s for s in sessions if s.end > start + DAY_MS]
    down = None
    if rng.random() < REBOOT_P:
        at = start + rng.randrange(DAY_MS - REBOOT_DOWN_MS)
        down = (at, at + REBOOT_DOWN_MS)
    return _Day(start, admitted, departures, sessions, down)


def _ticks(day: _Day, offset: int, step: int) -> list[int]:
    ticks = range(day.start + offset, day.start + DAY_MS, step)
    if day.down is None:
        return list(ticks)
    a, b = day.down
    return [t for t in ticks if not a <= t < b]


def _occupancy(state: StationState, day: _Day) -> tuple[list[int], list[tuple[int, int, int]]]:
    """The occupancy readings' times and (people, entries, exits); a reboot restarts the door counters."""
    times = sorted(set(_ticks(day, state.phase_ms, MINUTE_MS)) | {t for t in day.arrivals + day.departures
                                                                   if day.down is None
                                                                   or not day.down[0] <= t < day.down[1]})
    a0, d0, arr, dep = state.arrivals, state.departures, day.arrivals, day.departures
    values = []
    reset_at = day.down[1] if day.down else None
    for t in times:
        if reset_at is not None and t >= reset_at:
            state.entries_zero = a0 + bisect.bisect_right(arr, reset_at)
            state.exits_zero = d0 + bisect.bisect_right(dep, reset_at)
            state.boot_ms = reset_at
            reset_at = None
        a, d = a0 + bisect.bisect_right(arr, t), d0 + bisect.bisect_right(dep, t)
        values.append((a - d, a - state.entries_zero, d - state.exits_zero))
    if reset_at is not None:  # a reboot after the day's last reading
        state.entries_zero, state.exits_zero = a0 + bisect.bisect_right(arr, reset_at), d0 + bisect.bisect_right(
            dep, reset_at)
        state.boot_ms = reset_at
    state.arrivals, state.departures = a0 + len(arr), d0 + len(dep)
    return times, values


def _power_steps(day: _Day, charger: int) -> tuple[list[int], list[float]]:
    """The charger's draw as a step function: (times, watts from that time on)."""
    changes: dict[int, float] = {}
    for s in day.sessions:
        if s.charger == charger:
            changes[max(s.start, day.start)] = changes.get(max(s.start, day.start), 0.0) + s.watts
            changes[s.end] = changes.get(s.end, 0.0) - s.watts
    times, watts, level = [day.start], [0.0], 0.0
    for t in sorted(changes):
        level += changes[t]
        times.append(t)
        watts.append(max(0.0, level))
    return times, watts


_ChargerRow = tuple[int, int, int, int, bool]
"""(ts, sockets in use, tenths of W, tenths of Wh, faulted)"""


def _charger(state: StationState, day: _Day, i: int, fault: tuple[int, int] | None) -> list[_ChargerRow]:
    """The charger's readings: one sweep over the ticks and the draw's steps."""
    c, rnd = state.chargers[i], state.rng.random
    steps_t, steps_w = _power_steps(day, i)
    starts = sorted(max(s.start, day.start) for s in day.sessions if s.charger == i)
    ends = sorted(s.end for s in day.sessions if s.charger == i)
    f0, f1 = fault or (0, 0)
    step = started = ended = 0
    out: list[_ChargerRow] = []
    for t in _ticks(day, state.phase_ms, CHARGER_MS):
        while step + 1 < len(steps_t) and steps_t[step + 1] <= t:
            step += 1
        while started < len(starts) and starts[started] <= t:
            started += 1
        while ended < len(ends) and ends[ended] <= t:
            ended += 1
        c.energy_wh += c.last_w * (t - c.last_ts) / 3_600_000
        faulted = f0 <= t < f1
        watts = steps_w[step]
        watts = 0.0 if faulted or not watts else watts * (0.98 + 0.04 * rnd())
        c.last_ts, c.last_w = t, watts
        out.append((t, started - ended, round(watts * 10), round(c.energy_wh * 10), faulted))
    return out


def _season(ts_ms: int) -> float:
    """Mean outdoor temperature of the day of year: -4.5 °C mid-January, 22 °C mid-July."""
    return 8.75 - 13.25 * math.cos(2 * math.pi * ((ts_ms / DAY_MS) % 365.2425 - 15) / 365.2425)


_SHAPE: Final = [day_shape(((k * MINUTE_MS + TZ_OFFSET_MS) % DAY_MS) / 3_600_000) for k in range(1440)]
_SETPOINT: Final = [20.0 if 7.0 <= ((k * MINUTE_MS + TZ_OFFSET_MS) % DAY_MS) / 3_600_000 < 22.0 else 17.5
                    for k in range(1440)]


def _temperatures(state: StationState, sensor: str, start: int, times: list[int],
                  people: list[int]) -> list[tuple[int, int]]:
    """(centidegrees, tenths of % humidity) of a sensor at each of the day's ``times``."""
    rnd, minutes = state.rng.random, [(t - start) // MINUTE_MS for t in times]
    if sensor == "outdoor":
        base = _season(start + DAY_MS // 2) + state.site
        return [(round((base + 7.0 * _SHAPE[k] + 0.3 * (j := rnd() - 0.5)) * 100),
                 round(min(95.0, max(15.0, 65.0 - 20.0 * _SHAPE[k] + 10.0 * j)) * 10)) for k in minutes]
    return [(round((_SETPOINT[k] + state.setpoint + min(1.5, 0.08 * p) + 0.1 * (j := rnd() - 0.5)) * 100),
             round(min(60.0, max(15.0, 32.0 + 0.3 * p + 2.0 * j)) * 10)) for k, p in zip(minutes, people, strict=True)]


class StationDays:
    """Line protocol for every station, a day at a time: :meth:`day` returns one day's lines of all."""

    def __init__(self, stations: list[Station], *, seed: int, start_ms: int) -> None:
        self.states = [StationState.start(s, seed=seed, boot_ms=start_ms) for s in stations]
        self.series = [_Series.of(s) for s in stations]

    def day(self, start_ms: int) -> Iterator[list[str]]:
        """The lines of ``[start_ms, start_ms + 1 d)``, one list per station."""
        for state, series in zip(self.states, self.series, strict=True):
            yield station_day(state, series, start_ms)


@dataclass(slots=True, frozen=True)
class _Series:
    """A station's measurement-and-tags prefixes, escaped as ingest escapes them."""

    occupancy: str
    chargers: tuple[str, ...]
    sensors: tuple[str, ...]
    status: str

    @classmethod
    def of(cls, s: Station) -> _Series:
        tags = f"station={tag(s.id)},district={tag(s.district)},kind={tag(s.kind.value)}"
        return cls(f"occupancy,{tags}", tuple(f"charger,{tags},charger={tag(c.id)}" for c in s.chargers),
                   tuple(f"temperature,{tags},sensor={tag(x)}" for x in s.sensors), f"station_status,{tags}")


def station_day(state: StationState, series: _Series, start_ms: int) -> list[str]:
    """One station's lines for the day starting at ``start_ms`` (advances its state)."""
    day, booted = _events(state, start_ms), state.boot_ms
    occ_times, occ = _occupancy(state, day)
    faults = [_fault(state, start_ms) for _ in state.chargers]
    chargers = [_charger(state, day, i, faults[i]) for i in range(len(state.chargers))]
    sensor_times = _ticks(day, state.phase_ms + 1_000, MINUTE_MS)
    people_at = [occ[max(0, bisect.bisect_right(occ_times, t) - 1)][0] if occ else 0 for t in sensor_times]
    temps = [_temperatures(state, sensor, start_ms, sensor_times, people_at) for sensor in state.station.sensors]
    seq = _seqs(state, [occ_times, *([r[0] for r in rows] for rows in chargers),
                        *(sensor_times for _ in temps)])
    lines = _occupancy_lines(series.occupancy, state.station.capacity, occ_times, occ, next(seq))
    for prefix, c, rows in zip(series.chargers, state.chargers, chargers, strict=True):
        lines += _charger_lines(prefix, c.sockets, rows, next(seq))
    for prefix, values in zip(series.sensors, temps, strict=True):
        lines += _temperature_lines(prefix, sensor_times, values, next(seq))
    lines += _status_lines(series.status, day, booted, _ticks(day, state.phase_ms + 2_000, MINUTE_MS))
    return lines


def _fault(state: StationState, start: int) -> tuple[int, int] | None:
    if state.rng.random() >= FAULT_P:
        return None
    at = start + state.rng.randrange(DAY_MS)
    return at, at + state.rng.randrange(3_600_000, 4 * 3_600_000)


def _seqs(state: StationState, times: list[list[int]]) -> Iterator[list[int]]:
    """Each device's seqs: the station's readings numbered in time order (ties in device order)."""
    width = len(times)
    keys = sorted(t * width + k for k, ts in enumerate(times) for t in ts)
    rank = {key: state.seq + 1 + n for n, key in enumerate(keys)}
    state.seq += len(keys)
    for k, ts in enumerate(times):
        yield [rank[t * width + k] for t in ts]


def _occupancy_lines(prefix: str, capacity: int, times: list[int], values: list[tuple[int, int, int]],
                     seqs: list[int]) -> list[str]:
    head, cap = prefix + " people=", f"i,capacity={capacity}i,entries="
    return [f"{head}{p}{cap}{e}i,exits={x}i,seq={s}i {t}"
            for t, (p, e, x), s in zip(times, values, seqs, strict=True)]


def _charger_lines(prefix: str, sockets: int, rows: list[_ChargerRow], seqs: list[int]) -> list[str]:
    head, total, fault = prefix + " sockets_in_use=", f"i,sockets_total={sockets}i,power_w=", string_field(FAULT_CODE)
    return [f"{head}{n}{total}{w / 10!r},energy_wh={e / 10!r}{',fault=' + fault if f else ''},seq={s}i {t}"
            for (t, n, w, e, f), s in zip(rows, seqs, strict=True)]


def _temperature_lines(prefix: str, times: list[int], values: list[tuple[int, int]], seqs: list[int]) -> list[str]:
    head = prefix + " celsius="
    return [f"{head}{c / 100!r},humidity_pct={h / 10!r},seq={s}i {t}"
            for t, (c, h), s in zip(times, values, seqs, strict=True)]


def _status_lines(prefix: str, day: _Day, booted: int, times: list[int]) -> list[str]:
    head = prefix + " online=true,uptime_s="
    tail = f"i,buffered=0i,dropped=0i,driver_errors=0i,fw={string_field(FW)},config_rev={string_field(CONFIG_REV)}"
    reboot = day.down[1] if day.down else DAY_MS * 100_000
    return [f"{head}{(t - (reboot if t >= reboot else booted)) // 1000}{tail} {t}" for t in times]
