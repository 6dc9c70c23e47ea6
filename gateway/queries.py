"""The InfluxQL the gateway runs: history of one station, and the last values that seed live state.

Station ids and measurement names come from the registry and the contract, never from free
text; times are integers. So nothing a caller sends is spliced into a query unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from gateway.influx import InfluxReader, Series
from gateway.live import LiveState
from telemetry.contract import Charger, Occupancy, Status, Temperature

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
