"""``GET /v1/visits``: rollups (made by ingest's rebuild) plus the raw open hour equal the raw steps."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from telemetry.storage import HOUR_MS, hour_of
from tests.gateway.conftest import Stack, start_stack
from tests.gateway.test_api import assert_problem
from tests.mqtt import publish
from tests.payloads import now_ms, occupancy, t
from tests.rig import Influxd, rebuild_rollups, wait_for
from tests.rollup_reference import Step, steps

STATIONS = {"PL-KT-001": "kongtong", "PL-KT-002": "kongtong", "PL-HT-001": "huating"}
HOURS = 50
EVERY_MS = 7 * 60_000
BATCH = 200
BEIJING = ZoneInfo("Asia/Shanghai")


def _readings(start_ms: int, end_ms: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """A door counter every 7 minutes, with a reboot (counters back to 0) half way."""
    entries = rng.randrange(1000)
    for seq, ts in enumerate(range(start_ms + rng.randrange(EVERY_MS), end_ms, EVERY_MS), start=1):
        entries = 0 if seq == 200 else entries + rng.choice((0, 0, 1, 2, 5))
        yield occupancy(seq, rng.randrange(10), ts=ts, entries=entries, exits=0)


@pytest.fixture(scope="module")
def visits_stack(tmp_path_factory: pytest.TempPathFactory, influxd: Influxd) -> Iterator[Stack]:
    """Three stations' door counters over the last 50 hours, through ingest; rollups by ingest's rebuild."""
    stack = start_stack(tmp_path_factory.mktemp("visits"), influxd)
    try:
        rng = random.Random(11)
        now = now_ms() - 5000
        total = 0
        for station in STATIONS:
            readings = list(_readings(now - HOURS * HOUR_MS, now, rng))
            total += len(readings)
            publish(stack.broker.port, [(t(station, "occupancy"), readings[i:i + BATCH])
                                        for i in range(0, len(readings), BATCH)])
        wait_for(lambda: stack.influxd.count("occupancy", "entries", stack.db) == total, timeout=60,
                 what=f"{total} readings in InfluxDB")
        rebuild_rollups(stack.influxd, stack.db, since_ms=now - (HOURS + 1) * HOUR_MS, spool=stack.dir)
        yield stack
    finally:
        stack.close()


def bucket(ms: int, every: str) -> int:
    moment = datetime.fromtimestamp(ms / 1000, BEIJING)
    match every:
        case "hour":
            return hour_of(ms)
        case "day":
            return int(moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
        case _:
            return int(moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def expected(readings: list[Step], body: dict[str, Any]) -> dict[str, dict[int, float]]:
    """The raw steps of the response's range, by its key and bucket."""
    start, end = _ms(body["start"]), _ms(body["end"])
    out: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for r in readings:
        if start <= r.time < end and r.step:
            key = {"city": "city", "district": r.series[1], "station": r.series[0]}[body["by"]]
            out[key][bucket(r.time, body["every"])] += r.step
    return {k: dict(v) for k, v in out.items()}


def answered(body: dict[str, Any]) -> dict[str, dict[int, float]]:
    return {s["key"]: {_ms(b["start"]): b["visits"] for b in s["buckets"] if b["visits"]} for s in body["series"]
            if s["total"]}


@pytest.mark.parametrize("every", ["hour", "day", "month"])
@pytest.mark.parametrize("by", ["city", "district", "station"])
def test_visits_equal_the_raw_door_counters_steps(visits_stack: Stack, by: str, every: str) -> None:
    start = datetime.now(UTC) - timedelta(hours=HOURS - 2)
    response = visits_stack.viewer.get("/v1/visits", params={"start": start.isoformat(), "by": by, "every": every})
    assert response.status_code == 200, response.text
    body = response.json()
    readings = steps(visits_stack.influxd, visits_stack.db, "occupancy", "entries", end_ms=now_ms() + 1)
    assert answered(body) == expected(readings, body)
    assert body["total"] == sum(sum(v.values()) for v in expected(readings, body).values()) > 0
    if every == "hour":
        open_hour = hour_of(_ms(body["end"]) - 1)
        assert any(open_hour in buckets for buckets in answered(body).values()), "the open hour, read raw"


def test_visits_of_a_past_range_end_on_its_hour(visits_stack: Stack) -> None:
    end = datetime.now(UTC) - timedelta(hours=10, minutes=17)
    body = visits_stack.viewer.get("/v1/visits", params={
        "start": (end - timedelta(hours=20)).isoformat(), "end": end.isoformat(), "by": "station",
        "every": "hour"}).json()
    assert _ms(body["end"]) == hour_of(int(end.timestamp() * 1000))
    assert _ms(body["start"]) == hour_of(int((end - timedelta(hours=20)).timestamp() * 1000))
    readings = steps(visits_stack.influxd, visits_stack.db, "occupancy", "entries", end_ms=now_ms())
    assert answered(body) == expected(readings, body)


def test_visits_refuse_bad_parameters_with_problems(visits_stack: Stack) -> None:
    get = visits_stack.viewer.get
    assert_problem(get("/v1/visits", params={"by": "country"}), 422, "by")
    assert_problem(get("/v1/visits", params={"every": "week"}), 422, "every")
    assert_problem(get("/v1/visits", params={"start": "2026-11-29T08:00:00"}), 422, "start needs a time zone offset")
    now = datetime.now(UTC)
    assert_problem(get("/v1/visits", params={"start": now.isoformat(), "end": (now - timedelta(hours=1)).isoformat()}),
                   422, "start must be before end")
    assert_problem(get("/v1/visits", params={"start": (now - timedelta(days=800)).isoformat(), "every": "hour"}),
                   422, "at most 10000 per request")
    assert get("/v1/visits", params={"start": (now - timedelta(days=800)).isoformat(), "every": "day"}).status_code \
        == 200
    assert_problem(visits_stack.anonymous.get("/v1/visits"), 401, "send an API token")
