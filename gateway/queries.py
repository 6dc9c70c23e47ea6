"""The InfluxQL the gateway runs: history of one station (raw, or rollups for long ranges), and the
last values that seed live state.

Station ids and measurement names come from the registry and the contract, never from free
text; times are integers. So nothing a caller sends is spliced into a query unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from gateway.influx import InfluxReader, Series
from gateway.live import LiveState
from telemetry.contract import Charger, Occupancy, Status, Temperature
from telemetry.storage import CHARGER_1H, HOUR_MS, OCCUPANCY_1H, TEMPERATURE_1H, Tier, hour_of, qualified

MAX_POINTS: Final = 2000
"""At most this many points per series: a longer range gets a coarser interval."""


class HistoryKind(StrEnum):
    OCCUPANCY = "occupancy"
    CHARGER = "charger"
    TEMPERATURE = "temperature"


@dataclass(slots=True, frozen=True)
class Aggregation:
    select: str
    group_by: str


AGGREGATIONS: Final = {
    HistoryKind.OCCUPANCY: Aggregation(
        "mean(people) AS people_mean, max(people) AS people_max, last(entries) AS entries, last(exits) AS exits", ""),
    HistoryKind.CHARGER: Aggregation(
        "max(sockets_in_use) AS sockets_in_use_max, mean(power_w) AS power_w_mean, max(power_w) AS power_w_max, "
        "last(energy_wh) AS energy_wh", ", charger"),
    HistoryKind.TEMPERATURE: Aggregation(
        "mean(celsius) AS celsius_mean, min(celsius) AS celsius_min, max(celsius) AS celsius_max, "
        "mean(humidity_pct) AS humidity_pct_mean", ", sensor"),
}


def every_ms(start_ms: int, end_ms: int, requested_ms: int | None) -> int:
    """The interval: as requested, but coarse enough for at most MAX_POINTS points; whole seconds."""
    floor_s = -(-(end_ms - start_ms) // (MAX_POINTS * 1000))
    return max(requested_ms or 0, floor_s * 1000, 1000)


def history_query(station_id: str, kind: HistoryKind, start_ms: int, end_ms: int, interval_ms: int) -> str:
    agg = AGGREGATIONS[kind]
    return (f"SELECT {agg.select} FROM \"{kind.value}\" WHERE station = '{station_id}' "
            f"AND time >= {start_ms}ms AND time < {end_ms}ms GROUP BY time({interval_ms}ms){agg.group_by} fill(none)")


ROLLUP_AFTER_MS: Final = 3 * 24 * HOUR_MS
"""History of a range longer than this reads the hourly rollups (and the raw points of the last two hours)."""


@dataclass(slots=True, frozen=True)
class Stat:
    """One history field from the rollups: the mean, max or min of a raw field, and its rollup field."""

    name: str
    calc: Literal["mean", "max", "min"]
    raw: str
    rollup: str  # the field summed (for a mean, divided by readings) or taken the max/min of


ROLLUP_STATS: Final = {
    HistoryKind.OCCUPANCY: (Stat("people_mean", "mean", "people", "people_sum"),
                            Stat("people_max", "max", "people", "people_max")),
    HistoryKind.CHARGER: (Stat("sockets_in_use_max", "max", "sockets_in_use", "sockets_in_use_max"),
                          Stat("power_w_mean", "mean", "power_w", "power_w_sum"),
                          Stat("power_w_max", "max", "power_w", "power_w_max")),
    HistoryKind.TEMPERATURE: (Stat("celsius_mean", "mean", "celsius", "celsius_sum"),
                              Stat("celsius_min", "min", "celsius", "celsius_min"),
                              Stat("celsius_max", "max", "celsius", "celsius_max")),
}
_ROLLUPS: Final = {HistoryKind.OCCUPANCY: OCCUPANCY_1H, HistoryKind.CHARGER: CHARGER_1H,
                   HistoryKind.TEMPERATURE: TEMPERATURE_1H}
_N: Final = "readings"


def _parts(kind: HistoryKind, *, rollup: bool) -> str:
    fields = []
    for stat in ROLLUP_STATS[kind]:
        field = stat.rollup if rollup else stat.raw
        calc = "sum" if stat.calc == "mean" else stat.calc
        fields.append(f'{calc}("{field}") AS "{stat.name}"')
    first = ROLLUP_STATS[kind][0].raw
    fields.append(f'sum("{_N}") AS "{_N}"' if rollup else f'count("{first}") AS "{_N}"')
    return ", ".join(fields)


def rollup_history_queries(station_id: str, kind: HistoryKind, start_ms: int, end_ms: int, interval_ms: int,
                           split_ms: int) -> tuple[str, str]:
    """The closed hours before ``split_ms`` from the rollups, the rest from raw points: sums, counts,
    maxima and minima per interval, combined by :func:`combine_history`."""
    group = f"GROUP BY time({interval_ms}ms){AGGREGATIONS[kind].group_by} fill(none)"
    where = f"WHERE station = '{station_id}'"
    closed = (f"SELECT {_parts(kind, rollup=True)} FROM {qualified(Tier.ROLLUP, _ROLLUPS[kind])} {where} "
              f"AND time >= {start_ms}ms AND time < {min(split_ms, end_ms)}ms {group}")
    recent = (f'SELECT {_parts(kind, rollup=False)} FROM "{kind.value}" {where} '
              f"AND time >= {max(split_ms, start_ms)}ms AND time < {end_ms}ms {group}")
    return closed, recent


def combine_history(kind: HistoryKind, parts: list[Series]) -> list[Series]:
    """Per series and interval: sums and counts added (a mean is their quotient), maxima and minima taken."""
    cells: dict[tuple[tuple[tuple[str, str], ...], int], dict[str, Any]] = {}
    for s in parts:
        for row in s.rows():
            cell = cells.setdefault((tuple(sorted(s.tags.items())), row["time"]), {})
            for name, value in row.items():
                if name != "time" and value is not None:
                    cell[name] = _merge(kind, name, cell.get(name), value)
    out: dict[tuple[tuple[str, str], ...], Series] = {}
    names = [stat.name for stat in ROLLUP_STATS[kind]]
    for (tags, time_ms), cell in sorted(cells.items(), key=lambda item: item[0][1]):
        series = out.setdefault(tags, Series(kind.value, dict(tags), ["time", *names]))
        n = cell.get(_N) or 0
        series.values.append([time_ms, *(_final(kind, name, cell.get(name), n) for name in names)])
    return list(out.values())


@dataclass(slots=True, frozen=True)
class HistoryRead:
    source: Literal["raw", "rollup"]
    start_ms: int
    interval_ms: int
    series: list[Series]


async def history(influx: InfluxReader, station_id: str, kind: HistoryKind, start_ms: int, end_ms: int,
                  interval_ms: int, now_ms: int) -> HistoryRead:
    """Raw aggregates for a range up to :data:`ROLLUP_AFTER_MS`; beyond, whole hours from the rollups
    (the hour just closed and the open one from raw points), the interval rounded up to hours."""
    if end_ms - start_ms <= ROLLUP_AFTER_MS:
        series = await influx.query(history_query(station_id, kind, start_ms, end_ms, interval_ms))
        return HistoryRead("raw", start_ms, interval_ms, series)
    start_ms, interval_ms = hour_of(start_ms), -(-interval_ms // HOUR_MS) * HOUR_MS
    closed, recent = rollup_history_queries(station_id, kind, start_ms, end_ms, interval_ms, hour_of(now_ms) - HOUR_MS)
    parts = [*await influx.query(closed), *await influx.query(recent)]
    return HistoryRead("rollup", start_ms, interval_ms, combine_history(kind, parts))


def _calc(kind: HistoryKind, name: str) -> str:
    return next((stat.calc for stat in ROLLUP_STATS[kind] if stat.name == name), "mean")


def _merge(kind: HistoryKind, name: str, old: Any, new: Any) -> Any:
    if old is None:
        return new
    match _calc(kind, name):
        case "max":
            return max(old, new)
        case "min":
            return min(old, new)
        case _:
            return old + new


def _final(kind: HistoryKind, name: str, value: Any, readings: int) -> Any:
    if value is None or _calc(kind, name) != "mean":
        return value
    return value / readings if readings else None


_STATUS_FIELDS: Final = ("fw", "uptime_s", "buffered", "dropped", "driver_errors", "config_rev", "error")
SEED_QUERIES: Final = {
    "status": f"SELECT last(online) AS online, {', '.join(_STATUS_FIELDS)} "
              "FROM station_status WHERE time > now() - 30d GROUP BY station",
    "occupancy": "SELECT last(people) AS people, entries, exits FROM occupancy WHERE time > now() - 7d "
                 "GROUP BY station",
    "charger": "SELECT last(sockets_in_use) AS sockets_in_use, power_w, energy_wh, fault FROM charger "
               "WHERE time > now() - 7d GROUP BY station, charger",
    "temperature": "SELECT last(celsius) AS celsius, humidity_pct FROM temperature WHERE time > now() - 7d "
                   "GROUP BY station, sensor",
}


async def seed(live: LiveState, influx: InfluxReader) -> int:
    """Fill live state with each station's last values in InfluxDB; returns how many stations had any."""
    seeded: set[str] = set()

    def rows(series: list[Series]) -> list[tuple[str, dict[str, str], dict[str, object]]]:
        out: list[tuple[str, dict[str, str], dict[str, object]]] = []
        for s in series:
            station = s.tags.get("station", "")
            if station in live.stations:
                out.extend((station, s.tags, row) for row in s.rows())
        return out

    for station, _, row in rows(await influx.query(SEED_QUERIES["status"])):
        status = Status.model_validate({"state": "online" if row["online"] else "offline", "ts": row["time"],
                                        **{k: row[k] for k in _STATUS_FIELDS if row.get(k) is not None}},
                                       strict=False)
        LiveState.apply_status(live.get(station), status, int(str(row["time"])))
        seeded.add(station)
    for station, _, row in rows(await influx.query(SEED_QUERIES["occupancy"])):
        LiveState.apply_reading(live.get(station), Occupancy.model_validate(
            {"ts": row["time"], "seq": 0, "people": row["people"], "entries": row["entries"],
             "exits": row["exits"]}))
        seeded.add(station)
    for station, tags, row in rows(await influx.query(SEED_QUERIES["charger"])):
        LiveState.apply_reading(live.get(station), Charger.model_validate(
            {"ts": row["time"], "seq": 0, "charger_id": tags["charger"], "sockets_in_use": row["sockets_in_use"],
             "power_w": row["power_w"], "energy_wh": row["energy_wh"], "fault": row["fault"]}, strict=False))
        seeded.add(station)
    for station, tags, row in rows(await influx.query(SEED_QUERIES["temperature"])):
        LiveState.apply_reading(live.get(station), Temperature.model_validate(
            {"ts": row["time"], "seq": 0, "sensor": tags["sensor"], "celsius": row["celsius"],
             "humidity_pct": row["humidity_pct"]}, strict=False))
        seeded.add(station)
    for station in seeded:
        state = live.get(station)
        if state.last_seen_ms is None:
            state.seen(max([state.people_ts, *(c.ts for c in state.chargers.values()),
                            *(s.ts for s in state.sensors.values())]))
    return len(seeded)
