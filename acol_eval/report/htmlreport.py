"""report.html of `score`: one self-contained page that opens offline from disk.

Built from a report folder's own files (summary.csv, curve.csv, per_class.csv,
per_image.csv, report.json; each optional, extra columns ignored, missing ones left
out). The gallery reads only the maps and images of the few dozen images it shows, so
the page costs little next to scoring however many images were scored.

One renderer: sections are functions returning HTML strings; `write_score_html` picks
and orders them here, acol_eval.report.comparepage's `write_compare_html` for `compare`; the
gallery's section and its inputs are acol_eval.report.gallerypage's; the pieces every page is
built from (the report as the pages read it, tables, charts, CSS, the page frame) are
acol_eval.report.htmlparts'.

Every figure that depends on a CAM threshold is shown with that threshold and where it
came from (fixed, calibrated, oracle, another report), so a page never shows the same
name at two thresholds without saying so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from acol_eval.maps.reportfolder import ReportMeta, ScoreReport, as_report
from acol_eval.maps.runfolder import LocalizeRun
from acol_eval.metrics import metricdefs
from acol_eval.report import gallery
from acol_eval.report.curveplot import TRAINING_CURVES_FILE, chosen_metric
from acol_eval.report.htmlparts import (
    PAGE_FILE,
    Line,
    Marker,
    Report,
    bar_chart,
    esc,
    fmt_number,
    line_chart,
    metric_label,
    page,
    read_report,
    section,
    table_html,
)
from acol_eval.util.progress import counted
from acol_eval.util.safeio import atomic_write_text

if TYPE_CHECKING:
    from acol_eval.data.readers import Annotations

# per-class columns whose value depends on the CAM threshold
THRESHOLD_COLUMNS = ("gt_known_loc", "agnostic_loc", "top1_loc", "top5_loc", "mean_iou")
CARD_NOTES = {"pxap": "<small>area under the pixel precision-recall curve</small>"}


# --------------------------------------------------------------------------- score sections


def describe_source(source: str) -> str:
    """report.json's threshold_source in words."""
    if source.startswith("from:"):
        return f"from another report ({source[5:]})"
    return {"oracle": "oracle: the best on this split", "fixed": "fixed",
            "calibrated": "calibrated on validation images"}.get(source, source)


def short_source(source: str) -> str:
    """describe_source in a word or two, for table cells."""
    return ("from another report" if source.startswith("from") else
            source.split(":")[0])


def row_source(row: pd.Series, meta: ReportMeta | None) -> str:
    """Where a summary row's CAM threshold came from: summary.csv's threshold_source
    column when score wrote one, else the fixed rows are fixed and the others follow
    report.json (oracle when unknown). MaxBoxAccV2 has no one threshold: its IoUs'
    source, each at its own; other rows without a threshold: ''."""
    own = row.get("threshold_source", np.nan)
    if pd.isna(row.get("threshold", np.nan)):
        if str(row["metric"]) != "max_box_acc_v2":
            return ""
        source = own if isinstance(own, str) and own else (
            meta.threshold_source if meta else "oracle")
        return f"{describe_source(source)}, each IoU at its own"
    if isinstance(own, str) and own:
        return describe_source(own)
    if str(row["metric"]) in ("gt_known_loc", "top1_loc", "top5_loc"):
        return "fixed"
    return describe_source(meta.threshold_source if meta else "oracle")


def card_metrics(names: list[str]) -> list[str]:
    """The summary rows shown as cards: the known headline metrics in their order, then
    any other row (not an input issue, not one IoU of MaxBoxAccV2) in the file's order."""
    headline = metricdefs.headline()
    known = [m for m in headline if m in names]
    return known + [m for m in names if m not in headline and "@" not in m
                    and not m.startswith("issue:")]


def metric_card(name: str, row: pd.Series, meta: ReportMeta | None,
                ious: list[str] = ()) -> str:
    """One headline number: its label, value, threshold and the threshold's source, and
    its interval. ious: MaxBoxAccV2's IoUs (the summary's max_box_acc_v2@k rows)."""
    ci = (f"<small>95% CI {fmt_number(row['ci_low'])} &ndash; {fmt_number(row['ci_high'])}"
          f"</small>" if "ci_low" in row and pd.notna(row["ci_low"]) else "")
    if pd.notna(row.get("threshold", np.nan)):
        at = (f"<small>at CAM threshold {fmt_number(row['threshold'], 3)} "
              f"({esc(row_source(row, meta))})</small>")
    elif name == "max_box_acc_v2":
        over = f" over IoU {', '.join(ious)}" if ious else ""
        at = (f"<small>mean{over}, each at its own threshold "
              f"({esc(short_source(row_source(row, meta)))})</small>")
    else:
        at = CARD_NOTES.get(name, "") or _opt_in_note(name)
    value = fmt_number(row["value"])
    return (f'<div class="card" data-card="{esc(name)}"{_card_title(name)}><div class="k">'
            f'{esc(metric_label(name))}</div><div class="v">{value}</div>'
            f"<small><code>{esc(name)}</code></small>{at}{ci}</div>")


def _opt_in_note(name: str) -> str:
    """An opt-in metric's card says what it measures (few readers know them all)."""
    try:
        metric = metricdefs.get_metric(name)
    except KeyError:
        return ""
    return f'<small class="what">{esc(metric.description)}</small>' if metric.opt_in else ""


def _card_title(name: str) -> str:
    """The metric's one-sentence description, shown when the card is pointed at."""
    try:
        return f' title="{esc(metricdefs.get_metric(name).description)}"'
    except KeyError:
        return ""


def coverage_banner(meta: ReportMeta | None) -> str:
    """A banner no reader can miss when the report covers part of the scored split."""
    if meta is None or not meta.partial:
        return ""
    why = {"allow-missing": "annotated images without a map were left out "
                            "(--allow-missing)",
           "image-list": "an --image-list file named the subset"}.get(meta.subset or "",
                                                              meta.subset or "")
    return (f'<div class="banner" id="partial"><b>Partial report: {esc(meta.coverage)}'
            f"</b> of the split were scored{': ' + esc(why) if why else ''}. These are "
            f"not the benchmark's figures for the whole split.</div>")


def headline_section(report: Report) -> str:
    """Big numbers for the headline metrics, then every summary row with its threshold,
    IoU, interval and the threshold's source; input issues listed below."""
    summary = report.summary
    if "metric" not in summary or "value" not in summary:
        return section("metrics", "Metrics", '<p class="note">No summary.csv in this '
                       "report.</p>")
    names = summary["metric"].astype(str).tolist()
    ious = [n.split("@", 1)[1] for n in names if n.startswith("max_box_acc_v2@")]
    cards = [metric_card(name, report.metric(name), report.meta, ious)
             for name in card_metrics(names)]
    meta = report.meta
    scope = (f'<p class="coverage">On {esc(meta.coverage)}.</p>'
             if meta is not None and meta.annotated else "")
    metrics = summary[~summary["metric"].astype(str).str.startswith("issue:")].copy()
    metrics["threshold from"] = [row_source(r, report.meta) for _, r in metrics.iterrows()]
    shown = [c for c in ["metric", "value", "ci_low", "ci_high", "threshold", "iou", "count",
                         "threshold from"] if c in metrics]
    issues = summary[summary["metric"].astype(str).str.startswith("issue:")]
    issue_html = ""
    if len(issues):
        items = "".join(f"<li>{esc(str(r['metric'])[6:].replace('_', ' '))}: "
                        f"{fmt_number(r['value'], 0)}</li>" for _, r in issues.iterrows())
        issue_html = f"<h3>Input issues</h3><ul>{items}</ul>"
    return section("metrics", "Metrics", scope + f'<div class="cards">{"".join(cards)}</div>'
                   + table_html(metrics[shown]) + issue_html)


def marked_line(report: Report, column: str, style: int, label: str
                ) -> tuple[Line, Marker | None]:
    """curve.csv's `column` as a line, and its mark at the threshold summary.csv chose
    for it (max_box_acc_v2@k for box_acc_v2@k, best_gt_known_loc for gt_known_loc; the
    other columns share best_gt_known_loc's and are not marked again)."""
    xs = report.curve["threshold"].to_numpy(np.float64)
    ys = pd.to_numeric(report.curve[column], errors="coerce").to_numpy(np.float64)
    line = Line(label, xs, ys, style)
    row = chosen_row(report, column)
    if row is None or pd.isna(row.get("threshold", np.nan)):
        return line, None
    x = float(row["threshold"])
    y = float(np.interp(x, xs, np.nan_to_num(ys)))
    return line, Marker(f"chosen {x:.3f} ({y:.1f}%, {row_source(row, report.meta)})", x,
                        style, str(row["metric"]), y)


def chosen_row(report: Report, column: str) -> pd.Series | None:
    """The summary.csv row whose threshold was chosen on curve.csv's `column`:
    max_box_acc_v2@k for box_acc_v2@k, best_gt_known_loc for gt_known_loc (or a row
    that ends so: a calibrated run may prefix its names); None for the other columns."""
    wanted = chosen_metric(column)
    if wanted is None:
        return None
    row = report.metric(wanted)
    if row is None and wanted == "best_gt_known_loc":  # scored on the top-1 class's map
        row = report.metric("best_agnostic_loc")
    if row is not None or "metric" not in report.summary:
        return row
    names = report.summary["metric"].astype(str)
    suffix = wanted.removeprefix("best_")
    rows = report.summary[names.str.endswith(suffix) & (names != "gt_known_loc")
                          & ~names.str.startswith("issue:")]
    return rows.iloc[0] if len(rows) else None


def curve_columns(curve: pd.DataFrame) -> list[str]:
    if "threshold" not in curve:
        return []
    return [c for c in curve.columns if c != "threshold"
            and pd.api.types.is_numeric_dtype(curve[c])]


def curve_lines(report: Report) -> tuple[list[Line], list[Marker]]:
    """Every accuracy column of the report's curve.csv, each marked where chosen."""
    lines, markers = [], []
    for style, column in enumerate(curve_columns(report.curve)):
        line, marker = marked_line(report, column, style, column)
        lines.append(line)
        markers += [marker] if marker else []
    return lines, markers


def curves_section(report: Report) -> str:
    lines, markers = curve_lines(report)
    if not lines:
        return section("curves", "Accuracy against CAM threshold",
                       '<p class="note">No curve.csv in this report.</p>')
    _, fixed = _summary_threshold(report, ("gt_known_loc", "agnostic_loc"))
    if fixed is not None:
        words = short_source(row_source(fixed, report.meta))
        markers.append(Marker(f"{words} CAM threshold {float(fixed['threshold']):.3f} "
                              f"({fixed['metric']}, top1_loc, top5_loc)",
                              float(fixed["threshold"]), None, str(fixed["metric"]),
                              word=words))
    body = ('<p class="note">Share of images whose box reaches the IoU threshold, at every '
            'CAM threshold. gt_known_loc uses the largest box at IoU 50; box_acc_v2@k uses '
            'all boxes at IoU k. Dots mark the threshold each metric was taken at.</p>'
            + line_chart(lines, markers, "CAM threshold (fraction of the map's range)",
                         "accuracy (%)"))
    return section("curves", "Accuracy against CAM threshold", body + pxap_html(report))


def pxap_html(report: Report) -> str:
    """The PxAP value and, when the report holds pxap_curve.csv (threshold, precision,
    recall, in percent or fractions), its precision-recall curve."""
    row = report.metric("pxap")
    if row is None:
        return ""
    text = f"<h3>Pixel precision-recall</h3><p>PxAP {fmt_number(row['value'])}.</p>"
    pr = as_report(report.source or report.folder).table("pxap_curve", report.notes)
    if {"precision", "recall"} <= set(pr.columns) and len(pr):
        scale = 100.0 if pr["recall"].max() > 1.0 else 1.0
        line = Line("precision against recall", pr["recall"].to_numpy(np.float64) / scale,
                    pr["precision"].to_numpy(np.float64) * (100.0 / scale), 0)
        return text + line_chart([line], [], "recall", "precision (%)")
    return text + ('<p class="note">This report holds no pxap_curve.csv, so the '
                   "precision-recall curve is not drawn.</p>")


def _constant(table: pd.DataFrame, column: str):
    """The one value a column holds (None: no such column, or several values)."""
    if column not in table:
        return None
    values = table[column].dropna().unique()
    return values[0] if len(values) == 1 else None


def _summary_threshold(report: Report, names: tuple[str, ...]
                       ) -> tuple[float | None, pd.Series | None]:
    """The CAM threshold of the first of `names` that summary.csv gives one for."""
    for name in names:
        row = report.metric(name)
        if row is not None and pd.notna(row.get("threshold", np.nan)):
            return float(row["threshold"]), row
    return None, None


def _same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(float(a) - float(b)) < 5e-7


@dataclass
class PerClassView:
    """per_class.csv as the page shows it: the table, the note above it, and the
    headers that say at which threshold each threshold-dependent column is."""

    table: pd.DataFrame
    note: str
    headers: dict[str, str]


def per_class_view(report: Report) -> PerClassView:
    """Say at which CAM threshold, and from where, per_class.csv's figures are.

    per_class.csv gives its threshold (`threshold`) and where it came from
    (`threshold_source`); columns named best_... are oracle figures. A report written
    before per_class.csv said where its threshold came from holds figures at the oracle
    threshold under the headline's names: when its threshold is the oracle's and not the
    headline's, those columns are shown as best_... so that one name never means two
    thresholds on one page."""
    table = report.per_class.copy()
    threshold = _constant(table, "threshold")
    source = _constant(table, "threshold_source")
    headline, headline_row = _summary_threshold(report, ("gt_known_loc", "agnostic_loc"))
    oracle, oracle_row = _summary_threshold(report, ("best_gt_known_loc",
                                                     "best_agnostic_loc", "max_box_acc"))
    # the best_ rows' threshold: the oracle's, or one taken from another report
    best_words = "oracle threshold"
    if oracle_row is not None and not row_source(oracle_row, report.meta).startswith("oracle"):
        best_words = row_source(oracle_row, report.meta)
    where, old_oracle = "", False
    if isinstance(source, str) and source:
        where = describe_source(source)
    elif threshold is not None and "threshold_source" not in table:
        if _same(threshold, headline):
            where = row_source(headline_row, report.meta)
        elif _same(threshold, oracle):
            where, old_oracle = row_source(oracle_row, report.meta), True
    if old_oracle:  # mean_iou keeps its name ('best mean IoU' would read as a maximum)
        table = table.rename(columns={c: f"best_{c}" for c in THRESHOLD_COLUMNS
                                      if c in table and f"best_{c}" not in table
                                      and c != "mean_iou"})
    at = "" if threshold is None else f"{float(threshold):.3f}"
    headers = {}
    for column in table.columns:
        name = str(column)
        if name.startswith("best_") and name[5:] in THRESHOLD_COLUMNS:
            best = at if old_oracle else _constant(table, "best_threshold")
            shown = f" {float(best):.3f}" if best not in (None, "") else ""
            headers[column] = f"{esc(name)}<br><small>{esc(best_words)}{shown}</small>"
        elif name in THRESHOLD_COLUMNS:
            place = (f"at {at}" + (f", {esc(where)}" if where else "") if at
                     else "at the row's threshold")
            headers[column] = f"{esc(name)}<br><small>{place}</small>"
    if threshold is not None:  # said in the headers and the note: not a column each row
        table = table.drop(columns=[c for c in ("threshold", "threshold_source")
                                    if c in table and _constant(table, c) is not None])
    if "best_threshold" in table and _constant(table, "best_threshold") is not None:
        table = table.drop(columns=["best_threshold"])
    return PerClassView(table, _per_class_note(at, where, old_oracle, headline), headers)


def _per_class_note(at: str, where: str, old_oracle: bool, headline: float | None) -> str:
    if old_oracle:
        theirs = "" if headline is None else f" {headline:.3f}"
        return (f"This report's per_class.csv holds figures at CAM threshold {at}, the "
                f"best_gt_known_loc threshold ({esc(where)}), not at the headline's"
                f"{theirs}: its columns are shown as best_... Score the run again with "
                f"this acol-eval for per-class figures at the headline's threshold.")
    if not at:
        return "Each row's figures are at that row's CAM threshold."
    same = " (the headline's)" if _same(float(at), headline) else ""
    return (f"Figures at CAM threshold {at}{same}" + (f", {esc(where)}" if where else "")
            + ".")


def per_class_section(report: Report) -> str:
    if not len(report.per_class):
        return section("classes", "Per class", '<p class="note">No per_class.csv.</p>')
    view = per_class_view(report)
    table = view.table
    key = next((c for c in ("gt_known_loc", "agnostic_loc", "best_gt_known_loc",
                            "best_agnostic_loc", "top1_loc", "mean_iou") if c in table), None)
    if key is not None:
        table = table.sort_values([key] + [c for c in ("class",) if c in table],
                                  kind="stable")
    count = counted(len(table), "class", "classes")
    first = f", worst {esc(key)} first" if key else ""
    note = f'<p class="note">{count}{first}. {view.note}</p>'
    return section("classes", "Per class",
                   note + table_html(table, bars=key, headers=view.headers))


def per_image_threshold(report: Report) -> str:
    """At which CAM threshold per_image.csv's boxes, IoUs and error types are, in words
    (its `threshold` column, matched to the summary row it belongs to)."""
    threshold = _constant(report.per_image, "threshold")
    if threshold is None:
        return "the threshold best for GT-known"
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        return "the threshold best for GT-known"
    for name in ("best_gt_known_loc", "best_agnostic_loc", "gt_known_loc", "agnostic_loc"):
        found, row = _summary_threshold(report, (name,))
        if _same(found, value):
            return (f"CAM threshold {value:.3f} ({name}'s, "
                    f"{short_source(row_source(row, report.meta))})")
    return f"CAM threshold {value:.3f}"


def errors_section(report: Report) -> str:
    per_image = report.per_image
    if "error" not in per_image or not len(per_image):
        return section("errors", "Error types", '<p class="note">per_image.csv has no error '
                       "column.</p>")
    counts = per_image["error"].fillna("none").astype(str).value_counts()
    order = ["correct"] + gallery.ERROR_TYPES
    names = [n for n in order if n in counts] + sorted(set(counts.index) - set(order))
    pairs = [(n, int(counts[n])) for n in names]
    total = max(sum(c for _, c in pairs), 1)
    table = pd.DataFrame({"type": names, "images": [c for _, c in pairs],
                          "share (%)": [100.0 * c / total for _, c in pairs]})
    note = (f'<p class="note">Why a box missed, at {esc(per_image_threshold(report))}: '
            "wrong class (box right, top-1 class wrong), multiple instances (the box spans "
            "two or more objects), part (the box lies inside an object), too large (the "
            "object lies inside the box), mislocated (anything else).</p>")
    return section("errors", "Error types", note + '<div class="row">' + bar_chart(pairs)
                   + table_html(table) + "</div>")


# --------------------------------------------------------------------------- the page


def report_facts(report: Report) -> list[tuple[str, str]]:
    meta = report.meta
    facts = [("protocol", report.protocol)]
    if meta is not None:
        facts += [("images", meta.coverage if meta.annotated else str(meta.images or "")),
                  ("split", meta.split or ""),
                  ("map", meta.map_choice), ("MaxBoxAcc thresholds", describe_source(
                      meta.threshold_source)), ("run", meta.run),
                  ("annotations", meta.annotations), ("images root", meta.images_root or ""),
                  ("baseline", meta.baseline or "")]
    elif "count" in report.summary and len(report.summary):
        facts.append(("images", str(int(report.summary["count"].max()))))
    return facts + [("note", n) for n in report.notes]


def training_curves_link(report: Report) -> str:
    """A line linking the curves.png of the train run whose checkpoint the scored run
    used (run.json names it), when that folder has one; else nothing."""
    run = report.meta.run if report.meta is not None else ""
    model = LocalizeRun(Path(run)).record.get("model") if run else None
    checkpoint = model.get("checkpoint") if isinstance(model, dict) else None
    if not isinstance(checkpoint, str):
        return ""
    curves = Path(checkpoint).parent / TRAINING_CURVES_FILE
    if not curves.is_file():
        return ""
    try:  # relative: the page and the run folders move together
        href = Path(os.path.relpath(curves.resolve(), report.folder.resolve())).as_posix()
    except ValueError:  # another drive
        href = curves.resolve().as_uri()
    return (f'<p>Training curves of this model (loss, accuracy and validation '
            f'localisation per epoch): <a href="{esc(href)}">{esc(str(curves))}</a></p>')


def write_score_html(report_dir: ScoreReport | str | Path,
                     annotations: Annotations | None = None) -> Path:
    """REPORT/report.html from the report folder's own files; returns its path.

    annotations: the readers.Annotations that were scored, as the job read them (its
    --images root, its --label-rule): the gallery's ground truth comes from them. Without
    them (a page written again from a folder alone) the report reads its source as
    report.json records it."""
    from acol_eval.report.gallerypage import gallery_section  # it builds on this module's pieces

    report = read_report(report_dir)
    sections = [("metrics", "Metrics", headline_section(report)),
                ("curves", "Curves", curves_section(report)),
                ("classes", "Per class", per_class_section(report)),
                ("errors", "Error types", errors_section(report)),
                ("gallery", "Gallery", gallery_section(report, annotations))]
    text = page(f"acol-eval report: {report.name}", report_facts(report), sections,
                coverage_banner(report.meta) + training_curves_link(report))
    path = report.folder / PAGE_FILE
    atomic_write_text(path, text)
    return path
