"""``/v1/reports``: the monthly report PDFs in GATEWAY_REPORTS_DIR, listed and served to viewers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import Stack, start_stack
from tests.gateway.test_api import assert_problem
from tests.rig import Influxd

NOVEMBER = b"%PDF-1.4 the November report\n%%EOF\n"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, influxd: Influxd) -> Iterator[tuple[Stack, Path]]:
    """A gateway whose reports directory holds two reports, files that are not reports, and a secret beside it."""
    root = tmp_path_factory.mktemp("reports")
    directory = root / "reports"
    directory.mkdir()
    (directory / "2026-11.pdf").write_bytes(NOVEMBER)
    (directory / "2026-10.pdf").write_bytes(b"%PDF-1.4 October\n")
    (directory / "2025.pdf").write_bytes(b"%PDF-1.4 the year 2025\n")
    (directory / "2025-12.pdf").write_bytes(b"%PDF-1.4 December\n")
    (directory / "20255.pdf").write_bytes(b"not a period")
    (directory / "2026-13.pdf").write_bytes(b"not a month")
    (directory / ".2026-12.pdf.partial").write_bytes(b"being written")
    (directory / "notes.txt").write_text("not a report")
    (root / "secret.pdf").write_bytes(b"outside the reports directory")
    stack = start_stack(root / "stack", influxd, GATEWAY_REPORTS_DIR=str(directory))
    yield stack, directory
    stack.close()


def test_reports_lists_the_reports_newest_first(reports: tuple[Stack, Path]) -> None:
    """Months and years; a year's report before its December's (both made on 1 January)."""
    stack, _ = reports
    body = stack.viewer.get("/v1/reports").json()
    assert [(r["period"], r["month"], r["url"], r["bytes"]) for r in body["reports"]] == [
        ("2026-11", "2026-11", "/v1/reports/2026-11.pdf", len(NOVEMBER)),
        ("2026-10", "2026-10", "/v1/reports/2026-10.pdf", 17),
        ("2025", None, "/v1/reports/2025.pdf", 23), ("2025-12", "2025-12", "/v1/reports/2025-12.pdf", 18)]
    assert all(r["created"].endswith("Z") or "+00:00" in r["created"] for r in body["reports"])


def test_reports_serves_a_month_as_pdf(reports: tuple[Stack, Path]) -> None:
    stack, _ = reports
    response = stack.viewer.get("/v1/reports/2026-11.pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.content == NOVEMBER
    assert "yizhan-report-2026-11.pdf" in response.headers["content-disposition"]
    assert stack.operator.get("/v1/reports/2026-10.pdf").status_code == 200, "an operator is a viewer too"
    year = stack.viewer.get("/v1/reports/2025.pdf")
    assert (year.status_code, year.content) == (200, b"%PDF-1.4 the year 2025\n")
    assert "yizhan-report-2025.pdf" in year.headers["content-disposition"]


def test_reports_missing_month_is_a_404_problem(reports: tuple[Stack, Path]) -> None:
    stack, _ = reports
    assert_problem(stack.viewer.get("/v1/reports/2026-09.pdf"), 404, "no report for 2026-09")
    assert_problem(stack.viewer.get("/v1/reports/2026-12.pdf"), 404, "no report for 2026-12")  # still partial
    assert_problem(stack.viewer.get("/v1/reports/2026.pdf"), 404, "no report for 2026: it is made on 1 January")


@pytest.mark.parametrize("period", ["2026-13", "2026-1", "26-11", "2026-11.pdf", "2026_11", "..", "%2e%2e", "20255",
                                    "2026-00"])
def test_reports_malformed_period_is_a_422_problem(reports: tuple[Stack, Path], period: str) -> None:
    stack, _ = reports
    assert_problem(stack.viewer.get(f"/v1/reports/{period}.pdf"), 422, "path.period")


@pytest.mark.parametrize("path", ["/v1/reports/../secret.pdf", "/v1/reports/..%2fsecret.pdf",
                                  "/v1/reports/%2e%2e%2fsecret.pdf", "/v1/reports/..%5csecret.pdf"])
def test_reports_never_serve_a_file_outside_the_directory(reports: tuple[Stack, Path], path: str) -> None:
    stack, _ = reports
    response = stack.viewer.send(stack.viewer.build_request("GET", httpx.URL(stack.gateway.url + path)))
    assert response.status_code in (404, 422), response.text
    assert b"outside the reports directory" not in response.content


def test_reports_need_a_token(reports: tuple[Stack, Path]) -> None:
    stack, _ = reports
    assert_problem(stack.anonymous.get("/v1/reports"), 401, "send an API token")
    assert_problem(stack.anonymous.get("/v1/reports/2026-11.pdf"), 401, "send an API token")
    assert_problem(stack.anonymous.get("/v1/reports/2026-11.pdf", headers={"Authorization": "Bearer nope"}), 401,
                   "not valid")
