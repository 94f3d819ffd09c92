"""The report card as people take it away: CSV, an Excel workbook, printable HTML, a table."""

from __future__ import annotations

import csv
import io
from enum import StrEnum
from pathlib import Path
from typing import Final

from jinja2 import Environment, FileSystemLoader, select_autoescape

from server.indicators.card import CardRow, ReportCard
from server.indicators.definitions import Unit

_TEMPLATES: Final = Environment(
    loader=FileSystemLoader(Path(__file__).parent.parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"
    HTML = "html"


MEDIA: Final[dict[Format, str]] = {
    Format.JSON: "application/json",
    Format.CSV: "text/csv; charset=utf-8",
    Format.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    Format.HTML: "text/html; charset=utf-8",
}


def fmt(value: float | None, unit: str, *, signed: bool = False) -> str:
    """A value as a person reads it: 95.2%, 5 min, 12 h; "–" for no value."""
    if value is None:
        return "–"
    sign = "+" if signed and value > 0 else ""
    if unit == Unit.RATIO:
        return f"{sign}{value * 100:.1f}%"
    if unit == Unit.SECONDS:
        for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
            if abs(value) >= size:
                return f"{sign}{value / size:g} {name}"
        return f"{sign}{value:g} s"
    return f"{sign}{value:g} h"


def _met(r: CardRow) -> str:
    return "–" if r.met is None else ("Đạt / Met" if r.met else "Chưa đạt / Not met")


def _devices(r: CardRow) -> str:
    c = r.coverage
    return f"{c.devices_reporting}/{c.devices_expected} thiết bị / devices"


CSV_HEADER: Final = (
    "indicator",
    "label_vi",
    "label_en",
    "unit",
    "value",
    "target",
    "met",
    "previous",
    "change",
    "basis",
    "basis_en",
    "devices_expected",
    "devices_reporting",
    "missing_devices",
    "target_source",
)


def _csv_row(r: CardRow) -> list[object]:
    c = r.coverage
    return [
        r.indicator,
        r.label_vi,
        r.label_en,
        r.unit,
        "" if r.value is None else r.value,
        "" if r.target is None else r.target,
        "" if r.met is None else ("yes" if r.met else "no"),
        "" if r.previous is None else r.previous,
        "" if r.change is None else r.change,
        c.basis,
        c.basis_en,
        c.devices_expected,
        c.devices_reporting,
        " ".join(c.missing),
        r.source,
    ]


def to_csv(card: ReportCard) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_HEADER)
    for r in card.rows:
        w.writerow(_csv_row(r))
    return buf.getvalue()


def to_xlsx(card: ReportCard) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = f"{card.month}"
    ws.append([f"Báo cáo tháng {card.month} — xã {card.commune}"])
    ws.append([f"Monthly report {card.month} — commune {card.commune}"])
    ws.append([f"Lập lúc / Generated {card.generated_at}"])
    ws.append([])
    ws.append(list(CSV_HEADER))
    for cell in ws[5]:
        cell.font = Font(bold=True)
    for r in card.rows:
        ws.append(_csv_row(r))
        row = ws.max_row
        for col in (5, 6, 8, 9):
            if r.unit == Unit.RATIO:
                ws.cell(row=row, column=col).number_format = "0.0%"
    ws["A1"].font = Font(bold=True, size=13)
    ws.column_dimensions["B"].width = 40
    ws.column_dimensions["C"].width = 40
    missing = wb.create_sheet("Thiếu dữ liệu - Missing")
    missing.append(["indicator", "hamlet/device"])
    for r in card.rows:
        for m in r.coverage.missing:
            missing.append([r.indicator, m])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def to_html(card: ReportCard) -> str:
    rows = [
        {
            "label_vi": r.label_vi,
            "label_en": r.label_en,
            "value": fmt(r.value, r.unit),
            "target": ("≥ " if r.better == "higher" else "≤ ") + fmt(r.target, r.unit)
            if r.target is not None
            else "–",
            "met": _met(r),
            "met_class": "" if r.met is None else ("met" if r.met else "notmet"),
            "previous": fmt(r.previous, r.unit),
            "change": fmt(r.change, r.unit, signed=True),
            "basis": f"{r.coverage.basis:g} {r.coverage.basis_vi} / {r.coverage.basis_en}",
            "devices": _devices(r),
            "missing": r.coverage.missing,
            "source": r.source,
        }
        for r in card.rows
    ]
    return _TEMPLATES.get_template("report.html").render(card=card, rows=rows)


def to_rich_table(card: ReportCard) -> object:
    from rich.table import Table

    t = Table(title=f"{card.commune} — {card.month} (báo cáo tháng / monthly report)")
    for h in ("Chỉ số / Indicator", "Giá trị", "Mục tiêu", "Đạt", "Tháng trước", "Δ", "Dữ liệu"):
        t.add_column(h)
    for r in card.rows:
        met = "–" if r.met is None else ("[green]✔[/]" if r.met else "[red]✘[/]")
        cov = f"{_devices(r)}"
        if r.coverage.missing:
            cov += f"; thiếu/missing: {', '.join(r.coverage.missing[:5])}"
            if len(r.coverage.missing) > 5:
                cov += f" +{len(r.coverage.missing) - 5}"
        t.add_row(
            f"{r.label_vi}\n[dim]{r.label_en}[/]",
            fmt(r.value, r.unit),
            fmt(r.target, r.unit),
            met,
            fmt(r.previous, r.unit),
            fmt(r.change, r.unit, signed=True),
            cov,
        )
    return t
