"""The station agent: reads its drivers, buffers every reading on disk, publishes over MQTT.

The agent wires one object per concept, each holding its own state::

    Schedule      (schedule.py)       when each job is due on the agent's Clock (clock.py), and the
                                      chain of clock waits that runs them (no task)
    Sampler       (sampling.py)       the drivers -> readings with their seq and ts; driver errors
    Buffer        (buffer.py)         every reading on disk until the broker has it
    Outbox        (outbox.py)         messages awaiting their PUBACK; acknowledged rows deleted
    Replay        (replay.py)         the backlog, oldest first, at replay_rate (a task)
    Connection    (connection.py)     one paho session at a time on the event loop's selector,
                                      reconnecting with backoff (a task, and one for keepalive),
                                      opened through a Transport (transport.py)
    RemoteConfig  (remote_config.py)  the intervals, set by the retained config topic
    StatusReport  (status.py)         the retained status; the last will

A reading goes: schedule tick -> sampler -> buffer -> outbox (at once when connected, else the
replay's later). Every timer runs on the injected clock: the wall clock on a device, simulated
time in the simulator, which runs this same agent on simulated drivers and transport.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, Self

from firmware_stubs import __version__
from firmware_stubs.buffer import Buffer, NewReading, Row
from firmware_stubs.clock import Clock, WallClock
from firmware_stubs.connection import Address, Connection, Endpoint, Events
from firmware_stubs.drivers import Drivers
from firmware_stubs.outbox import MAX_INFLIGHT, Outbox
from firmware_stubs.remote_config import RemoteConfig
from firmware_stubs.replay import Replay
from firmware_stubs.sampling import Sampler
from firmware_stubs.schedule import Schedule
from firmware_stubs.status import WILL, StatusReport
from firmware_stubs.transport import TCP, Transport
from telemetry.backoff import Backoff
from telemetry.contract import AgentConfig, Kind, topic
from telemetry.registry import Station

logger = logging.getLogger(__name__)

FIRMWARE: Final = f"yizhan-agent {__version__}"
HEALTHY_AFTER: Final = 10.0
"""A session up this long (agent clock seconds) resets the reconnect backoff."""
_ACK_TIMEOUT: Final = 5.0

__all__ = ["FIRMWARE", "HEALTHY_AFTER", "WILL", "Address", "Agent", "AgentStats", "default_backoff"]


@dataclass(slots=True, frozen=True)
class AgentStats:
    """What one agent did since it started."""

    produced: int = 0
    """Readings read from the drivers and stored."""
    acknowledged: int = 0
    """Readings the broker acknowledged (and the buffer deleted)."""
    driver_errors: int = 0
    connects: int = 0


def default_backoff(rng: Callable[[], float] = random.random) -> Backoff:
    """1 s doubling to 60 s, each wait 50-100 % of its step, reset after a session of HEALTHY_AFTER."""
    return Backoff(initial=1.0, cap=60.0, jitter=0.5, healthy_after=HEALTHY_AFTER, rng=rng)


class Agent:
    """The software of one station: drivers -> buffer -> MQTT.

    Use as ``async with Agent(...) as agent:``; leaving the block shuts down cleanly (sends what
    it can within ``flush_timeout``, publishes ``offline``, disconnects). ``close(graceful=False)``
    is a power cut instead: the broker publishes the last will.

    Args:
        station: the station in the registry (its chargers and sensors).
        drivers: the hardware.
        buffer: the station's store-and-forward buffer (``seq`` lives there).
        brokers: one or more brokers (the nodes of a cluster), tried in this order: on a refused or
            lost connection the agent moves to the next (see ``failover.py``).
        clock: the agent's time (default the wall clock).
        config: the intervals to start with; by default the last config accepted (kept in the
            buffer), else the contract's defaults. The retained config topic overrides it.
        replay_rate: backlog readings sent per second (of ``clock``) after a reconnection.
        backoff: the waits between connection attempts, over all brokers (default :func:`default_backoff`).
        transport: how a session reaches the broker (default TCP; the simulator's can be cut).
        occupancy_poll_s: how often to read a counter that cannot say when it will change.
        flush_timeout: on clean shutdown, how long to wait for the buffer to empty (real seconds).
        on_reading: called with every reading stored (kind, JSON payload); the simulator counts
            and records with it.
    """

    __slots__ = ("_buffer", "_clock", "_closing", "_connection", "_flush_timeout", "_on_reading", "_outbox",
                 "_produced", "_remote", "_replay", "_runner", "_sampler", "_schedule", "_status", "_topics",
                 "station")

    def __init__(self, *, station: Station, drivers: Drivers, buffer: Buffer, brokers: Sequence[Address],
                 clock: Clock | None = None, config: AgentConfig | None = None, replay_rate: float = 50.0,
                 fw: str = FIRMWARE, keepalive: int = 60, connect_timeout: float = 10.0,
                 backoff: Backoff | None = None, transport: Transport = TCP, occupancy_poll_s: float = 1.0,
                 flush_timeout: float = 5.0, on_reading: Callable[[Kind, str], None] | None = None) -> None:
        sid = station.id
        self.station = station
        self._buffer = buffer
        self._clock: Clock = clock or WallClock()
        self._topics = {kind: topic(sid, kind) for kind in Kind}
        self._flush_timeout = flush_timeout
        self._on_reading = on_reading
        self._produced = 0
        self._remote = RemoteConfig(buffer=buffer, config=config, name=sid)
        self._status = StatusReport(fw=fw)
        self._sampler = Sampler(station=station, drivers=drivers, buffer=buffer, occupancy_poll_s=occupancy_poll_s)
        self._schedule = Schedule(clock=self._clock, config=self._remote.config, sampler=self._sampler,
                                  on_tick=self._on_tick, name=sid)
        self._connection = Connection(
            endpoints=[Endpoint.of(b, f"station-{sid}", keepalive) for b in brokers],
            will=(self._topics[Kind.STATUS], WILL), subscribe=self._topics[Kind.CONFIG],
            max_inflight=MAX_INFLIGHT + 100, transport=transport, backoff=backoff or default_backoff(),
            clock=self._clock, connect_timeout=connect_timeout, name=sid,
            events=Events(self._on_connect, self._on_puback, self._on_message, self._on_read, self._on_drop))
        self._outbox = Outbox(buffer=buffer, connection=self._connection, topics=self._topics, name=sid)
        self._replay = Replay(rate=replay_rate, buffer=buffer, outbox=self._outbox, connection=self._connection,
                              clock=self._clock, name=sid)
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

    # --- public state ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connection.connected

    @property
    def config(self) -> AgentConfig:
        """The config the agent runs."""
        return self._remote.config

    @property
    def config_error(self) -> str | None:
        """Why the last config was refused, while it is the last one received."""
        return self._remote.error

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def dropped(self) -> int:
        return self._buffer.dropped

    @property
    def stats(self) -> AgentStats:
        """What the agent did since it started (a snapshot)."""
        return AgentStats(self._produced, self._outbox.acknowledged, self._sampler.driver_errors,
                          self._connection.connects)

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
        now = self._clock.time()
        self._status.started(now)
        self._schedule.start(now)
        self._runner = asyncio.create_task(self._run(), name=f"agent {self.station.id}")
        self._runner.add_done_callback(self._runner_done)

    async def _run(self) -> None:
        sid = self.station.id
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._connection.run(), name=f"{sid} connection")
            tg.create_task(self._replay.run(), name=f"{sid} replay")
            tg.create_task(self._connection.keepalive(), name=f"{sid} keepalive")

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: the agent stopped on an unexpected error", self.station.id,
                         exc_info=task.exception())

    def stop_reading(self) -> None:
        """Stop reading the drivers, for good; sending, replay and status go on until :meth:`close`."""
        self._schedule.stop()

    async def close(self, *, graceful: bool = True) -> None:
        """Stop reading the drivers; with ``graceful``, flush, publish offline and disconnect.

        Without ``graceful`` this is a power cut: the connection is dropped without DISCONNECT,
        so the broker publishes the last will; the buffer keeps whatever was not acknowledged.
        """
        if self._closing:
            return
        self._closing = True
        self._connection.closing()
        self.stop_reading()
        if not graceful:  # at once, before any await: what was not acknowledged stays buffered
            self._connection.drop()
            self._outbox.forget_acks()
        try:
            if graceful:
                await self._goodbye()
        finally:
            if self._runner is not None:
                self._runner.cancel()
                await asyncio.wait([self._runner])
            self._connection.drop()
            if graceful:
                self._outbox.flush()

    async def _goodbye(self) -> None:
        sid = self.station.id
        if self._flush_timeout > 0 and len(self._buffer) and not await self._outbox.drained(self._flush_timeout):
            logger.warning("%s: shutting down with %d readings still buffered", sid, len(self._buffer))
        if not self._connection.connected:
            return
        mid = self._publish_status(state="offline")
        if mid is not None:
            await asyncio.wait([self._outbox.wait_for(mid)], timeout=_ACK_TIMEOUT)
        await self._connection.disconnect(_ACK_TIMEOUT)
        logger.info("%s: disconnected (offline)", sid)

    # --- readings: schedule -> buffer -> outbox ----------------------------------------------

    def _on_tick(self, new: list[NewReading], status: bool) -> None:
        self._store(new)
        if status:
            self._publish_status()

    def _store(self, new: list[NewReading]) -> None:
        if not new:
            return
        buffer = self._buffer
        dropped = buffer.dropped
        try:
            rows = buffer.add(new)
        except sqlite3.Error:
            logger.exception("%s: cannot store %d readings in the buffer", self.station.id, len(new))
            return
        self._produced += len(new)
        if buffer.dropped > dropped:
            logger.warning("%s: buffer full (%d readings) or past the contract's age limit: dropped the %d oldest",
                           self.station.id, buffer.max_readings, buffer.dropped - dropped)
        if self._on_reading is not None:
            for r in new:
                self._on_reading(r.kind, r.payload)
        self._send_live(rows)

    def _send_live(self, rows: list[Row]) -> None:
        if not self._connection.connected or self._outbox.full:
            self._replay.wake()
            return
        for row in rows:
            if self._outbox.send(row.kind, [row], batch=False) is None:
                self._replay.wake()
                return

    def _publish_status(self, *, state: Literal["online", "offline"] = "online") -> int | None:
        if not self._connection.connected:
            return None
        remote = self._remote
        payload = self._status.payload(self._clock.time(), state=state, buffered=len(self._buffer),
                                       dropped=self._buffer.dropped, driver_errors=self._sampler.driver_errors,
                                       config=remote.config, error=remote.error)
        return self._connection.publish(self._topics[Kind.STATUS], payload, retain=True)

    # --- what the connection tells ----------------------------------------------------------

    def _on_connect(self) -> None:
        e = self._connection.endpoint
        logger.info("%s: connected to %s:%s (%d buffered)", self.station.id, e.host, e.port, len(self._buffer))
        self._publish_status()
        self._replay.wake()

    def _on_puback(self, mid: int) -> None:
        self._outbox.acknowledge(mid)
        self._replay.acknowledge(mid)

    def _on_read(self) -> None:
        self._outbox.flush()

    def _on_drop(self) -> None:
        self._outbox.clear()
        self._replay.reset()

    def _on_message(self, message_topic: str, payload: bytes) -> None:
        if message_topic != self._topics[Kind.CONFIG]:
            return
        new = self._remote.receive(payload)
        if new is not None:
            self._schedule.reconfigure(new)
        self._publish_status()
