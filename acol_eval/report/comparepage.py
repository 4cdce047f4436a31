"""report.html of `compare`: one self-contained page beside leaderboard.csv and pairs.csv.

It leads with a pivot a reader can take in at a glance (methods down, headline metrics
across; in each cell the value with its 95% interval, the difference to the reference
with its paired 95% interval, the CAM threshold and where it came from; the McNemar
test beside MaxBoxAcc), then says what every column of the two CSV files means, then
draws every method's curves on one chart per curve and the images where the methods
disagree most. The raw tables come last, folded. The page frame, tables and charts are
acol_eval.report.htmlparts'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.maps.reportfolder import method_names
from acol_eval.metrics import metricdefs
from acol_eval.report import gallery
from acol_eval.report.gallerypage import box_key, card, gallery_source, load_maps
from acol_eval.report.htmlparts import (
    PAGE_FILE,
    Report,
    esc,
    fmt_number,
    line_chart,
    metric_label,
    page,
    read_report,
    section,
    table_html,
)
from acol_eval.report.htmlreport import (
    curve_columns,
    marked_line,
    per_image_threshold,
    row_source,
    short_source,
)
from acol_eval.util.progress import counted
from acol_eval.util.safeio import atomic_write_text

MCNEMAR_AFTER = "max_box_acc"  # the test is of the per-image outcomes behind MaxBoxAcc

# what each column of leaderboard.csv and pairs.csv means: whole names, metric names,
# then the suffixes a metric's columns carry (longest first, so _diff_ci_low wins)
COLUMN_NOTES = {
    "method": "the report folder's name; a seed group's folder names joined by commas",
    "reports": "the report folders behind the row, separated by ';'",
    "seeds": "how many reports (seeds) the row averages",
    "images": "the images compared: every report scored exactly these images",
    "annotated": "annotated images of the scored split (empty: a report written before "
                 "reports recorded it)",
    "coverage": "'N of M annotated images': fewer than M is a partial benchmark, not the "
                "split's figures",
    "threshold": "the CAM threshold of the fixed-threshold metrics (gt_known_loc, "
                 "top1_loc); empty for a seed group whose seeds used different ones",
    "threshold_source": "where that threshold came from: fixed (score's --threshold), "
                        "calibrated, or from:REPORT (another report's)",
    "best_threshold_source": "where the MaxBoxAcc metrics' thresholds came from: oracle "
                             "(the best on these images, picked again in every "
                             "resample) or from:REPORT",
    "reference": "the method the others are compared against (--reference; default the "
                 "first REPORT)",
    "mcnemar_reference_only": "images the reference localises (GT-known, IoU 0.5, at its "
                              "own MaxBoxAcc threshold) and this method does not",
    "mcnemar_method_only": "images this method localises and the reference does not",
    "mcnemar_p": "exact McNemar test: the two-sided binomial test of the images only one "
                 "of the two localises against an even split; a small p says the methods "
                 "differ on these images. Empty for a seed group (no one per-image "
                 "outcome)",
}
SUFFIX_NOTES = {
    "_mcnemar_reference_only": "images where the reference hits (a hit-or-miss metric, "
                               "e.g. the pointing game) and this method misses",
    "_mcnemar_method_only": "images where this method hits and the reference misses",
    "_mcnemar_p": "exact McNemar test of that metric's per-image hits: the two-sided "
                  "binomial test of the images only one of the two hits; empty for a "
                  "seed group",
    "_diff_ci_low": "lower end of the 95% paired bootstrap interval of the difference: "
                    "the same resampled images for both methods, the oracle thresholds "
                    "re-picked in each resample",
    "_diff_ci_high": "upper end of that interval; an interval that holds 0 does not tell "
                     "the two methods apart",
    "_diff": "this method minus the reference, in points",
    "_ci_low": "lower end of the 95% percentile bootstrap interval: --bootstrap rounds of "
               "the images drawn with replacement, each method's oracle threshold "
               "picked again in every round",
    "_ci_high": "upper end of that interval",
    "_std": "standard deviation over a seed group's reports (ddof 1); empty for one report",
    "_optimism": "how much choosing the CAM threshold on the test images themselves "
                 "inflates an oracle metric, as the bootstrap estimates it: the mean "
                 "re-picked value over the resamples minus the value. The percentile "
                 "interval of such a value sits high by about this much; thresholds "
                 "calibrated on other images have none",
}


# --------------------------------------------------------------------------- the pivot


def _get(row: pd.Series | None, column: str) -> float:
    if row is None or column not in row:
        return np.nan
    value = pd.to_numeric(pd.Series([row[column]]), errors="coerce").iloc[0]
    return float(value)


def _interval(row: pd.Series | None, prefix: str) -> str:
    low, high = _get(row, f"{prefix}_ci_low"), _get(row, f"{prefix}_ci_high")
    if np.isnan(low) or np.isnan(high):
        return ""
    return f"[{fmt_number(low)}, {fmt_number(high)}]"


def _threshold_note(report: Report | None, metric: str, seeds: float) -> str:
    """At which CAM threshold, and from where, a report's `metric` was taken."""
    if seeds > 1:
        return "each seed at its own threshold"
    if report is None:
        return ""
    row = report.metric(metric)
    if metric == "max_box_acc_v2":
        parts = report.summary[report.summary["metric"].astype(str).str.startswith(
            "max_box_acc_v2@")] if "metric" in report.summary else pd.DataFrame()
        sources = sorted({row_source(r, report.meta) for _, r in parts.iterrows()} - {""})
        return (f"each IoU at its own, {short_source(sources[0])}" if len(sources) == 1
                else "")
    if row is None or pd.isna(row.get("threshold", np.nan)):
        return ""
    return f"at {fmt_number(row['threshold'], 3)}, {short_source(row_source(row, report.meta))}"


def pivot_cell(metric: str, board: pd.Series, versus: pd.Series | None,
               report: Report | None) -> str:
    """One method's `metric`: value, interval (and spread over seeds), the difference to
    the reference with its paired interval, and the threshold it was taken at."""
    value = _get(board, metric)
    if np.isnan(value):
        return '<td class="num"></td>'
    parts = [f'<span class="v">{fmt_number(value)}</span>']
    if text := _interval(board, metric):
        parts.append(f"<small>95% CI {text}</small>")
    if not np.isnan(std := _get(board, f"{metric}_std")):
        parts.append(f"<small>sd {fmt_number(std)} over seeds</small>")
    diff = _get(versus, f"{metric}_diff")
    if not np.isnan(diff):
        better = diff if metricdefs.higher_is_better(metric) else -diff
        side = "up" if better > 0 else "down" if better < 0 else ""
        parts.append(f'<small class="{side}">&Delta; {diff:+.2f} '
                     f"{_interval(versus, f'{metric}_diff')}</small>")
    if where := _threshold_note(report, metric, _get(board, "seeds")):
        parts.append(f"<small>{esc(where)}</small>")
    return f'<td class="num">{"".join(parts)}</td>'


def mcnemar_cell(versus: pd.Series | None, is_reference: bool, prefix: str = "") -> str:
    """The McNemar test of GT-known (prefix '') or of a hit-or-miss metric ('NAME_')."""
    if is_reference:
        return '<td class="num"><small>reference</small></td>'
    p = _get(versus, f"{prefix}mcnemar_p")
    if np.isnan(p):
        return '<td class="num"><small>none (a seed group)</small></td>'
    mine, theirs = (_get(versus, f"{prefix}mcnemar_method_only"),
                    _get(versus, f"{prefix}mcnemar_reference_only"))
    counts = ("" if np.isnan(mine) else
              f"<small>{int(mine)} only here, {int(theirs)} only in the reference</small>")
    return f'<td class="num"><span class="v">p = {p:.3g}</span>{counts}</td>'


def _method_column(table: pd.DataFrame) -> str | None:
    if "method" in table:
        return "method"
    return str(table.columns[0]) if len(table.columns) else None


def pivot_section(leaderboard: pd.DataFrame, pairs: pd.DataFrame,
                  reports: list[Report | None]) -> str:
    """Methods down, headline metrics across (see pivot_cell), McNemar beside MaxBoxAcc.
    reports: the report read for each leaderboard row (a seed group's first), or None."""
    key = _method_column(leaderboard)
    # the headline metrics in report.html's card order; one no method has is left out
    metrics = [m for m in metricdefs.headline(opt_in=True) if m in leaderboard]
    if key is None or not metrics:
        return section("summary", "Methods", '<p class="note">The leaderboard holds no '
                       "headline metric.</p>")
    reference = (str(pairs["reference"].iloc[0]) if "reference" in pairs and len(pairs)
                 else str(leaderboard[key].iloc[0]))
    against = (pairs.drop_duplicates("method").set_index("method")
               if "method" in pairs and "reference" in pairs else pd.DataFrame())
    has_tests = "mcnemar_p" in pairs
    head = ["<th>method</th>"]
    for metric in metrics:
        head.append(f"<th>{esc(metric_label(metric))}<br><small>{esc(metric)}</small></th>")
        if metric == MCNEMAR_AFTER and has_tests:
            head.append("<th>McNemar<br><small>per-image GT-known at<br>each one's "
                        "MaxBoxAcc threshold</small></th>")
        if f"{metric}_mcnemar_p" in pairs:  # a hit-or-miss metric: its own test
            head.append(f"<th>McNemar<br><small>per-image {esc(metric)}</small></th>")
    rows = []
    for index, (_, board) in enumerate(leaderboard.iterrows()):
        name = str(board[key])
        versus = against.loc[name] if name in against.index else None
        report = reports[index] if index < len(reports) else None
        cells = [f"<td><b>{esc(name)}</b>"
                 + ("<small> (reference)</small>" if name == reference else "") + "</td>"]
        for metric in metrics:
            cells.append(pivot_cell(metric, board, versus, report))
            if metric == MCNEMAR_AFTER and has_tests:
                cells.append(mcnemar_cell(versus, name == reference))
            if f"{metric}_mcnemar_p" in pairs:
                cells.append(mcnemar_cell(versus, name == reference, f"{metric}_"))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = (f'<p class="note">Each cell: the value (%) with its 95% bootstrap interval; '
            f"below it, &Delta;: the difference to the reference <b>{esc(reference)}</b> "
            f"with its 95% paired interval, and the CAM threshold the value was taken at. "
            f"The columns are explained below.</p>")
    return section("summary", "Methods against the reference", note
                   + '<div class="scroll"><table class="pivot"><thead><tr>'
                   + "".join(head) + "</tr></thead><tbody>" + "".join(rows)
                   + "</tbody></table></div>")


# --------------------------------------------------------------------------- the legend


def explain(column: str) -> tuple[str, str] | None:
    """(what the legend lists, its meaning) for a column of the CSV files: a whole name,
    a metric, or a metric's suffix ('*_optimism'); None for a column it does not know."""
    if column in COLUMN_NOTES:
        return column, COLUMN_NOTES[column]
    for suffix in sorted(SUFFIX_NOTES, key=len, reverse=True):
        if column.endswith(suffix) and column != suffix:
            return f"*{suffix}", SUFFIX_NOTES[suffix]
    base = column.split("@")[0] + "@" if "@" in column else column
    notes = metricdefs.descriptions()
    if base in notes:
        shown = "max_box_acc_v2@k" if base.endswith("@") else column
        return shown, notes[base]
    return None


def legend_section(leaderboard: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """Every column the page shows, explained: whole names and metrics in the order met,
    then the suffixes; columns it does not know are listed as such."""
    entries: dict[str, str] = {}
    suffixes: dict[str, str] = {}
    for column in [*leaderboard.columns, *pairs.columns]:
        found = explain(str(column))
        if found is None:
            entries.setdefault(str(column), "a column this page does not describe")
            continue
        shown, text = found
        if shown.startswith("*"):
            suffixes.setdefault(shown, text)
            base = explain(str(column)[:-len(shown) + 1])
            if base is not None and not base[0].startswith("*"):
                entries.setdefault(*base)
        else:
            entries.setdefault(shown, text)
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>"
                    for k, v in [*entries.items(), *suffixes.items()])
    thresholds = ('<p class="note">CAM thresholds: <b>fixed</b> is the report\'s '
                  "--threshold; <b>calibrated</b> was chosen on validation images; "
                  "<b>oracle</b> is the best on the scored images themselves (optimistic: "
                  "see *_optimism); <b>from another report</b> was taken from a report "
                  "given to score's --threshold-from.</p>")
    return section("columns", "What the columns mean",
                   f'<dl class="explain">{items}</dl>' + thresholds)


def raw_tables_section(leaderboard: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """leaderboard.csv and pairs.csv as they are, folded: the pivot is their reading."""
    parts = []
    for name, table in (("leaderboard.csv", leaderboard), ("pairs.csv", pairs)):
        parts.append(f"<details><summary>{esc(name)}: {counted(len(table), 'row')}, "
                     f"{counted(len(table.columns), 'column')}</summary>"
                     f"{table_html(table)}</details>")
    return section("tables", "The tables as written", "".join(parts))


# --------------------------------------------------------------------------- curves, images


def compare_curves_section(reports: list[Report], names: list[str]) -> str:
    """One chart per curve (gt_known_loc, box_acc_v2@k, ...), every method on it, each
    marked at its own chosen threshold."""
    columns: list[str] = []
    for report in reports:
        columns += [c for c in curve_columns(report.curve) if c not in columns]
    charts = []
    for column in columns:
        lines, markers = [], []
        for style, (report, name) in enumerate(zip(reports, names)):
            if column in report.curve:
                line, marker = marked_line(report, column, style, name)
                lines.append(line)
                markers += [marker] if marker else []
        charts.append(f"<div><h3>{esc(column)}</h3>" + line_chart(
            lines, markers, "CAM threshold (fraction of the map's range)", "accuracy (%)")
            + "</div>")
    if not charts:
        charts.append('<p class="note">No report holds a curve.csv.</p>')
    return section("curves", "Accuracy against CAM threshold",
                   f'<div class="charts">{"".join(charts)}</div>')


def disagreement_section(reports: list[Report], names: list[str], limit: int = 8,
                         max_methods: int = 8) -> str:
    """The images whose IoU differs most between methods, each method's map and box side
    by side (at most `limit` images and the first `max_methods` methods)."""
    chosen = [(r, n) for r, n in zip(reports, names)
              if {"image", "iou"} <= set(r.per_image.columns)][:max_methods]
    if len(chosen) < 2:
        return section("gallery", "Where the methods disagree", '<p class="note">Fewer '
                       "than two reports have per_image.csv.</p>")
    ious = pd.DataFrame({n: r.per_image.drop_duplicates("image").set_index("image")["iou"]
                         for r, n in chosen})
    images = gallery.pick_disagreements(ious, limit)
    rows = []
    for report, name in chosen:
        table = report.per_image.drop_duplicates("image").set_index("image", drop=False)
        source = gallery_source(report, set(images))
        maps = load_maps(source, images)
        rows.append((name, table, source, maps, report.protocol))
    blocks = []
    for image in images:
        cards = [card(table.loc[image], source, maps, protocol, name)
                 for name, table, source, maps, protocol in rows]
        blocks.append(f'<div class="block"><h3>{esc(image)}</h3>'
                      f'<div class="versus">{"".join(cards)}</div></div>')
    if not blocks:
        blocks.append('<p class="note">The reports share no scored image.</p>')
    where = per_image_threshold(chosen[0][0])
    return section("gallery", f"Where the methods disagree ({counted(len(images), 'image')})",
                   box_key(f"{where} of each method's own report")
                   + f'<div class="blocks">{"".join(blocks)}</div>')


# --------------------------------------------------------------------------- the page


def coverage_facts(leaderboard: pd.DataFrame) -> tuple[str, str]:
    """(what the page's header says of the images, a banner when they are part of the
    split): 'N of M annotated images' when the reports recorded M."""
    if "images" not in leaderboard or not len(leaderboard):
        return "", ""
    images = int(leaderboard["images"].iloc[0])
    annotated = (pd.to_numeric(leaderboard["annotated"], errors="coerce").iloc[0]
                 if "annotated" in leaderboard else np.nan)
    if "coverage" in leaderboard and isinstance(leaderboard["coverage"].iloc[0], str):
        text = leaderboard["coverage"].iloc[0]
    else:
        text = counted(images, "image")
    if pd.notna(annotated) and images < annotated:
        return text, (f'<div class="banner" id="partial"><b>Partial: {esc(text)}</b>. '
                      f"Every report scored the same part of the split; these are not the "
                      f"benchmark's figures for the whole split.</div>")
    return text, ""


def write_compare_html(out_dir: str | Path, reports: list, leaderboard: pd.DataFrame,
                       pairs: pd.DataFrame, names: list[str] | None = None) -> Path:
    """OUT/report.html for `compare`: the pivot, what the columns mean, every method's
    curves on one chart per curve, the images where the methods disagree most, and the
    two tables as written. reports: one ScoreReport (or folder) per leaderboard row;
    names: the methods' names as leaderboard.csv gives them (reportfolder.method_names
    of the folders when not given)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = [read_report(r) for r in reports]
    names = list(names) if names is not None else method_names([(r.folder,) for r in loaded])
    images, banner = coverage_facts(leaderboard)
    rows = loaded if len(loaded) == len(leaderboard) else []
    sections = [
        ("summary", "Methods", pivot_section(leaderboard, pairs, rows)),
        ("columns", "Columns", legend_section(leaderboard, pairs)),
        ("curves", "Curves", compare_curves_section(loaded, names)),
        ("gallery", "Disagreements", disagreement_section(loaded, names)),
        ("tables", "Tables", raw_tables_section(leaderboard, pairs))]
    facts = [("methods", str(len(loaded))), ("images", images),
             ("protocol", loaded[0].protocol if loaded else "")]
    text = page(f"acol-eval compare: {', '.join(names)}"[:200], facts, sections, banner)
    path = out / PAGE_FILE
    atomic_write_text(path, text)
    return path
