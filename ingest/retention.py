"""The retention tiers (``telemetry.storage.Tier``) as InfluxDB 1.x retention policies, kept at start.

``autogen`` (raw readings, the database's default policy) is altered to its duration; ``rollup`` and
``monitor`` are created, or altered when their duration differs. A policy that already has its
duration is left alone, so a second start changes nothing. InfluxDB 2.x/3.x keeps the tiers as
buckets with DBRP mappings, made by the deployment (``deploy/influxdb/init-dbrp.sh``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from ingest.influxql import InfluxQL
from telemetry.storage import Tier

logger = logging.getLogger(__name__)

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _hours(duration: str) -> float:
    """``9600h0m0s`` -> 9600.0 (``0s`` is infinite: 0)."""
    match = _DURATION.fullmatch(duration)
    if not match:
        raise ValueError(f"unexpected retention policy duration {duration!r}")
    h, m, s = (int(g or 0) for g in match.groups())
    return h + m / 60 + s / 3600


async def policies(ql: InfluxQL, database: str) -> dict[str, float]:
    """The database's retention policies: name -> duration in hours (0: infinite)."""
    (series,) = await ql.query([f'SHOW RETENTION POLICIES ON "{database}"'])
    return {row["name"]: _hours(row["duration"]) for s in series for row in s.rows}


async def ensure(ql: InfluxQL, *, database: str, days: Mapping[Tier, int]) -> list[str]:
    """Create or alter the tiers' policies to ``days``; returns the statements it had to run."""
    await ql.execute(f'CREATE DATABASE "{database}"')  # nothing when it exists
    current = await policies(ql, database)
    statements = []
    for tier, duration in days.items():
        name = tier.value
        if name not in current:
            statements.append(f'CREATE RETENTION POLICY "{name}" ON "{database}" DURATION {duration}d REPLICATION 1')
        elif current[name] != duration * 24:
            statements.append(f'ALTER RETENTION POLICY "{name}" ON "{database}" DURATION {duration}d')
    for statement in statements:
        logger.info("retention: %s", statement)
        await ql.execute(statement)
    return statements
