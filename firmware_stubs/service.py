"""``python -m firmware_stubs``: one station's agent on stub drivers, from its settings."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from firmware_stubs.agent import Address, Agent
from firmware_stubs.buffer import BufferFile
from firmware_stubs.config import Settings
from firmware_stubs.drivers import StubValues, stub_drivers
from firmware_stubs.exceptions import AgentError
from telemetry.registry import Station

logger = logging.getLogger(__name__)


def station_of(settings: Settings) -> Station:
    """The station to run: in the registry, and one that reports; raises AgentError naming the problem."""
    registry = settings.load_registry()
    if not settings.station_id:
        raise AgentError("no station: give --station or STATION_ID")
    station = registry.get(settings.station_id)
    if station is None:
        raise AgentError(f"station {settings.station_id} is not in the registry")
    if not station.reports:
        raise AgentError(f"station {station.id} is {station.kind}: it has no telemetry")
    return station


def addresses(settings: Settings, station: Station) -> list[Address]:
    """Every broker of ``MQTT_URL``; the user name is the URL's, else the station's with ``STATION_PASSWORD``."""
    nodes = settings.mqtt_nodes()
    if not settings.station_password:
        return nodes
    return [dataclasses.replace(n, username=n.username or station.id, password=settings.station_password)
            for n in nodes]


async def serve(settings: Settings, *, stop: asyncio.Event) -> None:
    """One station's agent on stub drivers, until ``stop``."""
    station = station_of(settings)
    brokers = addresses(settings, station)
    values = StubValues(path=settings.agent_stub_file, text=settings.agent_stub_values)
    with BufferFile(path=settings.agent_buffer_path) as file:
        buffer = file.buffer(station=station.id, max_readings=settings.agent_buffer_max)
        logger.info("%s: agent starting (buffer %s: %d readings, seq %d)", station.id, settings.agent_buffer_path,
                    len(buffer), buffer.seq)
        async with Agent(station=station, drivers=stub_drivers(station, values), buffer=buffer, brokers=brokers,
                         replay_rate=settings.agent_replay_rate):
            await stop.wait()
