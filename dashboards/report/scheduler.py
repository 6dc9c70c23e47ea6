"""``report-scheduler``: make last month's report when it is missing, then check again later.

On the 1st of each month (``REPORT_DELAY_S`` after midnight, Beijing time, so that the month's
last rollups are in) the month that just ended has no report yet: it is made into
``REPORTS_DIR/YYYY-MM.pdf``. A report that fails (InfluxDB down) is tried again at the next check;
one that exists is never remade, so deleting a file asks for it again. After each check the
scheduler touches ``REPORTS_DIR/.scheduler-alive``, the heartbeat its healthcheck reads.
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
    while not stop.is_set():
        await check(settings, registry, clock())
        settings.reports_dir.mkdir(parents=True, exist_ok=True)
        (settings.reports_dir / HEARTBEAT).touch()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.report_check_interval_s)


async def check(settings: Settings, registry: Registry, now: datetime) -> Period | None:
    """Make the report that is due at ``now`` if it is missing; the period made, or None."""
    period = due(now, timedelta(seconds=settings.report_delay_s))
    out = settings.reports_dir / f"{period.name}.pdf"
    if out.exists():
        return None
    try:
        await build(settings, registry, period, out, now=now)
    except ReportError as exc:
        logger.warning("report %s not made, tried again in %.0f s: %s", period.name,
                       settings.report_check_interval_s, exc)
        return None
    return period
