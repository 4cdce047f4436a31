"""The pieces both report.html pages are built from (score's, acol_eval.report.htmlreport;
compare's, acol_eval.report.comparepage; the gallery's figures, acol_eval.report.gallerypage), apart
from any one page's sections: a report folder as the pages read it, escaping and number
formats, tables, inline SVG charts (curves with their marked thresholds, bars), the CSS
and the page frame. One module so that every page reads, formats and draws alike.

A page opens offline from disk: inline CSS, curves as inline SVG, thumbnails as JPEG
data URIs; no script, no network, no file outside the page.

`read_report` reads a report folder's own files (summary.csv, curve.csv, per_class.csv,
per_image.csv, report.json; each optional, extra columns ignored, missing ones left out).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.maps.reportfolder import ReportMeta, ScoreReport, as_report
from acol_eval.metrics import metricdefs
from acol_eval.report.curveplot import line_style

PAGE_FILE = "report.html"
INTEGER_COLUMNS = {"iou", "count", "images", "n"}  # floats only because of empty cells
MAX_TABLE_ROWS = 2000  # per-class tables longer than this are cut (a note says so)
# readable names of per-class columns that are not metrics (metrics: metricdefs' titles)
COLUMN_LABELS = {"mean_iou": "mean IoU"}


# --------------------------------------------------------------------------- reading


@dataclass
class Report:
    """What one report folder holds, every table possibly empty; notes: what was odd."""

    folder: Path
    name: str
    summary: pd.DataFrame
    curve: pd.DataFrame
    per_class: pd.DataFrame
    per_image: pd.DataFrame
    meta: ReportMeta | None
    notes: list[str] = field(default_factory=list)
    source: ScoreReport | None = None  # the folder's reader

    @property
    def protocol(self) -> str:
        if self.meta is not None:
            return self.meta.protocol
        if "protocol" in self.summary and len(self.summary):
            return str(self.summary["protocol"].iloc[0]).split(" ")[0]
        return ""

    def metric(self, name: str) -> pd.Series | None:
        if "metric" not in self.summary:
            return None
        rows = self.summary[self.summary["metric"] == name]
        return rows.iloc[0] if len(rows) else None


def read_report(folder: str | Path | ScoreReport) -> Report:
    """A report folder's tables and report.json; a missing file gives an empty table."""
    source = as_report(folder)
    notes: list[str] = []
    tables = {name: source.table(name, notes)
              for name in ("summary", "curve", "per_class", "per_image")}
    return Report(source.folder, source.name, meta=source.meta_or_none, notes=notes,
                  source=source, **tables)


# --------------------------------------------------------------------------- small pieces


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value, text: Callable[[float], str]) -> str:
    """A number as `text` writes it; a value that is no number escaped as it is, and NaN
    or infinity as an empty cell."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if not math.isfinite(number):
        return ""
    return text(number)


def fmt_number(value, digits: int = 2) -> str:
    return _fmt(value, lambda number: f"{number:.{digits}f}")


def fmt_iou(value) -> str:
    """An IoU to 3 places, cut rather than rounded: a box under the 0.5 that counts as
    found never reads 0.500 beside 'mislocated'."""
    # 1e-9: a CSV's 0.7 is 0.69999... in binary and must still read 0.700
    return _fmt(value, lambda number: f"{math.floor(number * 1000 + 1e-9) / 1000:.3f}")



def metric_label(name: str) -> str:
    """The readable name of a summary.csv metric ('best_' ones say they are oracle
    figures; '@k' ones their IoU); a name the page does not know is shown as it is."""
    labels = {**metricdefs.titles(), **COLUMN_LABELS}
    if name in labels:
        return labels[name]
    if name.startswith("best_") and name[5:] in labels:
        return f"{labels[name[5:]]} at the oracle threshold"
    base, at, iou = name.partition("@")
    if at and base in labels:
        return f"{labels[base]} at IoU {iou}"
    return name


def _digits(column: str) -> int:
    name = column.lower()
    return 3 if "threshold" in name or name.startswith("p_") or name == "p" else 2


def table_html(frame: pd.DataFrame, limit: int = MAX_TABLE_ROWS, bars: str | None = None,
               headers: dict[str, str] | None = None) -> str:
    """An HTML table of a DataFrame; floats rounded (thresholds and p-values to 3 places);
    `bars`: a 0-100 column drawn as an inline bar behind its number; `headers`: HTML
    to show in place of some column names."""
    headers = headers or {}
    head = "".join(f"<th>{headers.get(c, esc(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.head(limit).itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record):
            if isinstance(value, (float, np.floating)):
                text = fmt_number(value, 0 if column in INTEGER_COLUMNS else
                                  _digits(str(column)))
            else:
                text = esc("" if value is None else value)
            if column == bars and text:
                width = min(max(float(value), 0.0), 100.0)
                cells.append(f'<td class="num"><span class="bar" style="width:{width:.1f}%">'
                             f'</span><span class="barv">{text}</span></td>')
            else:
                numeric = isinstance(value, (int, float, np.integer, np.floating))
                cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<p class="note">{len(frame) - limit} more rows are in the CSV file.</p>'
            if len(frame) > limit else "")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
            f'{"".join(rows)}</tbody></table></div>{more}')


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def jpeg_data_uri(array: np.ndarray, quality: int = 86) -> str:
    """RGB uint8 -> a data: URI of a JPEG (4:4:4, so the 2-pixel box lines keep their
    colour)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, np.uint8)).save(
        buffer, "JPEG", quality=quality, subsampling=0)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class Line:
    """One curve: xs in [0, 1] (CAM threshold or recall), ys in percent."""

    label: str
    xs: np.ndarray
    ys: np.ndarray
    style: int  # curveplot.line_style's index


@dataclass(frozen=True)
class Marker:
    """A threshold marked on a chart: vertical line at x; `metric` names the summary.csv
    row it stands for (written as data-metric, data-threshold for checks)."""

    label: str
    x: float
    style: int | None  # None: the fixed threshold (grey, dotted, full height)
    metric: str
    y: float | None = None
    word: str = "fixed"  # written beside a full-height mark: where its threshold came from


def _style(style: int) -> tuple[str, str]:
    colour, dash = line_style(style)  # the same pair as curve.png's
    return colour, (f' stroke-dasharray="{dash}"' if dash else "")


def _points(xs: np.ndarray, ys: np.ndarray, to_px) -> str:
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    keep = np.isfinite(xs) & np.isfinite(ys)
    px, py = to_px(xs[keep], ys[keep])
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py))


def line_chart(lines: list[Line], markers: list[Marker], x_label: str, y_label: str,
               y_max: float = 100.0, width: int = 720, height: int = 380) -> str:
    """An inline SVG line chart (x in [0, 1], y in [0, y_max]) with marked thresholds,
    and an HTML legend that says what each line and mark is."""
    left, right, top, bottom = 52, 16, 14, 44
    plot_w, plot_h = width - left - right, height - top - bottom

    def to_px(x, y):
        return left + np.asarray(x) * plot_w, top + (1 - np.asarray(y) / y_max) * plot_h

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i in range(6):
        y = top + plot_h * i / 5
        x = left + plot_w * i / 5
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y + 4:.1f}" class="tick" '
                     f'text-anchor="end">{y_max * (5 - i) / 5:g}</text>')
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" '
                     f'class="grid"/><text x="{x:.1f}" y="{top + plot_h + 16}" class="tick" '
                     f'text-anchor="middle">{i / 5:.1f}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
                 f'class="frame"/>')
    for line in lines:
        colour, dash = _style(line.style)
        parts.append(f'<polyline class="curve" fill="none" stroke="{colour}" stroke-width="2"'
                     f'{dash} points="{_points(line.xs, line.ys, to_px)}">'
                     f'<title>{esc(line.label)}</title></polyline>')
    for marker in markers:
        parts.append(_marker_svg(marker, to_px, top, plot_h))
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" class="axis" '
                 f'text-anchor="middle">{esc(x_label)}</text>'
                 f'<text transform="translate(14 {top + plot_h / 2:.0f}) rotate(-90)" '
                 f'class="axis" text-anchor="middle">{esc(y_label)}</text></svg>')
    return "".join(parts) + _legend(lines, markers)


def _marker_svg(marker: Marker, to_px, top: int, plot_h: int) -> str:
    x, _ = to_px(marker.x, 0.0)
    data = f'data-metric="{esc(marker.metric)}" data-threshold="{marker.x!r}"'
    if marker.style is None:
        return (f'<line class="marker fixed" {data} x1="{x:.1f}" y1="{top}" x2="{x:.1f}" '
                f'y2="{top + plot_h}" stroke="#555" stroke-width="1.5" '
                f'stroke-dasharray="1 3"><title>{esc(marker.label)}</title></line>'
                f'<text x="{x + 4:.1f}" y="{top + 12}" class="tick">{esc(marker.word)}</text>')
    colour, dash = _style(marker.style)
    _, y = to_px(0.0, marker.y if marker.y is not None else 0.0)
    dot = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{colour}" stroke="#fff"/>'
           if marker.y is not None else "")
    return (f'<line class="marker" {data} x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" '
            f'y2="{top + plot_h}" stroke="{colour}" stroke-width="1.2"{dash}>'
            f'<title>{esc(marker.label)}</title></line>{dot}')


def _legend(lines: list[Line], markers: list[Marker]) -> str:
    items = []
    for line in lines:
        colour, dash = _style(line.style)
        mark = next((m for m in markers if m.style == line.style), None)
        where = f" &mdash; {esc(mark.label)}" if mark else ""
        items.append(f'<li><svg width="34" height="10" xmlns="http://www.w3.org/2000/svg">'
                     f'<line x1="0" y1="5" x2="34" y2="5" stroke="{colour}" stroke-width="2.5"'
                     f'{dash}/></svg> {esc(line.label)}{where}</li>')
    for mark in markers:
        if mark.style is None:
            items.append('<li><svg width="34" height="10" xmlns="http://www.w3.org/2000/svg">'
                         '<line x1="0" y1="5" x2="34" y2="5" stroke="#555" stroke-width="1.5"'
                         f' stroke-dasharray="1 3"/></svg> {esc(mark.label)}</li>')
    return f'<ul class="legend">{"".join(items)}</ul>'


def bar_chart(counts: list[tuple[str, int]], width: int = 520) -> str:
    """Horizontal bars of counts, an inline SVG, one row per (name, count)."""
    row, label_w = 24, 150
    total_h = row * len(counts) + 8
    largest = max([c for _, c in counts] + [1])
    parts = [f'<svg class="bars" viewBox="0 0 {width} {total_h}" width="{width}" '
             f'height="{total_h}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, (name, count) in enumerate(counts):
        y = 4 + i * row
        length = (width - label_w - 60) * count / largest
        colour = "#009E73" if name == "correct" else "#D55E00"
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" class="tick">'
                     f'{esc(name.replace("_", " "))}</text><rect x="{label_w}" y="{y + 3}" '
                     f'width="{length:.1f}" height="{row - 8}" fill="{colour}"/>'
                     f'<text x="{label_w + length + 6:.1f}" y="{y + 15}" class="tick">'
                     f'{count}</text>')
    return "".join(parts) + "</svg>"


# --------------------------------------------------------------------------- the page


CSS = """
:root{--ink:#1d2430;--mute:#5b6472;--line:#dfe3ea;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--ink);background:var(--bg)}
header{background:#1d2430;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:21px}
header .meta{color:#c9d1dc;font-size:13px}
header .meta{display:flex;flex-wrap:wrap;gap:2px 18px}
header .meta span{overflow-wrap:anywhere}
nav{padding:8px 28px;background:#fff;border-bottom:1px solid var(--line);position:sticky;top:0}
nav a{margin-right:16px;color:#0b5cad;text-decoration:none}
main{max-width:1240px;margin:0 auto;padding:8px 28px 40px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 20px;
margin:18px 0}
h2{font-size:17px;margin:2px 0 10px}
h3{font-size:14px;margin:16px 0 6px}
.note{color:var(--mute);margin:4px 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:14px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:150px}
.card .k{color:var(--mute);font-size:12px}
.card .v{font-size:26px;font-weight:600}
.card small{display:block;color:var(--mute);font-size:11.5px}
.card small.what{max-width:260px}
.scroll{max-height:460px;overflow:auto;border:1px solid var(--line);border-radius:4px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{position:sticky;top:0;background:#eef1f5;text-align:left;font-weight:600}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;position:relative}
.bar{position:absolute;left:0;top:3px;bottom:3px;background:#cfe3f5;z-index:0}
.barv{position:relative;z-index:1}
.chart{width:100%;max-width:860px;height:auto;font-size:11px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:8px 24px}
.chart .grid{stroke:#e8ebf0}.chart .frame{fill:none;stroke:#8a93a0}
.chart .tick,.bars .tick{fill:#3a4250;font-size:11px}.chart .axis{fill:#1d2430;font-size:12px}
.legend{list-style:none;padding:0;margin:6px 0;font-size:13px;display:flex;flex-wrap:wrap;
gap:2px 22px}
.legend svg{vertical-align:middle}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.row .scroll{min-width:280px;flex:1}
.key .sw{display:inline-block;width:18px;height:12px;border:3px solid;margin:0 4px -1px 10px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(212px,1fr));gap:12px}
.thumb{margin:0;border:1px solid var(--line);border-radius:6px;padding:6px;background:#fafbfc}
.thumb img{display:block;margin:0 auto;max-width:100%}
.thumb figcaption{font-size:12px;margin-top:4px}
.thumb .why{color:#8a3b00;font-weight:600}
.thumb .name{color:var(--mute);overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.blocks{display:flex;flex-wrap:wrap;gap:4px 32px}
.block{max-width:100%}
.versus{display:flex;gap:8px;overflow-x:auto;margin-bottom:14px}
.versus .thumb{min-width:212px}
.banner{background:#fff3cd;border:2px solid #d39e00;color:#5c4400;border-radius:8px;
padding:12px 18px;margin:18px 0 0;font-size:15px}
.coverage{font-size:15px;margin:2px 0 10px}
th small,td small{font-weight:400;color:var(--mute)}
details{margin:10px 0}
details summary{cursor:pointer;color:#0b5cad;margin-bottom:6px}
.pivot td{vertical-align:top;white-space:normal;min-width:120px}
.pivot td.num{text-align:right}
.pivot .v{font-size:16px;font-weight:600}
.pivot small{display:block;white-space:nowrap}
.pivot .up{color:#00734f}.pivot .down{color:#b23c00}
dl.explain{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:13px}
dl.explain dt{font-family:ui-monospace,monospace;font-weight:600}
dl.explain dd{margin:0}
"""


def page(title: str, facts: list[tuple[str, str]], sections: list[tuple[str, str, str]],
         banner: str = "") -> str:
    """The whole document: header with facts (name, value), a navigation bar, a banner
    (HTML, e.g. that the report is partial), and the sections (anchor, title, html)."""
    meta = "".join(f"<span>{esc(k)}: <b>{esc(v)}</b></span>" for k, v in facts if v)
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(h for _, _, h in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f'<header><h1>{esc(title)}</h1><div class="meta">{meta}</div></header>'
            f"<nav>{nav}</nav><main>{banner}{body}</main></body></html>\n")
