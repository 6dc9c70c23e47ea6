"""The service report from a simulated month with faults: raw readings written as ingest writes them,
rollups made by ingest's own rebuild (``python -m ingest rollup``), the PDF made by
``python -m dashboards report``; every figure checked against the raw readings, computed here."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from PIL import Image

from dashboards.config import Settings
from dashboards.report import data, scheduler
from dashboards.report.period import Period, due
from dashboards.report.render import DISTRICT_NAMES, change, num, pct, total
from gateway.influx import InfluxReader
from simulator.model import StationFaults
from telemetry.registry import Registry, Station, load
from telemetry.storage import BEIJING as TZ
from telemetry.storage import DAY_MS
from tests.dashboards.month import Expected, Samples, Scenario, figures, simulate, visits_by, window
from tests.rig import ROOT, Influxd, child_env, free_port, stop_process, wait_for

MONTH, PREVIOUS, YEAR_BEFORE = Period(2026, 11), Period(2026, 10), Period(2025, 11)
COLD, QUIET, DARK = "PL-KT-001", "PL-KT-008", "PL-HT-001"  # DARK never reports
H = 3_600_000


def _at(day: int, hour: float = 0) -> int:
    """Epoch ms of a day of MONTH at a Beijing hour."""
    return MONTH.start_ms + (day - 1) * DAY_MS + int(hour * H)


SCENARIOS = {
    COLD: Scenario(
        faults=StationFaults(heating=[window(_at(10), 14)], chargers={"C2": [(window(_at(20, 2), 5), "E07")]},
                             dropout={"outdoor": [window(_at(5, 9), 3)]}),
        silent=((_at(15, 8), _at(15, 14)),)),
    QUIET: Scenario(faults=StationFaults(heating=[window(_at(3, 1), 8)]), silent=((_at(25), _at(26)),),
                    counter_reset_ms=_at(12, 12)),
}
SPANS = ((YEAR_BEFORE.start_ms + 9 * DAY_MS, YEAR_BEFORE.start_ms + 10 * DAY_MS),  # a day a year before
         (PREVIOUS.end_ms - 2 * DAY_MS, MONTH.end_ms))  # the last two days of October, then November


@dataclass(slots=True, frozen=True)
class SimulatedMonth:
    influxd: Influxd
    db: str
    registry_file: Path
    registry: Registry
    samples: dict[str, Samples]
    computed: dict[tuple[str, Period], Expected] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return {"INFLUX_URL": self.influxd.url, "INFLUX_DB": self.db, "STATIONS_FILE": str(self.registry_file),
                **extra}

    def expected(self, station_id: str, period: Period) -> Expected:
        """The figures of the raw readings (computed once per station and period: a second each)."""
        key = (station_id, period)
        if key not in self.computed:
            station = self.registry.by_id[station_id]
            self.computed[key] = figures(station, self.samples.get(station_id, Samples()), period)
        return self.computed[key]


def _registry_file(path: Path) -> Path:
    shipped = yaml.safe_load((ROOT / "telemetry" / "stations.yaml").read_text(encoding="utf-8"))["stations"]
    path.write_text(yaml.safe_dump({"stations": [s for s in shipped if s["id"] in (COLD, QUIET, DARK)]},
                                   allow_unicode=True), encoding="utf-8")
    return path


def _write(influxd: Influxd, db: str, lines: list[str]) -> None:
    for i in range(0, len(lines), 20_000):
        influxd.write(db, "\n".join(lines[i:i + 20_000]))


def _rebuild(env: dict[str, str], spool: Path) -> None:
    """Ingest's rebuild of the rollups from the raw readings (its checkpoint in a spool of its own; raw
    readings kept ten years, so that the year-before day stays whatever the date the test runs)."""
    since, until = f"{YEAR_BEFORE.start:%Y-%m-%d}", f"{MONTH.end:%Y-%m-%d}"
    proc = subprocess.run([sys.executable, "-m", "ingest", "rollup", "--since", since, "--until", until], cwd=ROOT,
                          env=child_env({**env, "INGEST_SPOOL_DIR": str(spool), "INGEST_RETENTION_RAW_DAYS": "3650"}),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory, influxd: Influxd) -> SimulatedMonth:
    work = tmp_path_factory.mktemp("report")
    registry_file = _registry_file(work / "stations.yaml")
    registry, db = load(registry_file), f"report_{uuid.uuid4().hex[:10]}"
    samples = {}
    for station_id, scenario in SCENARIOS.items():
        samples[station_id], lines = simulate(registry.by_id[station_id], SPANS, scenario)
        _write(influxd, db, lines)
    simulated = SimulatedMonth(influxd, db, registry_file, registry, samples)
    _rebuild(simulated.env(), work / "spool")
    return simulated


def _report(month: SimulatedMonth, out: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dashboards", "report", *args, "--out", str(out)], cwd=ROOT,
                          env=child_env(month.env(**env)), capture_output=True, text=True, timeout=120, check=False)


def _text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def _row(text: str, *cells: str) -> None:
    """The cells in this order on one line of the text (pdftotext -layout spaces the columns)."""
    pattern = r"[ \t]+".join(re.escape(c) for c in cells)
    assert re.search(pattern, text), f"no line with {' | '.join(cells)}"


@pytest.fixture(scope="module")
def november(month: SimulatedMonth, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("november") / "2026-11.pdf"
    proc = _report(month, out, "--month", "2026-11")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    return out, _text(out)


def _gathered(month: SimulatedMonth, period: Period, district: str | None = None) -> data.ReportData:
    async def run() -> data.ReportData:
        async with InfluxReader(url=month.influxd.url, database=month.db) as reader:
            return await data.gather(reader, month.registry, period, district=district)
    return asyncio.run(run())


def test_report_rollup_figures_equal_the_raw_readings(month: SimulatedMonth) -> None:
    """What the report reads from the rollups is what the raw readings give by the definitions."""
    report = _gathered(month, MONTH)
    for figures_ in report.stations:
        sid = figures_.station.id
        raw = month.expected(sid, MONTH)
        assert figures_.visits == raw.visits, sid
        assert figures_.visits_previous == month.expected(sid, PREVIOUS).visits, sid
        assert figures_.visits_year_before == month.expected(sid, YEAR_BEFORE).visits, sid
        for name in ("people_max", "hours_full", "cold_hours", "fault_minutes", "occupancy_minutes",
                     "device_minutes"):
            assert getattr(figures_, name) == getattr(raw, name), f"{sid} {name}"
        for name in ("people_mean", "indoor_min", "energy_kwh", "socket_hours"):
            assert getattr(figures_, name) == pytest.approx(getattr(raw, name), abs=1e-6), f"{sid} {name}"
    days, hours = visits_by(month.samples.values(), MONTH)
    assert [b.value for b in report.by_day] == days
    assert [b.value for b in report.by_hour] == hours


def test_report_the_faults_show(month: SimulatedMonth) -> None:
    """The simulated faults are in the figures: cold hours, charger faults, lost availability, no data."""
    by_id = {s.station.id: s for s in _gathered(month, MONTH).stations}
    cold, quiet, dark = by_id[COLD], by_id[QUIET], by_id[DARK]
    assert cold.cold_hours >= 6, "14 h of heating failure"
    assert cold.fault_minutes == 5 * 60, "charger C2 faulted for 5 h"
    assert cold.availability_pct == pytest.approx(100 * (1 - 6 / (30 * 24)))
    assert quiet.availability_pct == pytest.approx(100 * (1 - 1 / 30))
    assert quiet.visits is not None
    assert quiet.visits > 0
    assert not dark.has_data
    assert dark.visits is None
    assert dark.availability_pct == 0
    assert [s.station.id for s in _gathered(month, MONTH).troubled()][:1] == [DARK]


def _station_rows(month: SimulatedMonth, station: Station) -> list[tuple[str, ...]]:
    raw = month.expected(station.id, MONTH)
    previous, year_before = month.expected(station.id, PREVIOUS).visits, month.expected(station.id, YEAR_BEFORE).visits
    minutes, devices = MONTH.minutes, 1 + len(station.chargers) + len(station.sensors)
    return [
        (station.id, station.name, DISTRICT_NAMES[station.district], num(raw.visits), num(previous),
         change(raw.visits, previous), num(year_before), change(raw.visits, year_before)),
        (station.id, station.name, str(station.capacity), num(raw.people_mean, 1), num(raw.people_max),
         num(raw.hours_full), num(raw.cold_hours), num(raw.indoor_min, 1)),
        (station.id, station.name, num(raw.energy_kwh, 1), num(raw.socket_hours, 1), num(raw.fault_minutes),
         pct(100 * raw.occupancy_minutes / minutes), pct(100 * raw.device_minutes / (minutes * devices))),
    ]


def test_report_pdf_shows_every_figure_of_the_raw_readings(month: SimulatedMonth, november: tuple[Path, str]) -> None:
    _, text = november
    assert "平凉市职工驿站月度服务报告 2026年11月" in text
    for station in month.registry.reporting:
        for cells in _station_rows(month, station):
            _row(text, *cells)
    now, before, year = (total(month.expected(s.id, p).visits for s in month.registry.reporting)
                         for p in (MONTH, PREVIOUS, YEAR_BEFORE))
    _row(text, "全市 City", num(now), num(before), change(now, before), num(year), change(now, year))
    _row(text, "服务人次", num(now), "较上期", change(now, before))
    _row(text, "开放站点（有数据）", "2/3", "登记驿站总数", "3")
    days, hours = visits_by(month.samples.values(), MONTH)
    _row(text, *map(num, days[:16]))
    _row(text, *map(num, days[16:]))
    _row(text, *map(num, hours[:12]))
    _row(text, *map(num, hours[12:]))
    assert "低于 16 °C" in text, "the notes define a cold hour"


def test_report_pages_are_printed_not_blank(november: tuple[Path, str], tmp_path: Path) -> None:
    pdf, _ = november
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 2
    for page in pages:
        with Image.open(page) as image:
            assert image.size[0] < image.size[1], "A4 portrait"
            grey = image.convert("L")
            inked = sum(grey.histogram()[:200])
            assert inked > 0.005 * grey.size[0] * grey.size[1], f"{page.name} is blank"


def test_report_embeds_the_cjk_font(november: tuple[Path, str]) -> None:
    pdf, _ = november
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    assert fonts, "no font at all"
    cjk = [f for f in fonts if "WenQuanYiMicroHei" in f]
    assert cjk, fonts
    for line in fonts:
        assert line.split()[-5:-2] == ["yes", "yes", "yes"], f"not embedded as a subset with a Unicode map: {line}"


def test_report_of_a_month_without_data_says_so(month: SimulatedMonth, tmp_path: Path) -> None:
    proc = _report(month, tmp_path / "august.pdf", "--month", "2026-08")
    assert proc.returncode == 0, proc.stderr
    assert "no data" in proc.stdout
    assert "本期无数据" in _text(tmp_path / "august.pdf")
    proc = _report(month, tmp_path / "none.pdf", "--month", "2026-11", INFLUX_DB=f"absent_{uuid.uuid4().hex[:6]}")
    assert proc.returncode == 0, proc.stderr
    assert "本期无数据" in _text(tmp_path / "none.pdf")


def test_report_of_one_district(month: SimulatedMonth, tmp_path: Path) -> None:
    proc = _report(month, tmp_path / "kongtong.pdf", "--month", "2026-11", "--district", "kongtong")
    assert proc.returncode == 0, proc.stderr
    text = _text(tmp_path / "kongtong.pdf")
    assert "范围 Scope：崆峒区" in text
    _row(text, "开放站点（有数据）", "2/2", "登记驿站总数", "2")
    assert COLD in text
    assert DARK not in text
    assert "全市 City" not in text


def test_report_of_a_year(month: SimulatedMonth, tmp_path: Path) -> None:
    proc = _report(month, tmp_path / "2026.pdf", "--year", "2026")
    assert proc.returncode == 0, proc.stderr
    text = _text(tmp_path / "2026.pdf")
    assert "平凉市职工驿站年度服务报告 2026年" in text
    for sid in (COLD, QUIET):
        station = month.registry.by_id[sid]
        this, last = month.expected(sid, Period(2026)).visits, month.expected(sid, Period(2025)).visits
        _row(text, sid, station.name, DISTRICT_NAMES[station.district], num(this), num(last), change(this, last))


def test_report_refuses_bad_arguments_and_an_unreachable_influxdb(month: SimulatedMonth, tmp_path: Path) -> None:
    for args in (("--month", "2026-13"), ("--month", "2026"), ("--year", "2026-01"), ("--month", "2026-11",
                                                                                          "--district", "xian")):
        proc = _report(month, tmp_path / "x.pdf", *args)
        assert proc.returncode == 2, args
        assert "error" in proc.stderr, args
    proc = _report(month, tmp_path / "x.pdf", "--month", "2026-11", INFLUX_URL=f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 1
    assert "cannot read the rollups" in proc.stderr
    assert not (tmp_path / "x.pdf").exists()


def test_report_refuses_a_font_it_cannot_load_before_reading_figures(month: SimulatedMonth, tmp_path: Path) -> None:
    """A missing or non-TrueType REPORT_FONT_FILE: one line naming the setting, no traceback, no PDF."""
    not_a_font = tmp_path / "font.ttf"
    not_a_font.write_bytes(b"not a font")
    for font in (not_a_font, tmp_path / "missing.ttc"):
        proc = _report(month, tmp_path / "x.pdf", "--month", "2026-11", REPORT_FONT_FILE=str(font),
                       INFLUX_URL=f"http://127.0.0.1:{free_port()}")  # checked before InfluxDB is asked
        assert proc.returncode == 1, proc.stderr
        assert f"REPORT_FONT_FILE {font}: cannot load the font" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "x.pdf").exists()


def test_report_due_is_the_month_that_closed_a_delay_ago() -> None:
    delay = timedelta(hours=2)
    assert due(datetime(2026, 12, 1, 2, 0, tzinfo=TZ), delay) == MONTH
    assert due(datetime(2026, 12, 1, 1, 59, tzinfo=TZ), delay) == PREVIOUS
    assert due(datetime(2026, 11, 30, 17, 30, tzinfo=UTC), delay) == PREVIOUS, "01:30 on 1 December in Beijing"
    assert due(datetime(2027, 1, 15, tzinfo=TZ), delay) == Period(2026, 12)


@pytest.fixture
def scheduled(month: SimulatedMonth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in month.env(REPORTS_DIR=str(tmp_path / "reports"), REPORT_DELAY_S="7200").items():
        monkeypatch.setenv(key, value)
    return Settings()


async def test_report_scheduler_makes_the_due_report_once(month: SimulatedMonth, scheduled: Settings) -> None:
    """The due month, the months before it that have data (backfill), then nothing more; no file for empty ones."""
    empty: set[Period] = set()
    before = datetime(2026, 12, 1, 1, 0, tzinfo=TZ)  # two hours not passed yet: October is due
    assert await scheduler.check(scheduled, month.registry, before, empty=empty) == [PREVIOUS, YEAR_BEFORE]
    assert len(empty) == 11, "the backfilled months without data are remembered"
    after = datetime(2026, 12, 1, 3, 0, tzinfo=TZ)
    assert await scheduler.check(scheduled, month.registry, after, empty=empty) == [MONTH]
    made = scheduled.reports_dir / "2026-11.pdf"
    stamp = made.stat().st_mtime_ns
    assert await scheduler.check(scheduled, month.registry, after, empty=empty) == [], "made once"
    assert made.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in scheduled.reports_dir.iterdir()) == ["2025-11.pdf", "2026-10.pdf", "2026-11.pdf"]
    raw = month.expected(COLD, MONTH)
    _row(_text(made), COLD, month.registry.by_id[COLD].name, "崆峒区", num(raw.visits))
    assert "2025年11月" in _text(scheduled.reports_dir / "2025-11.pdf")


async def test_report_scheduler_makes_the_year_on_1_january(month: SimulatedMonth, scheduled: Settings) -> None:
    """December is due, with the year it closed; December has no data and still gets its report."""
    new_year = datetime(2027, 1, 1, 3, 0, tzinfo=TZ)
    made = await scheduler.check(scheduled, month.registry, new_year)
    assert made == [Period(2026, 12), Period(2026), MONTH, PREVIOUS], made
    assert "本期无数据" in _text(scheduled.reports_dir / "2026-12.pdf")
    year = _text(scheduled.reports_dir / "2026.pdf")
    assert "2026年" in year
    visits = total(month.expected(s.id, p).visits for s in month.registry.reporting for p in (PREVIOUS, MONTH))
    assert num(visits) in year, "the year's visits are October's and November's"


async def test_report_scheduler_writes_nothing_while_influxdb_is_down(
        month: SimulatedMonth, scheduled: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_URL", f"http://127.0.0.1:{free_port()}")
    assert await scheduler.check(Settings(), month.registry, datetime(2026, 12, 1, 3, 0, tzinfo=TZ)) == []
    assert not scheduled.reports_dir.exists() or not list(scheduled.reports_dir.iterdir())


def test_report_scheduler_command_writes_the_due_report(month: SimulatedMonth, tmp_path: Path) -> None:
    """``python -m dashboards report-scheduler`` at the machine's clock: the month due now appears, then SIGTERM."""
    reports = tmp_path / "reports"
    env = child_env(month.env(REPORTS_DIR=str(reports), REPORT_DELAY_S="0", REPORT_CHECK_INTERVAL_S="3600",
                              REPORT_BACKFILL_MONTHS="0"))
    expected = reports / f"{due(datetime.now(UTC), timedelta(0)).name}.pdf"
    with (tmp_path / "scheduler.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dashboards", "report-scheduler"], cwd=ROOT, env=env,
                                stdout=log, stderr=log)
    try:
        wait_for((reports / scheduler.HEARTBEAT).exists, timeout=60, what="the first check done")
        assert expected.read_bytes().startswith(b"%PDF")
        assert sorted(p.name for p in reports.iterdir()) == [scheduler.HEARTBEAT, expected.name], "no partial left"
    finally:
        stop_process(proc)
    assert proc.returncode == 0, (tmp_path / "scheduler.log").read_text()
