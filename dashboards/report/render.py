"""The report as an A4 PDF: reportlab's document and tables, charts drawn by reportlab.graphics.

The font is WenQuanYi Micro Hei (Debian's ``fonts-wqy-microhei``), a TrueType collection that
reportlab embeds as a subset, so every glyph prints and the text stays text (pdftotext reads it
back). Noto CJK cannot be used: its outlines are CFF, which reportlab does not load. The charts are
reportlab drawings, vectors whose labels are text in the same font.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, Final

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from dashboards.exceptions import ReportError
from dashboards.report.data import COLD_C, Bar, ReportData, StationFigures
from dashboards.report.period import local_time

FONT: Final = "WenQuanYiMicroHei"
FONT_FILE: Final = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
DISTRICT_NAMES: Final = {"kongtong": "崆峒区", "huating": "华亭市", "jingchuan": "泾川县", "lingtai": "灵台县",
                         "chongxin": "崇信县", "zhuanglang": "庄浪县", "jingning": "静宁县"}
WIDTH: Final = A4[0] - 30 * mm
DASH: Final = "—"
_GRID: Final = colors.HexColor("#9aa5b1")
_HEAD: Final = colors.HexColor("#dde4ec")
_BAR: Final = colors.HexColor("#3a6ea5")

Cells = list[list[str]]


def _style(name: str, size: float, space: float = 2, before: float = 0) -> ParagraphStyle:
    return ParagraphStyle(name, fontName=FONT, fontSize=size, leading=size * 1.35, spaceAfter=space,
                          spaceBefore=before)


TITLE, H2 = _style("title", 17, space=6), _style("h2", 12, space=4, before=8)
BODY, NOTE = _style("body", 9, before=4), _style("note", 8)


def register_font(font_file: Path = FONT_FILE) -> None:
    """Load the CJK font once (the first face of the collection).

    Raises:
        ReportError: the file is missing, unreadable, or not a TrueType font reportlab can embed.
    """
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    try:
        font = TTFont(FONT, str(font_file), subfontIndex=0)
    except (OSError, TTFError) as exc:
        raise ReportError(f"REPORT_FONT_FILE {font_file}: cannot load the font ({exc}); the report needs a "
                          "TrueType font with CJK glyphs, e.g. Debian's fonts-wqy-microhei") from exc
    pdfmetrics.registerFont(font)


def render(data: ReportData, out: Path | BinaryIO, *, font_file: Path = FONT_FILE) -> None:
    """Write the report of ``data`` as a PDF to a path or a binary file."""
    register_font(font_file)
    doc = SimpleDocTemplate(str(out) if isinstance(out, Path) else out, pagesize=A4, title=_title(data),
                            author="yizhan", leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=15 * mm, initialFontName=FONT)
    story = _story(data) if data.has_data else _empty(data)
    doc.build(story, onFirstPage=_footer(data), onLaterPages=_footer(data))


def _story(data: ReportData) -> list[Flowable]:
    year = data.period.is_year
    return [
        *_heading(data), _summary(data), Spacer(0, 4 * mm),
        Paragraph("一、服务人次 Visits", H2), _table(_district_rows(data), numeric_from=1), Spacer(0, 3 * mm),
        KeepTogether([Paragraph("每月人次" if year else "每日人次", BODY),
                      _chart(data.by_day, "月" if year else "日"), _value_grid(data.by_day, 12 if year else 16)]),
        KeepTogether([Paragraph("各时段人次（北京时间，按到站所在小时合计）", BODY), _chart(data.by_hour, "时"),
                      _value_grid(data.by_hour, 12)]),
        Paragraph("各站人次", BODY), _table(_visit_rows(data), numeric_from=3),
        Paragraph("二、在站人数与室温 Occupancy and indoor temperature", H2),
        _table(_occupancy_rows(data), numeric_from=2),
        Paragraph("三、充电、可用率与数据完整性 Charging, availability, completeness", H2),
        _table(_health_rows(data), numeric_from=2),
        Paragraph("四、问题最多的站点 Stations with the most trouble", H2), *_trouble(data),
        Paragraph("说明 Notes", H2), *(Paragraph(n, NOTE) for n in _notes(data)),
    ]


def _empty(data: ReportData) -> list[Flowable]:
    where = _scope(data)
    return [*_heading(data), Spacer(0, 10 * mm),
            Paragraph(f"本期无数据 No data: {where}在{data.period.title}没有任何站点的汇总数据（小时汇总为空）。", H2),
            Paragraph("如果站点在此期间运行过，请检查 ingest 是否在运行，"
                      "或用 python -m ingest rollup 重建小时汇总。", BODY)]


def _title(data: ReportData) -> str:
    kind = "年度服务报告" if data.period.is_year else "月度服务报告"
    return f"平凉市职工驿站{kind} {data.period.title}"


def _scope(data: ReportData) -> str:
    return "全市" if data.district is None else DISTRICT_NAMES.get(data.district, data.district)


def _heading(data: ReportData) -> list[Flowable]:
    made = local_time(int(data.generated.timestamp() * 1000)).strftime("%Y-%m-%d %H:%M")
    return [Paragraph(_title(data), TITLE),
            Paragraph(f"范围 Scope：{_scope(data)}　　生成 Generated：{made}（北京时间）　　"
                      "来源：小时汇总 rollups", BODY)]


def _footer(data: ReportData) -> Callable[[Canvas, SimpleDocTemplate], None]:
    def draw(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7)
        canvas.drawString(15 * mm, 8 * mm, _title(data))
        canvas.drawRightString(A4[0] - 15 * mm, 8 * mm, f"第 {doc.page} 页")
        canvas.restoreState()
    return draw


# --- formatting ------------------------------------------------------------------------------------


def num(value: float | None, digits: int = 0) -> str:
    """A figure as printed: thousands separated, ``digits`` decimals, a dash for no data."""
    return DASH if value is None else f"{value:,.{digits}f}"


def pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}%"


def change(now: int | None, before: int | None) -> str:
    """The change against an earlier figure, as a signed percentage."""
    if now is None or not before:
        return DASH
    return f"{100.0 * (now - before) / before:+.1f}%"


def total(values: Iterable[int | None]) -> int | None:
    """The sum of the figures there are (None when there are none)."""
    present = [v for v in values if v is not None]
    return sum(present) if present else None


# --- tables --------------------------------------------------------------------------------------


def _table(rows: Cells, *, numeric_from: int, widths: Sequence[float] | None = None) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), FONT), ("FONTSIZE", (0, 0), (-1, -1), 7.5),
        ("LEADING", (0, 0), (-1, -1), 9), ("BACKGROUND", (0, 0), (-1, 0), _HEAD),
        ("GRID", (0, 0), (-1, -1), 0.3, _GRID), ("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
    ]))
    return table


def _summary(data: ReportData) -> Table:
    visits = total(s.visits for s in data.stations)
    previous = total(s.visits_previous for s in data.stations)
    energy = sum(s.energy_kwh for s in data.stations)
    online = [s.availability_pct for s in data.stations]
    rows = [["服务人次", num(visits), "较上期", change(visits, previous)],
            ["开放站点（有数据）", f"{data.open_stations}/{len(data.stations)}", "登记驿站总数",
             str(data.registry_stations)],
            ["充电量 kWh", num(energy, 1), "平均可用率", pct(sum(online) / len(online))]]
    return _table([["概况 Summary", "", "", ""], *rows], numeric_from=1, widths=[45 * mm, 35 * mm, 35 * mm, 35 * mm])


def _compare_header(data: ReportData) -> list[str]:
    if data.period.is_year:
        return ["本年人次", "上年", "同比"]
    return ["本月人次", "上月", "环比", "去年同月", "同比"]


def _compare(data: ReportData, now: int | None, previous: int | None, year_before: int | None) -> list[str]:
    cells = [num(now), num(previous), change(now, previous)]
    return cells if data.period.is_year else [*cells, num(year_before), change(now, year_before)]


def _district_rows(data: ReportData) -> Cells:
    rows = [["区县 District", *_compare_header(data)]]
    districts: dict[str, list[StationFigures]] = {}
    for s in data.stations:
        districts.setdefault(s.station.district, []).append(s)
    for district, stations in districts.items():
        rows.append([DISTRICT_NAMES.get(district, district), *_sums(data, stations)])
    if data.district is None:
        rows.append(["全市 City", *_sums(data, list(data.stations))])
    return rows


def _sums(data: ReportData, stations: list[StationFigures]) -> list[str]:
    return _compare(data, total(s.visits for s in stations), total(s.visits_previous for s in stations),
                    total(s.visits_year_before for s in stations))


def _visit_rows(data: ReportData) -> Cells:
    return [["站点", "名称", "区县", *_compare_header(data)]] + [
        [s.station.id, s.station.name, DISTRICT_NAMES.get(s.station.district, s.station.district),
         *_compare(data, s.visits, s.visits_previous, s.visits_year_before)] for s in data.stations]


def _occupancy_rows(data: ReportData) -> Cells:
    return [["站点", "名称", "容量", "平均在站", "峰值", "满员小时", "低温小时", "室内最低°C"]] + [
        [s.station.id, s.station.name, str(s.station.capacity), num(s.people_mean, 1), num(s.people_max),
         num(s.hours_full), num(s.cold_hours), num(s.indoor_min, 1)] for s in data.stations]


def _health_rows(data: ReportData) -> Cells:
    return [["站点", "名称", "充电量kWh", "插座小时", "故障分钟", "可用率", "完整性"]] + [
        [s.station.id, s.station.name, num(s.energy_kwh, 1), num(s.socket_hours, 1), num(s.fault_minutes),
         pct(s.availability_pct), pct(s.completeness_pct)] for s in data.stations]


def _trouble(data: ReportData) -> list[Flowable]:
    worst = data.troubled()
    if not worst:
        return [Paragraph("本期没有站点出现问题。", BODY)]
    rows = [["排名", "站点", "名称", "问题分", "可用率", "完整性", "低温小时", "故障分钟"]]
    for rank, s in enumerate(worst, 1):
        rows.append([str(rank), s.station.id, s.station.name, num(s.trouble, 1), pct(s.availability_pct),
                     pct(s.completeness_pct), num(s.cold_hours), num(s.fault_minutes)])
    return [_table(rows, numeric_from=3)]


def _notes(data: ReportData) -> list[str]:
    unit = "年" if data.period.is_year else "月"
    return [
        (f"时间为北京时间；本{unit}为 {data.period.start:%Y-%m-%d} 至 {data.period.end:%Y-%m-%d}（不含）。"
         "数字取自小时汇总（docs/rollups.md），“—”表示该项在此期间没有数据。"),
        ("人次：门禁计数器的进入次数（occupancy_1h.visits 之和）。平均在站 = people_sum 之和 / 读数之和；"
         "峰值 = 小时最大人数的最大值；满员小时：小时最大人数达到登记容量的小时数。"),
        f"低温小时：室内（indoor）传感器小时平均温度低于 {COLD_C:g} °C 的小时数（temperature_1h.celsius_mean）。",
        "充电量 = energy_wh 之和 / 1000；插座小时 = 每小时平均在用插座数之和；故障分钟：充电桩报告故障码的分钟数。",
        ("可用率 = 有在站人数读数的分钟数 / 本期分钟数。完整性 = 各设备（人数计数器、充电桩、传感器）"
         "有读数的分钟数之和 / （本期分钟数 × 设备数）：完整性低的站点，其数字不宜采信。"),
        "问题分：可用率与完整性每缺 1 个百分点、每个低温小时、每小时充电桩故障各计 1 分；列出问题分最高的 10 个站点。",
    ]


# --- charts --------------------------------------------------------------------------------------


def _chart(bars: Sequence[Bar], unit: str, height: float = 48 * mm) -> Drawing:
    drawing = Drawing(WIDTH, height)
    # read by the renderer's initial state (not in the stubs); without it every drawing adds Helvetica to the PDF
    drawing.initialFontName = FONT  # type: ignore[attr-defined]
    chart = VerticalBarChart()
    chart.x, chart.y = round(12 * mm), round(8 * mm)  # the stubs type position and size as int
    chart.width, chart.height = round(WIDTH - 16 * mm), round(height - 12 * mm)
    chart.data = [[b.value for b in bars]]
    chart.bars[0].fillColor = _BAR
    chart.bars[0].strokeColor = None
    chart.categoryAxis.categoryNames = [b.label for b in bars]
    chart.valueAxis.valueMin = 0
    for labels in (chart.categoryAxis.labels, chart.valueAxis.labels):
        labels.fontName, labels.fontSize = FONT, 6.5
    drawing.add(chart)
    drawing.add(String(WIDTH - 2 * mm, 1 * mm, unit, fontName=FONT, fontSize=6.5, textAnchor="end"))
    return drawing


def _value_grid(bars: Sequence[Bar], per_row: int) -> Table:
    """The chart's values as a table under it, so that the figures can be read and copied."""
    rows: Cells = []
    for i in range(0, len(bars), per_row):
        chunk = bars[i:i + per_row]
        rows += [[b.label for b in chunk], [num(b.value) for b in chunk]]
    table = Table(rows, hAlign="LEFT", colWidths=[WIDTH / per_row] * per_row)
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), FONT), ("FONTSIZE", (0, 0), (-1, -1), 6.5), ("LEADING", (0, 0), (-1, -1), 8),
        ("ALIGN", (0, 0), (-1, -1), "RIGHT"), ("GRID", (0, 0), (-1, -1), 0.2, _GRID),
        *(("BACKGROUND", (0, r), (-1, r), _HEAD) for r in range(0, len(rows), 2)),
        ("TOPPADDING", (0, 0), (-1, -1), 1), ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
    ]))
    return table
