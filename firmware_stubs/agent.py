"""The station agent: reads its drivers, buffers every reading on disk, publishes over MQTT.

One agent is a handful of named tasks in an ``asyncio.TaskGroup``; paho-mqtt 2.x is driven on the
event loop's selector (``loop_read``/``loop_write`` from reader and writer callbacks,
``loop_misc`` for pings), so one process runs thousands of agents without a thread each::

    connection  connect (paho's connect blocks: in a worker thread), wait for CONNACK, then for
                the loss; back off 1 s .. 60 s with jitter; again. A new paho client each time:
                what was in flight is in the buffer, never in a client's memory.
    schedule    (a callback chain on the clock, not a task) at each due time on the agent's
                clock: read the drivers, store the readings in the buffer (``seq`` assigned
                there), send them at once when connected; the status every status_interval_s.
    replay      while the buffer holds readings not in flight: send the oldest, as JSON arrays
                per kind, replay_rate readings per second, one step unacknowledged at a time;
                live readings never wait behind it.
    keepalive   paho's loop_misc.

Every timer runs on an injected :class:`Clock`: the wall clock on a device, simulated time in
the simulator, which runs this same agent with simulated drivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import sqlite3
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ValidationError

from firmware_stubs import __version__
from firmware_stubs.buffer import Buffer, BufferFile, NewReading, Row
from firmware_stubs.config import Settings
from firmware_stubs.drivers import (
    ChargerController,
    Drivers,
    OccupancyCounter,
    StubValues,
    TemperatureSensor,
    stub_drivers,
)
from firmware_stubs.exceptions import AgentError, ConnectError, DriverError
from telemetry.codec import clip, describe
from telemetry.contract import (
    MAX_BATCH,
    MAX_FUTURE_MS,
    MAX_PAYLOAD_BYTES,
    AgentConfig,
    Charger,
    Kind,
    Occupancy,
    Status,
    Temperature,
    topic,
)
from telemetry.registry import Station

logger = logging.getLogger(__name__)

FIRMWARE: Final = f"yizhan-agent {__version__}"
WILL: Final = b'{"state":"offline"}'
MAX_INFLIGHT: Final = 1000
"""Messages awaiting their PUBACK; beyond it new readings wait in the buffer for the replay."""
_ACK_TIMEOUT: Final = 5.0
_NEVER: Final = math.inf

Job = Literal["occupancy", "charger", "temperature", "status"]
_INTERVALS: Final[dict[Job, str]] = {"occupancy": "occupancy_interval_s", "charger": "charger_interval_s",
                                     "temperature": "temperature_interval_s", "status": "status_interval_s"}


class Clock(Protocol):
    """The agent's time: epoch seconds, and waiting for a moment of it."""

    def time(self) -> float: ...

    def sleep_until(self, when: float) -> asyncio.Future[None]:
        """A future done at ``when``, registered at once (await it, or add a done callback).

        Registering at the call, not at the first await, lets a simulated clock know every
        timer before it moves on; a done callback runs before it moves on again.
        """
        ...


class WallClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def sleep_until(self, when: float) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delay = when - time.time()
        if delay <= 0:
            fut.set_result(None)
        else:
            handle = fut.get_loop().call_later(delay, _resolve, fut)
            fut.add_done_callback(lambda _f: handle.cancel())
        return fut


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass(slots=True)
class AgentStats:
    """What one agent did since it started."""

    produced: int = 0
    """Readings read from the drivers and stored."""
    acknowledged: int = 0
    """Readings the broker acknowledged (and the buffer deleted)."""
    driver_errors: int = 0
    connects: int = 0


def _next_ts(last_ms: int, now_ms: int) -> int:
    """The ts of a series' next message: never one it used already, unless the clock was stepped back
    further than ingest accepts ahead (what was stamped in that future was rejected: nothing to replace)."""
    return now_ms if last_ms - now_ms > MAX_FUTURE_MS else max(now_ms, last_ms + 1)


def _next_due(due: float, interval: float, now: float) -> float:
    """The next period; after a stall, skip the missed ones instead of bursting."""
    nxt = due + interval
    return nxt if nxt > now else now + interval


class Agent:
    """The software of one station: drivers -> buffer -> MQTT.

    Use as ``async with Agent(...) as agent:``; leaving the block shuts down cleanly (sends what
    it can within ``flush_timeout``, publishes ``offline``, disconnects). ``close(graceful=False)``
    is a power cut instead: the broker publishes the last will.

    Args:
        station: the station in the registry (its chargers and sensors).
        drivers: the hardware.
        buffer: the station's store-and-forward buffer (``seq`` lives there).
        host, port, username, password, tls: the broker.
        clock: the agent's time (default the wall clock).
        config: the intervals to start with; by default the last config accepted (kept in the
            buffer), else the contract's defaults. The retained config topic overrides it.
        replay_rate: backlog readings sent per second (of ``clock``) after a reconnection.
        occupancy_poll_s: how often to read a counter that cannot say when it will change.
        flush_timeout: on clean shutdown, how long to wait for the buffer to empty (real seconds).
        rng: for the jitter of the reconnect backoff.
        on_reading: called with every reading stored (kind, JSON payload); the simulator counts
            and records with it.
    """

    def __init__(self, *, station: Station, drivers: Drivers, buffer: Buffer, host: str, port: int = 1883,
                 username: str | None = None, password: str | None = None, tls: ssl.SSLContext | None = None,
                 clock: Clock | None = None, config: AgentConfig | None = None, replay_rate: float = 50.0,
                 fw: str = FIRMWARE, keepalive: int = 60, connect_timeout: float = 10.0,
                 backoff_min: float = 1.0, backoff_max: float = 60.0, occupancy_poll_s: float = 1.0,
                 flush_timeout: float = 5.0, rng: random.Random | None = None,
                 on_reading: Callable[[Kind, str], None] | None = None) -> None:
        if replay_rate <= 0:
            raise ValueError("replay_rate must be positive")
        self.station = station
        self.stats = AgentStats()
        self._drivers, self._buffer = drivers, buffer
        self._host, self._port, self._username, self._password, self._tls = host, port, username, password, tls
        self._clock: Clock = clock or WallClock()
        self._config = config or self._saved_config()
        self._config_error: str | None = None
        self._replay_rate, self._fw, self._keepalive = replay_rate, fw, keepalive
        self._connect_timeout, self._flush_timeout = connect_timeout, flush_timeout
        self._backoff_min, self._backoff_max = backoff_min, backoff_max
        self._occupancy_poll_s = occupancy_poll_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._on_reading = on_reading
        self._topics = {kind: topic(station.id, kind) for kind in Kind}
        self._client_id = f"station-{station.id}"
        # connection state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._connected = False
        self._connack: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None
        self._network_up = asyncio.Event()
        self._network_up.set()
        self._inflight: dict[int, tuple[int, ...]] = {}
        self._inflight_ids: set[int] = set()
        self._replay_mids: set[int] = set()
        self._mid_waiters: dict[int, asyncio.Future[None]] = {}
        self._acked: list[int] = []
        self._cursor = 0
        self._backlog = asyncio.Event()
        self._replay_acked = asyncio.Event()
        self._emptied = asyncio.Event()
        # schedule state
        self._due: dict[Job, float] = {}
        self._occ_check = _NEVER
        self._last_people: int | None = None
        self._ts_floor = buffer.last_ts
        self._series_ts: dict[str, int] = {}
        self._status_ts = 0
        self._failing: set[str] = set()
        self._started = 0.0
        # tasks
        self._runner: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wake_at = _NEVER
        self._reading = True
        self._closing = False

    # --- public state ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def config(self) -> AgentConfig:
        """The config the agent runs."""
        return self._config

    @property
    def config_error(self) -> str | None:
        """Why the last config was refused, while it is the last one received."""
        return self._config_error

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def dropped(self) -> int:
        return self._buffer.dropped

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def start(self) -> None:
        """Start the agent's tasks (``async with`` does it)."""
        if self._runner is not None:
            raise RuntimeError("the agent was already started")
        self._loop = asyncio.get_running_loop()
        self._started = self._clock.time()
        now = self._started
        d = self._drivers
        self._due = {"occupancy": now if d.occupancy else _NEVER, "charger": now if d.chargers else _NEVER,
                     "temperature": now if d.sensors else _NEVER,
                     "status": now + self._config.status_interval_s}
        self._occ_check = now if d.occupancy else _NEVER
        self._tick(now)  # the first readings belong to this moment, not to when the tasks first run
        self._start_schedule()
        self._runner = asyncio.create_task(self._run(), name=f"agent {self.station.id}")
        self._runner.add_done_callback(self._runner_done)

    async def _run(self) -> None:
        sid = self.station.id
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._connection_loop(), name=f"{sid} connection")
            tg.create_task(self._replay_loop(), name=f"{sid} replay")
            tg.create_task(self._keepalive_loop(), name=f"{sid} keepalive")

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: the agent stopped on an unexpected error", self.station.id,
                         exc_info=task.exception())

    async def close(self, *, graceful: bool = True) -> None:
        """Stop reading the drivers; with ``graceful``, flush, publish offline and disconnect.

        Without ``graceful`` this is a power cut: the connection is dropped without DISCONNECT,
        so the broker publishes the last will; the buffer keeps whatever was not acknowledged.
        """
        if self._closing:
            return
        self._closing = True
        self.stop_reading()
        if not graceful:  # at once, before any await: what was not acknowledged stays buffered
            self._drop_connection()
            self._acked.clear()
        try:
            if graceful:
                await self._goodbye()
        finally:
            if self._runner is not None:
                self._runner.cancel()
                await asyncio.wait([self._runner])
            self._drop_connection()
            if graceful:
                self._flush_acks()

    async def _goodbye(self) -> None:
        if self._flush_timeout > 0 and len(self._buffer):
            self._emptied.clear()
            try:
                async with asyncio.timeout(self._flush_timeout):
                    await self._emptied.wait()
            except TimeoutError:
                logger.warning("%s: shutting down with %d readings still buffered", self.station.id,
                               len(self._buffer))
        client = self._client
        if client is None or not self._connected:
            return
        info = self._publish_status(client, state="offline")
        if info is not None and self._loop is not None:
            waiter = self._loop.create_future()
            self._mid_waiters[info.mid] = waiter
            await asyncio.wait([waiter], timeout=_ACK_TIMEOUT)
        lost = self._lost
        client.disconnect()
        if lost is not None:
            await asyncio.wait([lost], timeout=_ACK_TIMEOUT)
        logger.info("%s: disconnected (offline)", self.station.id)

    # --- faults (for the simulator and tests) ------------------------------------------------

    def cut_network(self) -> None:
        """Lose the network: the connection drops without DISCONNECT and reconnecting fails."""
        self._network_up.clear()
        client = self._client
        sock = client.socket() if client is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore_network(self) -> None:
        """The network is back: the next reconnect attempt (on the backoff schedule) succeeds."""
        self._network_up.set()

    # --- schedule: drivers -> buffer -> live send --------------------------------------------

    def stop_reading(self) -> None:
        """Stop reading the drivers, for good; sending, replay and status go on until :meth:`close`."""
        self._reading = False
        self._stop_schedule()

    def _start_schedule(self) -> None:
        """Wait for the next due moment; :meth:`_on_due` reads the drivers then.

        A done callback on the clock's future, not a task: it runs in the loop iteration right
        after the moment comes, before a simulated clock can move on, so the readings are taken
        at that very moment whatever else is running (and it costs no task per agent).
        """
        if not self._reading or self._closing:
            return
        self._wake_at = self._next_wake()
        self._waiter = self._clock.sleep_until(self._wake_at)
        self._waiter.add_done_callback(self._on_due)

    def _stop_schedule(self) -> None:
        if self._waiter is not None:
            self._waiter.cancel()
            self._waiter = None

    def _on_due(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled() or waiter is not self._waiter:
            return
        now = self._clock.time()
        if now < self._wake_at <= now + 1.0:  # woke a hair early: keep the schedule exact
            now = self._wake_at
        try:
            self._tick(now)  # far before the wake: the clock was stepped back, and _tick follows it
        except Exception:
            logger.exception("%s: unexpected error reading the drivers", self.station.id)
        self._start_schedule()

    def _next_wake(self) -> float:
        return min(self._occ_check, *self._due.values())

    def _tick(self, now: float) -> None:
        due = self._due
        intervals: dict[Job, float] = {job: getattr(self._config, attr) for job, attr in _INTERVALS.items()}
        for key, interval in intervals.items():
            if due[key] > now + interval:  # the clock was stepped back: the schedule follows it
                due[key] = now
        new: list[NewReading] = []
        counter = self._drivers.occupancy
        if counter is not None:
            periodic = due["occupancy"] <= now
            if periodic or self._occ_check <= now:
                self._read_occupancy(counter, now, new, force=periodic)
            if periodic:
                due["occupancy"] = _next_due(due["occupancy"], intervals["occupancy"], now)
            self._occ_check = self._next_occupancy_check(counter, now)
        if due["charger"] <= now:
            for charger in self._drivers.chargers:
                self._read_charger(charger, now, new)
            due["charger"] = _next_due(due["charger"], intervals["charger"], now)
        if due["temperature"] <= now:
            for sensor in self._drivers.sensors:
                self._read_temperature(sensor, now, new)
            due["temperature"] = _next_due(due["temperature"], intervals["temperature"], now)
        self._store(new)
        if due["status"] <= now:
            self._publish_status()
            due["status"] = _next_due(due["status"], intervals["status"], now)

    def _next_occupancy_check(self, counter: OccupancyCounter, now: float) -> float:
        try:
            hint = counter.next_change()
        except Exception:  # noqa: BLE001 - a driver's hint failing only means polling
            hint = None
        return now + self._occupancy_poll_s if hint is None else max(hint, now + 0.001)

    def _read_occupancy(self, counter: OccupancyCounter, now: float, out: list[NewReading], *,
                        force: bool) -> None:
        try:
            v = counter.read()
        except Exception as exc:  # noqa: BLE001 - any driver failure is counted, never fatal
            self._driver_failed("occupancy", exc)
            return
        if not force and v.people == self._last_people:
            return
        if self._add(out, Kind.OCCUPANCY, "occupancy", now, "occupancy",
                     lambda ts, seq: Occupancy(ts=ts, seq=seq, people=v.people, entries=v.entries, exits=v.exits)):
            self._last_people = v.people

    def _read_charger(self, charger: ChargerController, now: float, out: list[NewReading]) -> None:
        cid = charger.charger_id
        device = f"charger {cid}"
        try:
            v = charger.read()
            sockets = self.station.sockets(cid)
            if sockets is None or v.sockets_in_use > sockets:
                raise DriverError(device, f"{v.sockets_in_use} sockets in use of {sockets}")
        except Exception as exc:  # noqa: BLE001 - any driver failure is counted, never fatal
            self._driver_failed(device, exc)
            return
        self._add(out, Kind.CHARGER, f"charger/{cid}", now, device,
                  lambda ts, seq: Charger(ts=ts, seq=seq, charger_id=cid, sockets_in_use=v.sockets_in_use,
                                          power_w=float(v.power_w), energy_wh=float(v.energy_wh), fault=v.fault))

    def _read_temperature(self, sensor: TemperatureSensor, now: float, out: list[NewReading]) -> None:
        name = sensor.sensor
        device = f"sensor {name}"
        try:
            v = sensor.read()
        except Exception as exc:  # noqa: BLE001 - any driver failure is counted, never fatal
            self._driver_failed(device, exc)
            return
        humidity = None if v.humidity_pct is None else float(v.humidity_pct)
        self._add(out, Kind.TEMPERATURE, f"temperature/{name}", now, device,
                  lambda ts, seq: Temperature(ts=ts, seq=seq, sensor=name, celsius=float(v.celsius),
                                              humidity_pct=humidity))

    def _add(self, out: list[NewReading], kind: Kind, series: str, now: float, device: str,
             make: Callable[[int, int], BaseModel]) -> bool:
        """Build one reading: the next ``seq``, a ``ts`` never reused within its series."""
        seq = self._buffer.seq + len(out) + 1
        ts = _next_ts(self._series_ts.get(series, self._ts_floor), round(now * 1000))
        try:
            reading = make(ts, seq)
        except ValidationError as exc:
            self._driver_failed(device, DriverError(device, f"value outside the contract: {describe(exc)}"))
            return False
        out.append(NewReading(kind, ts, seq, reading.model_dump_json(exclude_none=True)))
        self._series_ts[series] = ts
        if device in self._failing:
            self._failing.discard(device)
            logger.info("%s: %s reads again", self.station.id, device)
        return True

    def _driver_failed(self, device: str, exc: Exception) -> None:
        self.stats.driver_errors += 1
        if device not in self._failing:
            self._failing.add(device)
            logger.warning("%s: %s failed, reading skipped: %s", self.station.id, device, exc)
        else:
            logger.debug("%s: %s failed again: %s", self.station.id, device, exc)

    def _store(self, new: list[NewReading]) -> None:
        if not new:
            return
        dropped = self._buffer.dropped
        try:
            rows = self._buffer.add(new)
        except sqlite3.Error:
            logger.exception("%s: cannot store %d readings in the buffer", self.station.id, len(new))
            return
        self.stats.produced += len(new)
        if self._buffer.dropped > dropped:
            logger.warning("%s: buffer full (%d readings): dropped the %d oldest", self.station.id,
                           self._buffer.max_readings, self._buffer.dropped - dropped)
        if self._on_reading is not None:
            for r in new:
                self._on_reading(r.kind, r.payload)
        self._send_live(rows)

    def _send_live(self, rows: list[Row]) -> None:
        client = self._client
        if client is None or not self._connected or len(self._inflight) >= MAX_INFLIGHT:
            self._backlog.set()
            return
        for row in rows:
            if self._publish(client, row.kind, [row], batch=False) is None:
                self._backlog.set()
                return

    def _publish(self, client: mqtt.Client, kind: Kind, rows: list[Row], *, batch: bool) -> int | None:
        """Publish readings (one object, or an array); returns the mid, None when paho refused."""
        payload = ("[" + ",".join(r.payload for r in rows) + "]") if batch else rows[0].payload
        info = client.publish(self._topics[kind], payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        ids = tuple(r.id for r in rows)
        self._inflight[info.mid] = ids
        self._inflight_ids.update(ids)
        return info.mid

    # --- status and config -------------------------------------------------------------------

    def _publish_status(self, client: mqtt.Client | None = None, *,
                        state: Literal["online", "offline"] = "online") -> mqtt.MQTTMessageInfo | None:
        client = client or self._client
        if client is None or not self._connected:
            return None
        now = self._clock.time()
        self._status_ts = _next_ts(self._status_ts, round(now * 1000))
        status = Status(state=state, ts=self._status_ts, fw=self._fw, uptime_s=max(0, int(now - self._started)),
                        buffered=len(self._buffer), dropped=self._buffer.dropped,
                        driver_errors=self.stats.driver_errors, config_rev=self._config.rev,
                        error=self._config_error)
        return client.publish(self._topics[Kind.STATUS], status.model_dump_json(exclude_none=True), qos=1,
                              retain=True)

    def _saved_config(self) -> AgentConfig:
        saved = self._buffer.config()
        if saved:
            try:
                return AgentConfig.model_validate_json(saved)
            except ValidationError:
                logger.warning("%s: the saved config is not valid; using the defaults", self.station.id)
        return AgentConfig()

    def _on_config(self, payload: bytes) -> None:
        sid = self.station.id
        try:
            config = AgentConfig.model_validate_json(payload) if payload.strip() else AgentConfig()
        except ValidationError as exc:
            self._config_error = clip(f"config refused: {describe(exc)}")
            logger.warning("%s: %s; keeping config %s", sid, self._config_error, self._config.rev)
        else:
            self._config_error = None
            if config != self._config:
                old, self._config = self._config, config
                self._buffer.save_config(config.model_dump_json())
                self._reschedule(old, config)
                logger.info("%s: config %s applied", sid, config.rev)
        self._publish_status()

    def _reschedule(self, old: AgentConfig, new: AgentConfig) -> None:
        now = self._clock.time()
        for job, attr in _INTERVALS.items():
            if self._due[job] != _NEVER:
                self._due[job] = max(now, self._due[job] - getattr(old, attr) + getattr(new, attr))
        self._stop_schedule()
        self._start_schedule()

    # --- connection --------------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        delay = self._backoff_min
        failures = 0
        while not self._closing:
            try:
                await self._session()
                delay, failures = self._backoff_min, 0
            except ConnectError as exc:
                failures += 1
                log = logger.info if failures == 1 else logger.debug
                log("%s: MQTT %s:%s: %s; retrying with backoff", self.station.id, self._host, self._port, exc)
            if self._closing:
                return
            await self._clock.sleep_until(self._clock.time() + delay * self._rng.uniform(0.5, 1.0))
            delay = min(delay * 2, self._backoff_max)

    async def _session(self) -> None:
        if not self._network_up.is_set():
            raise ConnectError("network down")
        client = self._new_client()
        await self._open(client)
        if not self._network_up.is_set() or self._closing:
            self._close_socket(client)
            raise ConnectError("network down")
        loop = asyncio.get_running_loop()
        self._connack, self._lost = loop.create_future(), loop.create_future()
        self._client = client
        self._watch(client, loop)
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await self._connack
            except TimeoutError as exc:
                raise ConnectError(f"no CONNACK within {self._connect_timeout} s") from exc
            self.stats.connects += 1
            logger.info("%s: connected to %s:%s (%d buffered)", self.station.id, self._host, self._port,
                        len(self._buffer))
            await self._lost
            if not self._closing:
                logger.info("%s: connection lost", self.station.id)
        finally:
            self._drop_connection()

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id, clean_session=True,
                             protocol=MQTTProtocolVersion.MQTTv311)
        client.max_inflight_messages_set(MAX_INFLIGHT + 100)
        client.max_queued_messages_set(0)
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.will_set(self._topics[Kind.STATUS], WILL, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    async def _open(self, client: mqtt.Client) -> None:
        """paho's connect (TCP, TLS, CONNECT) blocks: run it in a worker thread."""
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, client.connect, self._host, self._port, self._keepalive)
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(lambda f: self._abandon(f, client))
            raise
        except (OSError, ValueError) as exc:
            raise ConnectError(f"cannot connect: {exc or type(exc).__name__}") from exc

    @classmethod
    def _abandon(cls, fut: asyncio.Future[MQTTErrorCode], client: mqtt.Client) -> None:
        if not fut.cancelled():
            fut.exception()  # retrieved: the connect of a cancelled session may have failed
        cls._close_socket(client)

    @staticmethod
    def _close_socket(client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _watch(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        sock = client.socket()
        if sock is None:
            raise ConnectError("connection closed")
        loop.add_reader(sock, self._on_readable, client)
        if client.want_write():
            loop.add_writer(sock, self._on_writable, client)

    def _drop_connection(self) -> None:
        client, self._client = self._client, None
        self._connected = False
        if client is not None:
            client.on_socket_close = client.on_socket_register_write = client.on_socket_unregister_write = None
            sock = client.socket()
            if sock is not None and sock.fileno() >= 0 and self._loop is not None:
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
            self._close_socket(client)
        self._inflight.clear()
        self._inflight_ids.clear()
        self._replay_mids.clear()
        self._replay_acked.set()
        self._cursor = 0
        for waiter in self._mid_waiters.values():
            waiter.cancel()
        self._mid_waiters.clear()
        for fut in (self._connack, self._lost):
            if fut is not None and fut.done() and not fut.cancelled():
                fut.exception()
            elif fut is not None:
                fut.cancel()
        self._connack = self._lost = None

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self._keepalive / 6))
            if self._client is not None:
                self._client.loop_misc()

    # --- paho callbacks (on the event loop) --------------------------------------------------

    def _on_readable(self, client: mqtt.Client) -> None:
        if client is not self._client:
            return
        client.loop_read()
        sock = client.socket()
        while isinstance(sock, ssl.SSLSocket) and sock.pending() and client is self._client:
            client.loop_read()  # decrypted bytes wait inside the TLS object, not on the socket
            sock = client.socket()
        self._flush_acks()

    def _on_writable(self, client: mqtt.Client) -> None:
        if client is self._client:
            client.loop_write()

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self._loop is not None and sock.fileno() >= 0:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _on_socket_register_write(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            self._loop.add_writer(sock, self._on_writable, client)

    def _on_socket_unregister_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            self._loop.remove_writer(sock)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: mqtt.ConnectFlags, reason: ReasonCode,
                    _properties: Properties | None) -> None:
        if client is not self._client or self._connack is None or self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(ConnectError(f"the broker refused the connection: {reason}"))
            return
        self._connected = True
        client.subscribe(self._topics[Kind.CONFIG], qos=1)
        self._publish_status(client)
        self._backlog.set()
        self._connack.set_result(None)

    def _on_disconnect(self, client: mqtt.Client, _userdata: Any, _flags: mqtt.DisconnectFlags,
                       _reason: ReasonCode, _properties: Properties | None) -> None:
        if client is not self._client:
            return
        self._connected = False
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectError("the connection closed before CONNACK"))
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _on_publish(self, client: mqtt.Client, _userdata: Any, mid: int, _reason: ReasonCode,
                    _properties: Properties | None) -> None:
        if client is not self._client:
            return
        ids = self._inflight.pop(mid, None)
        if ids:
            self._acked.extend(ids)
            self._inflight_ids.difference_update(ids)
        if mid in self._replay_mids:
            self._replay_mids.discard(mid)
            if not self._replay_mids:
                self._replay_acked.set()
        waiter = self._mid_waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if client is self._client and message.topic == self._topics[Kind.CONFIG]:
            self._on_config(bytes(message.payload))

    def _flush_acks(self) -> None:
        if not self._acked:
            return
        try:
            self._buffer.delete(self._acked)
        except sqlite3.Error:
            logger.exception("%s: cannot delete acknowledged readings (they will be sent again)",
                             self.station.id)
        self.stats.acknowledged += len(self._acked)
        self._acked.clear()
        if not len(self._buffer):
            self._emptied.set()

    # --- replay ------------------------------------------------------------------------------

    async def _replay_loop(self) -> None:
        period = max(1.0, 1.0 / self._replay_rate)
        budget = max(1, int(self._replay_rate * period))
        while True:
            await self._backlog.wait()
            if not self._connected:
                self._backlog.clear()
                continue
            if self._replay_mids:
                self._replay_acked.clear()
                await self._replay_acked.wait()
                continue
            if not self._replay_step(budget):
                self._backlog.clear()
                continue
            await self._clock.sleep_until(self._clock.time() + period)

    def _replay_step(self, budget: int) -> int:
        """Send up to ``budget`` of the oldest readings not in flight; returns how many."""
        client = self._client
        if client is None:
            return 0
        picked: list[Row] = []
        while len(picked) < budget:
            rows = self._buffer.oldest(after=self._cursor, limit=budget)
            for row in rows:
                self._cursor = row.id
                if row.id not in self._inflight_ids:
                    picked.append(row)
                    if len(picked) == budget:
                        break
            if len(rows) < budget:
                break
        by_kind: dict[Kind, list[Row]] = {}
        for row in picked:
            by_kind.setdefault(row.kind, []).append(row)
        sent = 0
        for kind, rows in by_kind.items():
            for chunk in _chunks(rows):
                mid = self._publish(client, kind, chunk, batch=True)
                if mid is None:
                    return sent
                self._replay_mids.add(mid)
                sent += len(chunk)
        if sent:
            logger.debug("%s: replayed %d readings, %d buffered", self.station.id, sent, len(self._buffer))
        return sent


def _chunks(rows: list[Row]) -> list[list[Row]]:
    """Split into JSON arrays within the contract: at most MAX_BATCH readings and 64 KiB."""
    out: list[list[Row]] = []
    chunk: list[Row] = []
    size = 2
    for row in rows:
        n = len(row.payload.encode()) + 1
        if chunk and (len(chunk) >= MAX_BATCH or size + n > MAX_PAYLOAD_BYTES):
            out.append(chunk)
            chunk, size = [], 2
        chunk.append(row)
        size += n
    if chunk:
        out.append(chunk)
    return out


async def serve(settings: Settings, *, stop: asyncio.Event) -> None:
    """``python -m firmware_stubs``: one station's agent on stub drivers, until ``stop``."""
    registry = settings.load_registry()
    if not settings.station_id:
        raise AgentError("no station: give --station or STATION_ID")
    station = registry.get(settings.station_id)
    if station is None:
        raise AgentError(f"station {settings.station_id} is not in the registry")
    if not station.reports:
        raise AgentError(f"station {station.id} is {station.kind}: it has no telemetry")
    url = settings.mqtt
    username, password = url.username, url.password
    if settings.station_password:
        username, password = username or station.id, settings.station_password
    values = StubValues(path=settings.agent_stub_file, text=settings.agent_stub_values)
    with BufferFile(path=settings.agent_buffer_path) as file:
        buffer = file.buffer(station=station.id, max_readings=settings.agent_buffer_max)
        logger.info("%s: agent starting (buffer %s: %d readings, seq %d)", station.id, settings.agent_buffer_path,
                    len(buffer), buffer.seq)
        async with Agent(station=station, drivers=stub_drivers(station, values), buffer=buffer, host=url.host,
                         port=url.port, username=username, password=password, tls=settings.mqtt_tls_context(),
                         replay_rate=settings.agent_replay_rate):
            await stop.wait()
