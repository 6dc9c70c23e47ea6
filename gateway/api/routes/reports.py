"""``/v1/reports``: the service reports (PDF) that ``python -m dashboards report-scheduler`` writes.

The files are read from ``GATEWAY_REPORTS_DIR``; only names of the form ``YYYY-MM.pdf`` (a month)
and ``YYYY.pdf`` (a year) are ever listed or served, so no request can reach another file.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from gateway.api import problems
from gateway.api.deps import ReportsDir, Viewer
from gateway.api.models import ReportFile, ReportList
from gateway.api.problems import Problem

PERIOD: Final = r"^\d{4}(-(0[1-9]|1[0-2]))?$"
_FILE = re.compile(r"(\d{4}(?:-(?:0[1-9]|1[0-2]))?)\.pdf")
router = APIRouter(prefix="/v1/reports", tags=["reports"], responses=problems.responses(401))
PeriodName = Annotated[str, PathParam(pattern=PERIOD, description="A calendar month YYYY-MM or year YYYY "
                                                                  "(Beijing time)", examples=["2026-01", "2026"])]


def _entry(path: Path) -> ReportFile | None:
    match = _FILE.fullmatch(path.name)
    if match is None or not path.is_file():
        return None
    stat = path.stat()
    period = match.group(1)
    return ReportFile(period=period, month=period if "-" in period else None, url=f"/v1/reports/{path.name}",
                      bytes=stat.st_size, created=datetime.fromtimestamp(stat.st_mtime, UTC))


@router.get("", summary="The service reports there are, newest first (a year's before its December's)")
def list_reports(_: Viewer, directory: ReportsDir) -> ReportList:
    paths = sorted(directory.glob("*.pdf"), reverse=True) if directory.is_dir() else []
    return ReportList(reports=[e for e in map(_entry, paths) if e is not None])


@router.get("/{period}.pdf", summary="One month's or year's service report (PDF)", response_class=FileResponse,
            responses={200: {"content": {"application/pdf": {}}, "description": "The report"},
                       **problems.responses(404, 422)})
def get_report(_: Viewer, directory: ReportsDir, period: PeriodName) -> FileResponse:
    path = directory / f"{period}.pdf"
    if not path.is_file():
        when = "the 1st of the next month" if "-" in period else "1 January of the next year"
        raise Problem(404, f"no report for {period}: it is made on {when} (python -m dashboards report-scheduler)")
    return FileResponse(path, media_type="application/pdf", filename=f"yizhan-report-{period}.pdf")
