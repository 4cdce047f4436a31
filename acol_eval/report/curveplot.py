"""curve.png, drawn with OpenCV: the line style every accuracy curve gets here and
in report.html (`line_style`), where each curve is marked at the threshold summary.csv
chose for it (`curve_marks`, pure), dashing (`dash_pieces`, pure), the plot's geometry
(`PlotFrame`) and `plot_curve`. Apart from the tables (reports.py): it draws
curve.csv and reads summary.csv, and cv2 is imported only when drawing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.metrics.reports import AGNOSTIC_NAMES, LABEL_NAMES
from acol_eval.util.safeio import atomic_write_bytes

# Okabe-Ito: told apart by colour-blind readers too; each line also gets its own dash
# (curve.png and report.html draw every curve with the same pair)
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#999933"]
DASHES = ["", "8 4", "2 3", "10 3 2 3", "5 2 1 2 1 2", "14 4"]  # SVG dash arrays, pixels
MAX_DASHED_LENGTH = 20_000  # pixels of polyline; real accuracy curves stay far below
FIXED_GREY = "#555555"  # the fixed threshold's mark: grey, dotted, full height
FIXED_DASH = "1 3"


def line_style(index: int) -> tuple[str, str]:
    """(colour '#rrggbb', SVG dash array, '' for solid) of the index-th curve: the first
    six differ in both, no two of the first 24 (8 x 6 / 2) share both."""
    return PALETTE[index % len(PALETTE)], DASHES[index % len(DASHES)]


@dataclass(frozen=True)
class CurveMark:
    """A threshold marked on the accuracy curves: the curve.csv column it belongs to
    (None for the fixed threshold), the summary.csv metric it stands for, its style
    index (the column's) and its accuracy on that curve (NaN for the fixed mark)."""

    column: str | None
    metric: str
    threshold: float
    style: int
    accuracy: float


def chosen_metric(column: str) -> str | None:
    """The summary.csv metric whose threshold was chosen on curve.csv's `column`
    (top1_loc and top5_loc are read at best_gt_known_loc's and not marked again)."""
    for names in (LABEL_NAMES, AGNOSTIC_NAMES):
        if column == names.fixed:
            return names.best
    if column.startswith("box_acc_v2@"):
        return "max_" + column
    return None


def curve_marks(curve: pd.DataFrame, summary: pd.DataFrame) -> list[CurveMark]:
    """Pure: where curve.png (and report.html) mark their curves: each curve at the
    threshold summary.csv reports for it, then the fixed threshold (gt_known_loc's)."""
    rows = {str(m): r for m, r in zip(summary["metric"], summary.itertuples())}
    thresholds = curve["threshold"].to_numpy(np.float64)
    marks = []
    for style, column in enumerate(curve.columns[1:]):
        row = rows.get(chosen_metric(str(column)) or "")
        if row is None or pd.isna(row.threshold):
            continue
        values = np.nan_to_num(curve[column].to_numpy(np.float64))
        marks.append(CurveMark(str(column), str(row.metric), float(row.threshold), style,
                               float(np.interp(row.threshold, thresholds, values))))
    fixed = rows.get(LABEL_NAMES.fixed, rows.get(AGNOSTIC_NAMES.fixed))
    if fixed is not None and pd.notna(fixed.threshold):
        marks.append(CurveMark(None, str(fixed.metric), float(fixed.threshold), -1, np.nan))
    return marks


def dash_pieces(points: np.ndarray, dash: str) -> list[np.ndarray]:
    """Pure: the drawn pieces of polyline `points` ((n, 2) pixels) under SVG dash array
    `dash` ('' solid): the line resampled every half pixel along its length, kept where
    the pattern is on (solid when longer than MAX_DASHED_LENGTH)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    pattern = [float(v) for v in dash.split()]
    if not pattern or len(points) < 2:
        return [points]
    along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
    if along[-1] > MAX_DASHED_LENGTH:  # a zigzag so long no dash would show: solid, fast
        return [points]
    steps = np.arange(0.0, along[-1] + 0.5, 0.5)
    dense = np.stack([np.interp(steps, along, points[:, 0]),
                      np.interp(steps, along, points[:, 1])], axis=1)
    bounds = np.cumsum(pattern * (2 if len(pattern) % 2 else 1))
    phase = np.searchsorted(bounds, steps % bounds[-1], side="right")
    on = phase % 2 == 0
    cuts = np.flatnonzero(np.diff(on.astype(np.int8))) + 1
    return [piece for piece, keep in zip(np.split(dense, cuts), np.split(on, cuts))
            if keep[0] and len(piece) > 1]


@dataclass(frozen=True)
class PlotFrame:
    """curve.png's geometry: the image size and the plot area's margins, pixels (the
    legend takes the right margin)."""

    width: int = 830
    height: int = 420
    left: int = 62
    right: int = 210
    top: int = 36
    bottom: int = 52

    def to_px(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Pixel (column, row) of CAM threshold x in [0, 1] and accuracy y in percent."""
        plot_w = self.width - self.left - self.right
        plot_h = self.height - self.top - self.bottom
        return (self.left + np.asarray(x, np.float64) * plot_w,
                self.top + (1 - np.asarray(y, np.float64) / 100.0) * plot_h)


def bgr(colour: str) -> tuple[int, int, int]:
    value = int(colour.lstrip("#"), 16)
    return value & 255, (value >> 8) & 255, value >> 16


def _polyline(image: np.ndarray, points: np.ndarray, colour: str, dash: str,
              thickness: int) -> None:
    import cv2

    # in 1/16 pixels; a vertex that changes the drawn line by under a quarter pixel is
    # dropped first (10,000 thresholds are mostly such vertices), which keeps dashing fast
    fixed = np.round(np.asarray(points, np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)
    if len(fixed) > 2:
        fixed = cv2.approxPolyDP(fixed, 4.0, False)
    pieces = [np.round(p * 16).astype(np.int32).reshape(-1, 1, 2)
              for p in dash_pieces(fixed.reshape(-1, 2) / 16.0, dash)]
    if pieces:
        cv2.polylines(image, pieces, False, bgr(colour), thickness, cv2.LINE_AA, shift=4)


def _axes(image: np.ndarray, frame: PlotFrame, protocol: str) -> None:
    """Grid, ticks, axis labels and title."""
    import cv2

    font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
    right, bottom = frame.width - frame.right, frame.height - frame.bottom
    for tick in range(0, 101, 20):
        y = int(round(float(frame.to_px(0, tick)[1])))
        cv2.line(image, (frame.left, y), (right, y), (225, 225, 225), 1)
        cv2.putText(image, f"{tick}", (frame.left - 32, y + 5), font, 0.4, black, 1,
                    cv2.LINE_AA)
    for tick in np.arange(0, 1.01, 0.2):
        x = int(round(float(frame.to_px(tick, 0)[0])))
        cv2.line(image, (x, frame.top), (x, bottom), (225, 225, 225), 1)
        cv2.putText(image, f"{tick:.1f}", (x - 10, bottom + 18), font, 0.4, black, 1,
                    cv2.LINE_AA)
    cv2.rectangle(image, (frame.left, frame.top), (right, bottom), black, 1)
    cv2.putText(image, "CAM threshold", ((frame.left + right) // 2 - 50, frame.height - 12),
                font, 0.45, black, 1, cv2.LINE_AA)
    label = np.full((20, 120, 3), 255, np.uint8)
    cv2.putText(label, "accuracy (%)", (4, 14), font, 0.45, black, 1, cv2.LINE_AA)
    y0 = (frame.top + bottom) // 2 - 60
    image[y0:y0 + 120, 4:24] = cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE)
    cv2.putText(image, f"Localisation accuracy against threshold ({protocol})",
                (frame.left, 22), font, 0.45, black, 1, cv2.LINE_AA)


def _mark(image: np.ndarray, frame: PlotFrame, mark: CurveMark) -> None:
    """A chosen threshold: a line in its curve's colour and dash from the curve down to
    the axis, and a dot on the curve; the fixed one: grey, dotted, full height."""
    import cv2

    x, y = frame.to_px(mark.threshold, 0 if mark.column is None else mark.accuracy)
    x, bottom = float(x), float(frame.height - frame.bottom)
    if mark.column is None:
        _polyline(image, np.array([[x, frame.top], [x, bottom]]), FIXED_GREY, FIXED_DASH, 2)
        cv2.putText(image, "fixed", (int(x) + 4, frame.top + 12), cv2.FONT_HERSHEY_SIMPLEX,
                    0.38, bgr(FIXED_GREY), 1, cv2.LINE_AA)
        return
    colour, dash = line_style(mark.style)
    _polyline(image, np.array([[x, float(y)], [x, bottom]]), colour, dash, 2)
    centre = (int(round(x)), int(round(float(y))))
    cv2.circle(image, centre, 6, (255, 255, 255), cv2.FILLED, cv2.LINE_AA)
    cv2.circle(image, centre, 4, bgr(colour), cv2.FILLED, cv2.LINE_AA)


def _legend(image: np.ndarray, frame: PlotFrame, columns: list[str],
            marks: list[CurveMark]) -> None:
    import cv2

    at = {m.column: m.threshold for m in marks}
    entries = [(str(c), *line_style(k), at.get(str(c))) for k, c in enumerate(columns)]
    entries += [(f"fixed threshold {m.threshold:.3f}", FIXED_GREY, FIXED_DASH, None)
                for m in marks if m.column is None]
    x0 = frame.width - frame.right + 14  # beside the plot: it hides no curve or mark
    for k, (name, colour, dash, chosen) in enumerate(entries):
        y = frame.top + 8 + 16 * k
        _polyline(image, np.array([[x0, y - 4.0], [x0 + 28, y - 4.0]]), colour, dash, 2)
        text = name if chosen is None else f"{name} @ {chosen:.3f}"
        cv2.putText(image, text, (x0 + 34, y), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1,
                    cv2.LINE_AA)
    if any(m.column is not None for m in marks):
        cv2.putText(image, "dots: the threshold each metric", (x0, frame.top + 16 + 16 *
                    len(entries)), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (90, 90, 90), 1, cv2.LINE_AA)
        cv2.putText(image, "was taken at (summary.csv)", (x0, frame.top + 32 + 16 *
                    len(entries)), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (90, 90, 90), 1, cv2.LINE_AA)


def plot_curve(path: Path, curve: pd.DataFrame, protocol: str,
               summary: pd.DataFrame | None = None, frame: PlotFrame = PlotFrame()) -> None:
    """Accuracy against threshold, drawn with OpenCV (matplotlib cost 0.6 s a run): every
    curve.csv column told apart by colour and dash (line_style, as in report.html), each
    marked at the threshold summary.csv chose for it and the fixed threshold marked
    (curve_marks) when `summary` is given."""
    import cv2

    image = np.full((frame.height, frame.width, 3), 255, np.uint8)
    _axes(image, frame, protocol)
    thresholds = curve["threshold"].to_numpy(dtype=np.float64)
    columns = [str(c) for c in curve.columns[1:]]
    for k, column in enumerate(columns):
        values = np.nan_to_num(curve[column].to_numpy(dtype=np.float64))
        xs, ys = frame.to_px(thresholds, values)
        _polyline(image, np.stack([xs, ys], axis=1), *line_style(k), 2)
    marks = curve_marks(curve, summary) if summary is not None else []
    for mark in sorted(marks, key=lambda m: m.column is not None):  # dots over the grey
        _mark(image, frame, mark)
    _legend(image, frame, columns, marks)
    ok, encoded = cv2.imencode(".png", image)
    if ok:
        atomic_write_bytes(path, encoded.tobytes())


# --------------------------------------------------------------------------- training curves

TRAINING_CURVES_FILE = "curves.png"  # in a train run's folder, beside metrics.csv
TRAINING_PANELS = (("loss", ("train_loss", "val_loss")),
                   ("percent", ("train_acc_1p", "val_acc_1p", "val_max_box_acc_v2")))


def training_series(rows: list[dict], columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Pure: each column of metrics.csv rows that has a finite value in some row, as
    floats per epoch (NaN where a row has none)."""
    found = {}
    for column in columns:
        values = np.array([_as_float(row.get(column)) for row in rows], np.float64)
        if np.isfinite(values).any():
            found[column] = values
    return found


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _panel(image: np.ndarray, top: int, height: int, frame: PlotFrame, panel: int,
           epochs: np.ndarray, rows: list[dict]) -> None:
    """Panel `panel` of TRAINING_PANELS: its columns' curves against epoch, a legend on
    the right; each column keeps its style index whichever columns a run has."""
    import cv2

    title, columns = TRAINING_PANELS[panel]
    series = training_series(rows, columns)
    font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
    left, right, bottom = frame.left, frame.width - frame.right, top + height
    values = np.concatenate([v[np.isfinite(v)] for v in series.values()] or [np.zeros(1)])
    high = 100.0 if title == "percent" else max(float(values.max()) * 1.1, 1e-6)
    span = max(float(epochs.max() - epochs.min()), 1.0)

    def px(x, y):
        return (left + (np.asarray(x, np.float64) - epochs.min()) / span * (right - left),
                bottom - np.asarray(y, np.float64) / high * height)

    for k in range(6):
        y = int(round(bottom - k / 5 * height))
        cv2.line(image, (left, y), (right, y), (225, 225, 225), 1)
        cv2.putText(image, f"{high * k / 5:.3g}", (4, y + 5), font, 0.38, black, 1, cv2.LINE_AA)
    for epoch in epochs:
        x = int(round(float(px(epoch, 0)[0])))
        cv2.putText(image, f"{int(epoch)}", (x - 4, bottom + 16), font, 0.38, black, 1,
                    cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (right, bottom), black, 1)
    cv2.putText(image, title, (left, top - 6), font, 0.45, black, 1, cv2.LINE_AA)
    first = sum(len(c) for _, c in TRAINING_PANELS[:panel])
    for k, (name, ys) in enumerate(series.items()):
        colour, dash = line_style(first + columns.index(name))
        keep = np.isfinite(ys)
        xs, yp = px(epochs[keep], ys[keep])
        points = np.stack([xs, yp], axis=1)
        if len(points) > 1:
            _polyline(image, points, colour, dash, 2)
        for x, y in points:  # a dot per epoch: a one-epoch run still shows its values
            cv2.circle(image, (int(round(x)), int(round(y))), 3, bgr(colour), cv2.FILLED,
                       cv2.LINE_AA)
        legend_y = top + 10 + 16 * k
        _polyline(image, np.array([[right + 14.0, legend_y - 4.0],
                                   [right + 42.0, legend_y - 4.0]]), colour, dash, 2)
        cv2.putText(image, name, (right + 48, legend_y), font, 0.36, black, 1, cv2.LINE_AA)


def plot_training(path: Path, rows: list[dict], frame: PlotFrame = PlotFrame(height=560)
                  ) -> None:
    """curves.png of a training run: the losses, then the accuracies and the validation
    localisation (percent), against epoch, from metrics.csv's rows; each column its own
    colour and dash (line_style), as the accuracy curves of a score report."""
    import cv2

    image = np.full((frame.height, frame.width, 3), 255, np.uint8)
    epochs = np.array([_as_float(row.get("epoch")) for row in rows], np.float64)
    height = (frame.height - frame.top - 2 * frame.bottom) // 2
    for panel in range(len(TRAINING_PANELS)):
        _panel(image, frame.top + panel * (height + frame.bottom), height, frame, panel,
               epochs, rows)
    cv2.putText(image, "epoch", ((frame.left + frame.width - frame.right) // 2,
                                 frame.height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0),
                1, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".png", image)
    if ok:
        atomic_write_bytes(path, encoded.tobytes())
