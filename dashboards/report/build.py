"""One report made end to end: the figures read from InfluxDB, the PDF written atomically."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import datetime
from pathlib import Path

from dashboards.config import Settings
from dashboards.report import data, render
from dashboards.report.period import Period
from gateway.influx import InfluxReader
from telemetry.registry import Registry

logger = logging.getLogger(__name__)


async def build(settings: Settings, registry: Registry, period: Period, out: Path, *, district: str | None = None,
                now: datetime | None = None, keep_empty: bool = True) -> data.ReportData:
    """Gather ``period``'s figures and write the PDF to ``out`` (a reader never sees half a file);
    with ``keep_empty`` false, a period without data writes nothing.

    Raises:
        ReportError: the rollups could not be read, or the font cannot be loaded.
    """
    started = time.perf_counter()
    render.register_font(settings.report_font_file)  # a bad font fails before the figures are read
    async with InfluxReader(url=settings.influx_url, database=settings.influx_db,
                            username=settings.influx_username, password=settings.influx_password,
                            token=settings.influx_token, ca_file=settings.influx_ca_file, timeout=60.0) as reader:
        figures = await data.gather(reader, registry, period, district=district, now=now)
    gathered = time.perf_counter()
    if not figures.has_data and not keep_empty:
        return figures
    await asyncio.to_thread(_write, figures, out, settings.report_font_file)
    logger.info("report %s%s: %s (figures %.2f s, PDF %.2f s)", period.name, f" {district}" if district else "",
                out, gathered - started, time.perf_counter() - gathered)
    return figures


def _write(figures: data.ReportData, out: Path, font_file: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with partial.open("wb") as f:
        render.render(figures, f, font_file=font_file)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(out)
