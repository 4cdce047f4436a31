"""How a localize run and a score report show themselves in a notebook (`_repr_html_`):
a line saying what the folder is, its headline table, the curve inline. Plain HTML
from the folder's own files; no plotting library."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acol_eval.maps.reportfolder import ScoreReport
    from acol_eval.maps.runfolder import LocalizeRun

SUMMARY_COLUMNS = ["metric", "value", "threshold", "threshold_source", "count", "ci_low",
                   "ci_high"]
PREVIEW_ROWS = 5


def report_html(report: ScoreReport) -> str:
    """The report's coverage and protocol, summary.csv's main columns, curve.png."""
    meta = report.meta_or_none
    title = f"score report {report.folder}"
    if meta is not None:
        title += f": {meta.protocol}, {meta.coverage}"
    summary = report.summary
    shown = summary[[c for c in SUMMARY_COLUMNS if c in summary.columns]]
    parts = [f"<p><b>{html.escape(title)}</b></p>",
             shown.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")]
    curve = report.folder / "curve.png"
    if curve.is_file():
        data = base64.b64encode(curve.read_bytes()).decode("ascii")
        parts.append(f'<img alt="accuracy against CAM threshold" '
                     f'src="data:image/png;base64,{data}" style="max-width:640px">')
    return "\n".join(parts)


def run_html(run: LocalizeRun) -> str:
    """The run's image count, map method and CAM threshold, the first rows of
    predictions.csv."""
    threshold, source = run.cam_threshold
    table = run.predictions()
    line = (f"localize run {run.folder}: {len(table)} images, maps by {run.method}"
            + (f", boxes at CAM threshold {threshold:g} ({source})"
               if isinstance(threshold, (int, float)) else ""))
    return "\n".join([f"<p><b>{html.escape(line)}</b></p>",
                      table.head(PREVIEW_ROWS).to_html(index=False)])
