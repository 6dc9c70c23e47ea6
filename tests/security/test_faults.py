"""Faults survived with authentication and ACLs on: the city's 45 real agents (each logged in as its
station) through the broker, ingest and InfluxDB, and nothing lost or stored twice.

Already covered elsewhere, without auth: ingest SIGKILLed, the spool full and the spool surviving a
crash (tests/ingest/test_faults.py), an agent's buffer at its bound and one agent across a broker
restart (tests/firmware_stubs/test_agent.py), a station cut off for half an hour (tests/simulator/test_city.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from simulator.faults import ClockSkew, Scenario
from simulator.simulation import Broker, Simulation, Summary
from telemetry import registry
from tests.rig import GatewayProcess, Influxd, IngestProcess, Mosquitto, until, wait_for
from tests.security.conftest import Credentials, GatewayAs, IngestAs

READINGS = "occupancy, charger, temperature"
T = TypeVar("T")


async def eventually(check: Callable[[], T], *, what: str) -> T:
    """``until`` with the minute a city of agents may need."""
    return await until(check, timeout=60.0, interval=0.1, what=what)


def stored_seqs(influxd: Influxd, db: str) -> dict[str, list[int]]:
    """Every stored reading's seq, by station."""
    out: dict[str, list[int]] = {}
    for row in influxd.rows(f"SELECT seq, station FROM {READINGS}", db):
        out.setdefault(row["station"], []).append(int(row["seq"]))
    return out


def assert_every_reading_once(summary: Summary, influxd: Influxd, db: str) -> None:
    """Each station's seq 1..produced stored exactly once; every produced reading was acknowledged."""
    produced = {t.station: t.produced for t in summary.stations}
    assert summary.total("buffered") == summary.total("dropped") == 0
    assert summary.total("acknowledged") == summary.total("produced")
    total = sum(produced.values())
    wait_for(lambda: influxd.count("occupancy", "seq", db) + influxd.count("charger", "seq", db)
             + influxd.count("temperature", "seq", db) >= total, timeout=60, what=f"the {total} readings stored")
    seqs = stored_seqs(influxd, db)
    for station, n in produced.items():
        assert sorted(seqs.get(station, [])) == list(range(1, n + 1)), f"{station}: a seq missing or stored twice"
    assert influxd.count("ingest_rejects", "detail", db) == 0


def city(auth_broker: Mosquitto, credentials: Credentials, *, start: float, duration: float, speed: float,
         scenario: Scenario | None = None, stations: int = 45) -> Simulation:
    broker = Broker("127.0.0.1", auth_broker.port, passwords=credentials.passwords)
    return Simulation(stations=registry.load().reporting[:stations], broker=broker, start=start, speed=speed,
                      duration=duration, seed=11, scenario=scenario, drain_timeout=30)


async def test_faults_broker_restarted_while_45_stations_report_nothing_lost_nothing_twice(
        auth_broker: Mosquitto, credentials: Credentials, ingest_as_service: IngestAs,
        gateway_as_service: GatewayAs, influxd: Influxd, db: str) -> None:
    ingest: IngestProcess = await asyncio.to_thread(ingest_as_service)
    gateway: GatewayProcess = await asyncio.to_thread(gateway_as_service)
    sim = city(auth_broker, credentials, start=float(int(time.time()) - 3600), duration=3600, speed=400)
    running = asyncio.create_task(sim.run())
    await eventually(lambda: sim.progress().acknowledged >= 3000, what="the city reporting")
    await asyncio.to_thread(auth_broker.stop)
    seen_by_gateway = await asyncio.to_thread(gateway.metric, "gateway_live_messages")
    await eventually(lambda: sim.progress().connected == 0 and sim.progress().buffered >= 500,
                     what="every agent offline, buffering")
    await asyncio.to_thread(auth_broker.start)
    await eventually(lambda: sim.progress().connected == 45, what="every agent back")
    summary = await running

    await asyncio.to_thread(assert_every_reading_once, summary, influxd, db)
    assert summary.end == sim.start + 3600
    assert "(session resumed)" in ingest.log.read_text(), "ingest did not get its persistent session back"
    assert await asyncio.to_thread(ingest.metric, "ingest_mqtt_connected") == 1
    # the gateway keeps no session: it only sees anything after the restart if it subscribed again
    await eventually(lambda: gateway.metric("gateway_mqtt_connected") == 1
                     and gateway.metric("gateway_live_messages") > seen_by_gateway + 1000,
                     what="the gateway reconnected and receiving again")


async def test_faults_influxdb_down_for_a_simulated_minute_under_load(
        auth_broker: Mosquitto, credentials: Credentials, ingest_as_service: IngestAs, own_influxd: Influxd,
        db: str) -> None:
    ingest: IngestProcess = await asyncio.to_thread(ingest_as_service, influx=own_influxd)
    sim = city(auth_broker, credentials, start=float(int(time.time()) - 1200), duration=1200, speed=120)
    running = asyncio.create_task(sim.run())
    await eventually(lambda: sim.progress().acknowledged >= 1000, what="the city reporting")
    await asyncio.to_thread(own_influxd.stop)
    down = sim.clock.time()
    await eventually(lambda: sim.clock.time() >= down + 60 and ingest.metric("ingest_spool_batches") >= 2
                     and ingest.metric("ingest_influx_up") == 0, what="a simulated minute spooled")
    acked_while_down = sim.progress().acknowledged
    await asyncio.to_thread(own_influxd.start)
    assert sim.clock.time() - down >= 60
    summary = await running

    assert summary.total("acknowledged") > acked_while_down, "the outage did not happen under load"
    await asyncio.to_thread(assert_every_reading_once, summary, own_influxd, db)
    await eventually(lambda: ingest.metric("ingest_spool_batches") == 0 and ingest.metric("ingest_influx_up") == 1,
                     what="the spool drained")
    assert ingest.metric("ingest_spooled_batches_total") >= 2


SKEWED = "PL-KT-002"


async def test_faults_clock_hours_ahead_gets_counted_rejects_not_future_data(
        auth_broker: Mosquitto, credentials: Credentials, ingest_as_service: IngestAs, influxd: Influxd,
        db: str) -> None:
    ingest: IngestProcess = await asyncio.to_thread(ingest_as_service)
    scenario = Scenario(faults=(ClockSkew(station=SKEWED, skew=3 * 3600),))
    sim = city(auth_broker, credentials, start=float(int(time.time()) - 600), duration=600, speed=120,
               scenario=scenario, stations=3)
    summary = await sim.run()
    produced = {t.station: t.produced for t in summary.stations}
    assert summary.total("acknowledged") == summary.total("produced")

    def rejects() -> list[dict[str, object]]:
        return influxd.rows(f"SELECT * FROM monitor.ingest_rejects WHERE station = '{SKEWED}'", db)

    telemetry = ("/occupancy", "/charger", "/temperature")
    wait_for(lambda: sum(str(r["topic"]).endswith(telemetry) for r in rejects()) == produced[SKEWED], timeout=30,
             what=f"one reject per reading of {SKEWED} ({produced[SKEWED]})")
    # and its statuses (they carry its ts): the last, offline, may come a moment after its readings
    wait_for(lambda: len(rejects()) == ingest.metric('ingest_rejects_total{reason="ts_out_of_range"}'),
             what="every counted reject stored")
    found = rejects()
    assert {r["reason"] for r in found} == {"ts_out_of_range"}
    assert all("s ahead of the server clock (at most 300 s)" in str(r["detail"]) for r in found)
    assert sum(str(r["topic"]).endswith("/status") for r in found) >= 2, "online and offline, both rejected"
    seqs = stored_seqs(influxd, db)
    assert SKEWED not in seqs, "future readings were stored"
    assert influxd.count("station_status", "online", db, f"WHERE station = '{SKEWED}'") == 0
    others = {s: n for s, n in produced.items() if s != SKEWED}
    assert {s: sorted(seqs[s]) for s in others} == {s: list(range(1, n + 1)) for s, n in others.items()}


async def test_faults_clock_stepped_back_the_station_reports_again_at_once(
        auth_broker: Mosquitto, credentials: Credentials, ingest_as_service: IngestAs, influxd: Influxd,
        db: str) -> None:
    """An hour ahead for 5 minutes, then right: its readings carry the right time again within an interval."""
    await asyncio.to_thread(ingest_as_service)
    start = float(int(time.time()) - 900)
    scenario = Scenario(faults=(ClockSkew(station=SKEWED, skew=3600, at=0, for_=300),))
    sim = city(auth_broker, credentials, start=start, duration=900, speed=120, scenario=scenario, stations=3)
    summary = await sim.run()
    assert summary.total("acknowledged") == summary.total("produced")

    def after_the_skew() -> list[dict[str, object]]:
        return influxd.rows(f"SELECT people FROM occupancy WHERE station = '{SKEWED}' "
                            f"AND time >= {int((start + 300) * 1000)}ms", db)

    rows = wait_for(lambda: after_the_skew() if len(after_the_skew()) >= 8 else [], timeout=30,
                    what="occupancy readings of the station once its clock is right")
    first = min(int(str(r["time"])) for r in rows)
    assert first <= (start + 300 + 60) * 1000 + 1000, "the station stayed silent after its clock was set right"
