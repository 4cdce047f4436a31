"""Report tables of `score`: summary.csv, per_class.csv and curve.csv as
DataFrames, the curve.png plot and the terminal table. Typed inputs in, tables out;
reportfolder.py writes them into the report folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import metricdefs
from .metricdefs import ThresholdChoice
from .metrics import bootstrap_interval, pxap_from_histograms
from .safeio import atomic_write_bytes

SUMMARY_COLUMNS = ["metric", "value", "threshold", "iou", "protocol", "count", "ci_low",
                   "ci_high", "threshold_source", "map", "coverage"]


@dataclass(frozen=True)
class LocNames:
    """The names of the largest-box localisation figures. GT-known Loc is the label's
    map judged against the label's boxes; where the top-1 predicted class's map was
    scored (class-agnostic localisation) the same count is another figure and gets its
    own name, and Top-5 Loc (which needs the label's map) is not reported."""

    fixed: str
    best: str
    top5: bool


_FIXED, _BEST = metricdefs.get_metric("gt_known_loc"), metricdefs.get_metric("best_gt_known_loc")
LABEL_NAMES = LocNames(_FIXED.name, _BEST.name, True)
AGNOSTIC_NAMES = LocNames(_FIXED.agnostic_name, _BEST.agnostic_name,
                          bool(metricdefs.get_metric("top5_loc").agnostic_name))


def loc_names(agnostic: bool) -> LocNames:
    return AGNOSTIC_NAMES if agnostic else LABEL_NAMES


@dataclass(frozen=True)
class Curves:
    """Correct-counts per CAM threshold, summed over images: gt_known (largest box,
    IoU 0.5), top1 / top5 (and the class right), v2 (J, T): any box at iou[j]. count:
    images with ground-truth boxes (the denominator of every box metric)."""

    thresholds: np.ndarray
    gt_known: np.ndarray
    top1: np.ndarray
    top5: np.ndarray
    v2: np.ndarray
    iou: tuple[int, ...]
    count: int
    agnostic: bool = False  # some image was scored with the top-1 class's map

    @property
    def names(self) -> LocNames:
        return loc_names(self.agnostic)

    def percent(self, curve: np.ndarray) -> np.ndarray:
        return curve * 100.0 / max(self.count, 1)


@dataclass(frozen=True)
class SummaryInputs:
    """Everything summary.csv is made of. per_image: one row per scored image with the
    outcome columns label, iou, correct, top1_correct, top5_correct, _gt_fixed,
    _gt_best and _v2_<k> (0/1 or NaN), and one column per registered per-image metric
    (metricdefs.per_image_metrics)."""

    curves: Curves
    choice: ThresholdChoice
    protocol: str
    has_predictions: bool
    pxap_hist: np.ndarray | None
    per_image: pd.DataFrame
    issues: dict[str, int]
    bootstrap: int = 0
    seed: int = 0
    map_scored: str = ""  # the `map` column of map-dependent rows (ReportMeta.map_scored)
    coverage: str = ""  # the `coverage` column of every row: 'N of M'


# how a count of each issue reads: (one, several); others read 'NAME: COUNT'
ISSUE_WORDS = {
    "annotation_without_map": ("annotated image without a map", "annotated images without a map"),
    "map_without_annotation": ("map without annotation", "maps without annotation"),
    "image_without_size": ("boxed image without an image size",
                           "boxed images without an image size"),
    "label_not_a_model_class": ("image whose label is not a model class",
                                "images whose label is not a model class"),
    "scored_with_top1_map": ("image scored with its top-1 map", "images scored with their "
                                                                 "top-1 map"),
    "unreadable_map": ("unreadable map", "unreadable maps"),
    "map_not_2d": ("map not 2-D", "maps not 2-D"),
    "empty_map": ("empty map", "empty maps"),
    "complex_map": ("complex map", "complex maps"),
    "map_not_finite": ("map with NaN or inf", "maps with NaN or inf"),
    "constant_map": ("constant map", "constant maps"),
    "map_not_normalised": ("map outside [0, 1]", "maps outside [0, 1]"),
    "mask_unreadable": ("unreadable mask", "unreadable masks"),
}


def issue_text(name: str, amount: int) -> str:
    """'1 map without annotation', '5782 annotated images without a map'."""
    words = ISSUE_WORDS.get(name)
    if words is None:
        return f"{name.replace('_', ' ')}: {amount}"
    return f"{amount} {words[0] if amount == 1 else words[1]}"


def protocol_label(protocol: str, baseline: str | None) -> str:
    """The protocol field of every row: the protocol, plus `(baseline: centre)` when the
    maps were the centre baseline's and not the run's."""
    return f"{protocol} (baseline: {baseline})" if baseline else protocol


def summary_table(inputs: SummaryInputs) -> pd.DataFrame:
    """summary.csv rows: every metric with its threshold, IoU, protocol, count, CI and
    threshold source. Box metrics only when some image has ground-truth boxes."""
    rows: list[list] = []
    curves, per_image = inputs.curves, inputs.per_image

    def add(metric, value, threshold, iou, n, outcomes=None, source="", maps=True):
        low = high = np.nan
        if inputs.bootstrap and outcomes is not None:
            low, high = bootstrap_interval(outcomes, inputs.bootstrap, inputs.seed)
        rows.append([metric, value, threshold, iou, inputs.protocol, n, low, high, source,
                     inputs.map_scored if maps else "", inputs.coverage])

    top1_ok = top5_ok = None  # None: unknown for every image, so no such rows
    if inputs.has_predictions:
        top1_ok = _known(per_image["top1_correct"])
        top5_ok = _known(per_image["top5_correct"])
    if top1_ok is not None:
        add("cls_top1", np.nanmean(top1_ok) * 100, np.nan, np.nan, len(per_image), top1_ok,
            maps=False)
    if top5_ok is not None:
        add("cls_top5", np.nanmean(top5_ok) * 100, np.nan, np.nan, len(per_image), top5_ok,
            maps=False)
    if curves.count:
        _box_rows(inputs, add, top1_ok, top5_ok)
    if inputs.pxap_hist is not None:
        add("pxap", pxap_from_histograms(*inputs.pxap_hist), np.nan, np.nan, len(per_image))
    _per_image_rows(inputs, add)
    # the registry's order (an IoU's MaxBoxAccV2 row stays before the mean, as added)
    place = {n: k for k, m in enumerate(metricdefs.metrics()) for n in (m.name, m.agnostic_name)}
    rows.sort(key=lambda row: place[row[0].split("@")[0]])
    for name, amount in sorted(inputs.issues.items()):
        rows.append([f"issue:{name}", amount, np.nan, np.nan, inputs.protocol, amount,
                     np.nan, np.nan, "", "", inputs.coverage])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _per_image_rows(inputs: SummaryInputs, add) -> None:
    """A row per registered per-image metric: the mean of its known per-image values
    (scaled into its unit) at its threshold, with their bootstrap interval."""
    per_image, choice, thresholds = inputs.per_image, inputs.choice, inputs.curves.thresholds
    for metric in metricdefs.per_image_metrics():
        if metric.name not in per_image:
            continue
        values = per_image[metric.name].to_numpy(dtype=float)
        known = values[np.isfinite(values)]
        if not known.size:
            continue
        fixed = metric.threshold is metricdefs.Threshold.FIXED
        add(metric.name, float(known.mean()) * metric.scale,
            thresholds[choice.fixed] if fixed else np.nan, np.nan, int(known.size),
            # bootstrap_interval gives percent of the values' mean: 1/100 of them
            known * (metric.scale / 100), choice.fixed_source if fixed else "",
            maps=bool(metric.needs & (metricdefs.Needs.BOXES | metricdefs.Needs.MASKS)))


def _known(column: pd.Series) -> np.ndarray | None:
    """Per-image 0/1 correctness as floats, or None when it is unknown for every image
    (no predictions, labels that are not model classes, a top-5 from fewer than five)."""
    values = column.astype(float).to_numpy()
    return values if np.isfinite(values).any() else None


def _box_rows(inputs: SummaryInputs, add, top1_ok, top5_ok) -> None:
    """GT-known (or class-agnostic), Top-1/5 Loc (fixed and best threshold), MaxBoxAcc
    and V2 rows."""
    curves, choice, per_image = inputs.curves, inputs.choice, inputs.per_image
    thresholds, names = curves.thresholds, curves.names
    if not names.top5:
        top5_ok = None

    def outcomes(column):
        return per_image[column].to_numpy(dtype=float) if column in per_image else None

    for name, index, column, source in (("", choice.fixed, "_gt_fixed", choice.fixed_source),
                                        ("best_", choice.best_gt, "_gt_best",
                                         choice.best_source)):
        gt_out = outcomes(column)
        add(names.best if name else names.fixed, curves.percent(curves.gt_known)[index],
            thresholds[index], 50, curves.count, gt_out, source)
        if top1_ok is not None:
            add(f"{name}top1_loc", curves.percent(curves.top1)[index], thresholds[index], 50,
                curves.count, gt_out * top1_ok if gt_out is not None else None, source)
        if top5_ok is not None:
            add(f"{name}top5_loc", curves.percent(curves.top5)[index], thresholds[index], 50,
                curves.count, gt_out * top5_ok if gt_out is not None else None, source)
    add("max_box_acc", curves.percent(curves.gt_known)[choice.best_gt],
        thresholds[choice.best_gt], 50, curves.count, outcomes("_gt_best"), choice.best_source)
    values, columns = [], []
    for j, k in enumerate(curves.iou):
        index = choice.v2[k]
        values.append(curves.percent(curves.v2[j])[index])
        columns.append(f"_v2_{k}")
        add(f"max_box_acc_v2@{k}", values[-1], thresholds[index], k, curves.count,
            outcomes(f"_v2_{k}"), choice.v2_source[k])
    # the mean over IoUs of per-image correctness resamples into the mean of accuracies
    both = (per_image[columns].to_numpy(dtype=float).mean(axis=1)
            if set(columns) <= set(per_image.columns) else None)
    sources = sorted(set(choice.v2_source.values()))
    add("max_box_acc_v2", float(np.mean(values)), np.nan, np.nan, curves.count, both,
        sources[0] if len(sources) == 1 else "mixed")


def per_class_table(per_image: pd.DataFrame, curves: Curves, choice: ThresholdChoice
                    ) -> pd.DataFrame | None:
    """per_class.csv: per label at the summary's fixed threshold (the threshold and
    threshold_source of its gt_known_loc / top1_loc rows): images, GT-known Loc (or
    agnostic_loc), Top-1 Loc when there are predictions, mean IoU of the largest box;
    then the same GT-known figure at the summary's best threshold (best_gt_known_loc,
    its best_threshold and best_threshold_source), named as the summary names it.
    per_image: the outcome columns _gt_fixed, _gt_best, _iou_fixed, top1_correct."""
    boxed = per_image[per_image["has_gt"] == 1] if "has_gt" in per_image else per_image
    if not len(boxed):
        return None
    names = curves.names
    groups = boxed.groupby("label")
    per_class = pd.DataFrame({"count": groups.size()})
    per_class[names.fixed] = groups["_gt_fixed"].mean() * 100
    if boxed["top1_correct"].notna().any():
        ok = boxed["_gt_fixed"] * boxed["top1_correct"].astype(float)
        per_class["top1_loc"] = ok.groupby(boxed["label"]).mean() * 100
    per_class["mean_iou"] = groups["_iou_fixed"].mean()
    per_class["threshold"] = curves.thresholds[choice.fixed]
    per_class["threshold_source"] = choice.fixed_source
    per_class[names.best] = groups["_gt_best"].mean() * 100
    per_class["best_threshold"] = curves.thresholds[choice.best_gt]
    per_class["best_threshold_source"] = choice.best_source
    return per_class.reset_index().rename(columns={"label": "class"})


def curve_table(curves: Curves) -> pd.DataFrame:
    """curve.csv: accuracy (percent) at every CAM threshold, one column per curve, named
    as summary.csv names the figure read on it."""
    curve = pd.DataFrame({"threshold": curves.thresholds,
                          curves.names.fixed: curves.percent(curves.gt_known)})
    if curves.top1.any():
        curve["top1_loc"] = curves.percent(curves.top1)
        if curves.names.top5:
            curve["top5_loc"] = curves.percent(curves.top5)
    for j, k in enumerate(curves.iou):
        curve[f"box_acc_v2@{k}"] = curves.percent(curves.v2[j])
    return curve


def pxap_curve_table(hist: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    """pxap_curve.csv: pixel precision and recall (percent) at every CAM threshold, from
    score's PxAP histograms (hist[0] foreground, hist[1] background pixel scores in the
    bins [t0, t1), ..., [t_last, 1), [1, 2), [2, 3)): a pixel is positive at t_i when
    its score >= t_i. Precision is 0 where no pixel is positive, recall 0 without any
    foreground pixel, as in metrics.pxap_from_histograms (whose area this curve has)."""
    above = np.asarray(hist, np.float64)[:, ::-1].cumsum(axis=1)[:, ::-1][:, :len(thresholds)]
    tp, fp = above
    positive = tp + fp
    precision = np.divide(tp, positive, out=np.zeros_like(tp), where=positive > 0)
    foreground = float(np.asarray(hist, np.float64)[0].sum())
    recall = tp / foreground if foreground > 0 else np.zeros_like(tp)
    return pd.DataFrame({"threshold": np.asarray(thresholds, np.float64),
                         "precision": precision * 100, "recall": recall * 100})


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


def terminal_table(summary: pd.DataFrame) -> str:
    """The headline table: metric, value, threshold and where it came from, IoU, count."""
    lines = [f"{'metric':<22}{'value':>9}{'threshold':>11}  {'source':<26}{'iou':>4}"
             f"{'count':>8}"]
    for row in summary.itertuples():
        if str(row.metric).startswith("issue:"):
            continue
        threshold = "" if pd.isna(row.threshold) else f"{row.threshold:.3f}"
        source = getattr(row, "threshold_source", "")
        source = "" if not threshold or not isinstance(source, str) else source
        source = source if len(source) <= 25 else source[:6] + "~" + source[-18:]
        iou = "" if pd.isna(row.iou) else f"{int(row.iou)}"
        ci = "" if pd.isna(row.ci_low) else f"  [{row.ci_low:.2f}, {row.ci_high:.2f}]"
        lines.append(f"{row.metric:<22}{row.value:>9.2f}{threshold:>11}  {source:<26}"
                     f"{iou:>4}{int(row.count):>8}{ci}")
    return "\n".join(lines)
