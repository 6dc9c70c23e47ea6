"""Sampling: reading the drivers into readings of the contract, each with its ``seq`` and ``ts``.

A driver that raises, or returns a value outside the contract, costs that one reading: it is
skipped and counted (:attr:`Sampler.driver_errors`), logged as a warning when the device starts
failing and at info when it reads again. A series (occupancy, one charger, one sensor) never gets
the same ``ts`` twice, across restarts too (the buffer keeps the latest ``ts``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import BaseModel, ValidationError

from firmware_stubs.buffer import Buffer, NewReading
from firmware_stubs.clock import next_ts
from firmware_stubs.drivers import ChargerController, Drivers, TemperatureSensor
from firmware_stubs.exceptions import DriverError
from telemetry.codec import describe
from telemetry.contract import Charger, Kind, Occupancy, Temperature
from telemetry.registry import Station

logger = logging.getLogger(__name__)


class Sampler:
    """Reads one station's drivers into :class:`NewReading`\\ s.

    Args:
        station: the station in the registry (how many sockets each charger has).
        drivers: the hardware.
        buffer: where the readings go; read here for the next ``seq`` and the latest ``ts``.
        occupancy_poll_s: how often to read a counter that cannot say when it will change.
    """

    __slots__ = ("_buffer", "_failing", "_last_people", "_poll_s", "_series_ts", "_sid", "_station", "_ts_floor",
                 "driver_errors", "drivers")

    def __init__(self, *, station: Station, drivers: Drivers, buffer: Buffer, occupancy_poll_s: float = 1.0) -> None:
        self._station, self._sid, self.drivers, self._buffer = station, station.id, drivers, buffer
        self._poll_s = occupancy_poll_s
        self._last_people: int | None = None
        self._ts_floor = buffer.last_ts
        self._series_ts: dict[str, int] = {}
        self._failing: set[str] = set()
        self.driver_errors = 0
        """Readings skipped because a driver failed, since the agent started."""

    def next_occupancy_check(self, now: float) -> float:
        """When to read the counter next for a change: when it says it may change, else a poll period on."""
        counter = self.drivers.occupancy
        try:
            hint = counter.next_change() if counter is not None else None
        except Exception:  # noqa: BLE001 - a driver's hint failing only means polling
            hint = None
        return now + self._poll_s if hint is None else max(hint, now + 0.001)

    def occupancy(self, now: float, out: list[NewReading], *, force: bool) -> None:
        """The count, when it changed since the last reading or with ``force`` (the periodic one)."""
        counter = self.drivers.occupancy
        if counter is None:
            return
        try:
            v = counter.read()
        except Exception as exc:  # noqa: BLE001 - any driver failure is counted, never fatal
            self._failed("occupancy", exc)
            return
        if not force and v.people == self._last_people:
            return
        if self._add(out, Kind.OCCUPANCY, "occupancy", now, "occupancy",
                     lambda ts, seq: Occupancy(ts=ts, seq=seq, people=v.people, entries=v.entries, exits=v.exits)):
            self._last_people = v.people

    def chargers(self, now: float, out: list[NewReading]) -> None:
        for charger in self.drivers.chargers:
            self._charger(charger, now, out)

    def temperatures(self, now: float, out: list[NewReading]) -> None:
        for sensor in self.drivers.sensors:
            self._temperature(sensor, now, out)

    def _charger(self, charger: ChargerController, now: float, out: list[NewReading]) -> None:
        cid = charger.charger_id
        device = f"charger {cid}"
        try:
            v = charger.read()
            sockets = self._station.sockets(cid)
            if sockets is None or v.sockets_in_use > sockets:
                raise DriverError(device, f"{v.sockets_in_use} sockets in use of {sockets}")
        except Exception as exc:  # noqa: BLE001 - any driver failure is counted, never fatal
            self._failed(device, exc)
            return
        self._add(out, Kind.CHARGER, f"charger/{cid}", now, device,
                  lambda ts, seq: Charger(ts=ts, seq=seq, charger_id=cid, sockets_in_use=v.sockets_in_use,
                                          power_w=float(v.power_w), energy_wh=float(v.energy_wh), fault=v.fault))

    def _temperature(self, sensor: TemperatureSensor, now: float, out: list[NewReading]) -> None:
        name = sensor.sensor
        device = f"sensor {name}"
        try:
            v = sensor.read()
        except Exception as exc:  # noqa: BLE001 - any driver failure is counted, never fatal
            self._failed(device, exc)
            return
        humidity = None if v.humidity_pct is None else float(v.humidity_pct)
        self._add(out, Kind.TEMPERATURE, f"temperature/{name}", now, device,
                  lambda ts, seq: Temperature(ts=ts, seq=seq, sensor=name, celsius=float(v.celsius),
                                              humidity_pct=humidity))

    def _add(self, out: list[NewReading], kind: Kind, series: str, now: float, device: str,
             make: Callable[[int, int], BaseModel]) -> bool:
        """Build one reading: the next ``seq``, a ``ts`` never reused within its series."""
        seq = self._buffer.seq + len(out) + 1
        ts = next_ts(self._series_ts.get(series, self._ts_floor), round(now * 1000))
        try:
            reading = make(ts, seq)
        except ValidationError as exc:
            self._failed(device, DriverError(device, f"value outside the contract: {describe(exc)}"))
            return False
        out.append(NewReading(kind, ts, seq, reading.model_dump_json(exclude_none=True)))
        self._series_ts[series] = ts
        if device in self._failing:
            self._failing.discard(device)
            logger.info("%s: %s reads again", self._sid, device)
        return True

    def _failed(self, device: str, exc: Exception) -> None:
        self.driver_errors += 1
        if device not in self._failing:
            self._failing.add(device)
            logger.warning("%s: %s failed, reading skipped: %s", self._sid, device, exc)
        else:
            logger.debug("%s: %s failed again: %s", self._sid, device, exc)
