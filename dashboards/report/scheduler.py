"""``report-scheduler``: make the reports that are due and missing, then check again later.

On the 1st of each month (``REPORT_DELAY_S`` after midnight, Beijing time, so that the month's
last rollups are in) the month that just ended has no report yet: it is made into
``REPORTS_DIR/YYYY-MM.pdf``; on 1 January the year that ended too, into ``REPORTS_DIR/YYYY.pdf``.
The ``REPORT_BACKFILL_MONTHS`` months before the due one are made as well when their file is
missing (a first deployment, a scheduler that was down over a month's end) and they have data: a
month before the system started gets no file, and is not asked again while the process runs. A
report that fails (InfluxDB down) is tried again at the next check; one that exists is never
remade, so deleting a file asks for it again. After each check the scheduler touches
``REPORTS_DIR/.scheduler-alive``, the heartbeat its healthcheck reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from dashboards.config import Settings
from dashboards.exceptions import ReportError
from dashboards.report.build import build
from dashboards.report.period import Period, due
from telemetry.registry import Registry

logger = logging.getLogger(__name__)

HEARTBEAT: Final = ".scheduler-alive"


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def run(settings: Settings, registry: Registry, stop: asyncio.Event,
              clock: Callable[[], datetime] = _utcnow) -> None:
    """Check every ``REPORT_CHECK_INTERVAL_S`` until ``stop`` is set."""
    logger.info("report scheduler: reports in %s, checked every %.0f s", settings.reports_dir,
                settings.report_check_interval_s)
    empty: set[Period] = set()
    while not stop.is_set():
        await check(settings, registry, clock(), empty=empty)
        settings.reports_dir.mkdir(parents=True, exist_ok=True)
        (settings.reports_dir / HEARTBEAT).touch()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.report_check_interval_s)


def wanted(now: datetime, delay: timedelta, backfill: int) -> list[tuple[Period, bool]]:
    """The reports due at ``now``, newest first, each with whether it is made even without data: the
    due month (always), its year when it is December (always), then ``backfill`` months before it."""
    month = due(now, delay)
    periods = [(month, True)]
    if month.month == 12:
        periods.append((Period(month.year), True))
    earlier = month
    for _ in range(backfill):
        earlier = earlier.previous()
        periods.append((earlier, False))
    return periods


async def check(settings: Settings, registry: Registry, now: datetime, *,
                empty: set[Period] | None = None) -> list[Period]:
    """Make the reports due at ``now`` that are missing (see :func:`wanted`); the periods written.

    ``empty`` remembers backfill months found without data, so that they are not read again.
    """
    empty = set() if empty is None else empty
    made: list[Period] = []
    for period, always in wanted(now, timedelta(seconds=settings.report_delay_s), settings.report_backfill_months):
        out = settings.reports_dir / f"{period.name}.pdf"
        if out.exists() or period in empty:
            continue
        try:
            await build(settings, registry, period, out, now=now, keep_empty=always)
        except ReportError as exc:
            logger.warning("report %s not made, tried again in %.0f s: %s", period.name,
                           settings.report_check_interval_s, exc)
            return made  # InfluxDB is down or refusing: the older ones will fail the same way
        if out.exists():
            made.append(period)
        else:
            logger.info("report %s: no data, not written", period.name)
            empty.add(period)
    return made
