"""Retention tiers: created at start with the configured durations; a second start changes nothing."""

from __future__ import annotations

from ingest.influxql import InfluxQL
from ingest.retention import ensure, policies
from telemetry.storage import Tier
from tests.conftest import IngestFactory
from tests.rig import Influxd, wait_for

DAYS = {"INGEST_RETENTION_RAW_DAYS": "100", "INGEST_RETENTION_ROLLUP_DAYS": "1000",
        "INGEST_RETENTION_MONITOR_DAYS": "7"}


def durations(influxd: Influxd, db: str) -> dict[str, tuple[str, bool]]:
    return {row["name"]: (row["duration"], row["default"])
            for row in influxd.rows(f'SHOW RETENTION POLICIES ON "{db}"', db)}


def test_retention_policies_have_the_configured_durations_after_start_and_a_second_start_keeps_them(
        influxd: Influxd, db: str, start_ingest: IngestFactory) -> None:
    want = {"autogen": ("2400h0m0s", True), "rollup": ("24000h0m0s", False), "monitor": ("168h0m0s", False)}
    first = start_ingest(**DAYS)
    wait_for(lambda: durations(influxd, db) == want, what=f"retention policies {want}")
    first.stop()
    second = start_ingest(**DAYS)
    second.stop()
    assert durations(influxd, db) == want
    assert "retention: CREATE" in first.log.read_text()
    assert "retention:" not in second.log.read_text()


async def test_retention_ensure_runs_nothing_the_second_time_and_alters_a_changed_duration(
        influxd: Influxd, db: str) -> None:
    days = {Tier.RAW: 400, Tier.ROLLUP: 3650, Tier.MONITOR: 30}
    async with InfluxQL(url=influxd.url, database=db) as ql:
        assert len(await ensure(ql, database=db, days=days)) == 3  # autogen altered, two created
        assert await ensure(ql, database=db, days=days) == []
        assert await ensure(ql, database=db, days={**days, Tier.MONITOR: 60}) == [
            f'ALTER RETENTION POLICY "monitor" ON "{db}" DURATION 60d']
        assert await policies(ql, db) == {"autogen": 9600, "rollup": 87600, "monitor": 1440}
