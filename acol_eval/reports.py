"""Report tables of `score` (SPEC 7, 9): summary.csv, per_class.csv and curve.csv as
DataFrames, the curve.png plot and the terminal table. Typed inputs in, tables out;
reportfolder.py writes them into the report folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import bootstrap_interval, pxap_from_histograms
from .safeio import atomic_write_bytes

SUMMARY_COLUMNS = ["metric", "value", "threshold", "iou", "protocol", "count", "ci_low",
                   "ci_high", "threshold_source"]


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

    def percent(self, curve: np.ndarray) -> np.ndarray:
        return curve * 100.0 / max(self.count, 1)


@dataclass(frozen=True)
class ThresholdChoice:
    """Where each metric is read on the grid (indices into thresholds) and why: source is
    'oracle' (best on these images), 'fixed' (--threshold or the 0.2 default) or
    'from:PATH' (another report's threshold)."""

    fixed: int
    fixed_source: str
    best_gt: int
    best_source: str
    v2: dict[int, int]
    v2_source: dict[int, str]


@dataclass(frozen=True)
class SummaryInputs:
    """Everything summary.csv is made of. per_image: one row per scored image with the
    outcome columns label, iou, correct, top1_correct, top5_correct, _gt_fixed,
    _gt_best and _v2_<k> (0/1 or NaN)."""

    curves: Curves
    choice: ThresholdChoice
    protocol: str
    has_predictions: bool
    pxap_hist: np.ndarray | None
    per_image: pd.DataFrame
    issues: dict[str, int]
    bootstrap: int = 0
    seed: int = 0


def protocol_label(protocol: str, baseline: str | None) -> str:
    """The protocol field of every row: the protocol, plus `(baseline: centre)` when the
    maps were the centre baseline's and not the run's."""
    return f"{protocol} (baseline: {baseline})" if baseline else protocol


def summary_table(inputs: SummaryInputs) -> pd.DataFrame:
    """summary.csv rows: every metric with its threshold, IoU, protocol, count, CI and
    threshold source. Box metrics only when some image has ground-truth boxes."""
    rows: list[list] = []
    curves, per_image = inputs.curves, inputs.per_image

    def add(metric, value, threshold, iou, n, outcomes=None, source=""):
        low = high = np.nan
        if inputs.bootstrap and outcomes is not None:
            low, high = bootstrap_interval(outcomes, inputs.bootstrap, inputs.seed)
        rows.append([metric, value, threshold, iou, inputs.protocol, n, low, high, source])

    top1_ok = top5_ok = None
    if inputs.has_predictions:
        top1_ok = per_image["top1_correct"].astype(float).to_numpy()
        top5_ok = per_image["top5_correct"].astype(float).to_numpy()
        add("cls_top1", np.nanmean(top1_ok) * 100, np.nan, np.nan, len(per_image), top1_ok)
        add("cls_top5", np.nanmean(top5_ok) * 100, np.nan, np.nan, len(per_image), top5_ok)
    if curves.count:
        _box_rows(inputs, add, top1_ok, top5_ok)
    if inputs.pxap_hist is not None:
        add("pxap", pxap_from_histograms(*inputs.pxap_hist), np.nan, np.nan, len(per_image))
    for name, amount in sorted(inputs.issues.items()):
        rows.append([f"issue:{name}", amount, np.nan, np.nan, inputs.protocol, amount,
                     np.nan, np.nan, ""])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _box_rows(inputs: SummaryInputs, add, top1_ok, top5_ok) -> None:
    """GT-known, Top-1/5 Loc (fixed and best threshold), MaxBoxAcc and V2 rows."""
    curves, choice, per_image = inputs.curves, inputs.choice, inputs.per_image
    thresholds = curves.thresholds

    def outcomes(column):
        return per_image[column].to_numpy(dtype=float) if column in per_image else None

    for name, index, column, source in (("", choice.fixed, "_gt_fixed", choice.fixed_source),
                                        ("best_", choice.best_gt, "_gt_best",
                                         choice.best_source)):
        gt_out = outcomes(column)
        add(f"{name}gt_known_loc", curves.percent(curves.gt_known)[index], thresholds[index],
            50, curves.count, gt_out, source)
        if inputs.has_predictions:
            add(f"{name}top1_loc", curves.percent(curves.top1)[index], thresholds[index], 50,
                curves.count, gt_out * top1_ok if gt_out is not None else None, source)
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


def per_class_table(per_image: pd.DataFrame, threshold: float) -> pd.DataFrame | None:
    """per_class.csv: per label, images, GT-known Loc and mean IoU at the threshold of
    per_image.csv (`threshold` column), Top-1 Loc when there are predictions."""
    boxed = per_image[per_image["has_gt"] == 1] if "has_gt" in per_image else per_image
    if not len(boxed):
        return None
    per_class = boxed.groupby("label").agg(
        count=("correct", "size"), gt_known_loc=("correct", "mean"),
        mean_iou=("iou", "mean")).reset_index()
    per_class["gt_known_loc"] *= 100
    if boxed["top1_correct"].notna().any():
        ok = boxed["correct"] * boxed["top1_correct"].astype(float)
        per_class["top1_loc"] = ok.groupby(boxed["label"]).mean().to_numpy() * 100
    per_class["threshold"] = threshold
    return per_class.rename(columns={"label": "class"})


def curve_table(curves: Curves) -> pd.DataFrame:
    """curve.csv: accuracy (percent) at every CAM threshold, one column per curve."""
    curve = pd.DataFrame({"threshold": curves.thresholds,
                          "gt_known_loc": curves.percent(curves.gt_known)})
    if curves.top1.any():
        curve["top1_loc"] = curves.percent(curves.top1)
        curve["top5_loc"] = curves.percent(curves.top5)
    for j, k in enumerate(curves.iou):
        curve[f"box_acc_v2@{k}"] = curves.percent(curves.v2[j])
    return curve


COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]


def plot_curve(path: Path, curve: pd.DataFrame, protocol: str) -> None:
    """Accuracy against threshold, drawn with OpenCV (matplotlib cost 0.6 s a run)."""
    import cv2

    width, height = 640, 420
    left, right, top, bottom = 62, 20, 36, 52
    image = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    plot_w, plot_h = width - left - right, height - top - bottom

    def to_px(x, y):
        return (left + x * plot_w, top + (1 - y / 100.0) * plot_h)

    for tick in range(0, 101, 20):  # grid and axis labels
        _, y = to_px(0, tick)
        cv2.line(image, (left, int(round(y))), (width - right, int(round(y))), (225, 225, 225), 1)
        cv2.putText(image, f"{tick}", (left - 32, int(round(y)) + 5), font, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    for tick in np.arange(0, 1.01, 0.2):
        x, _ = to_px(tick, 0)
        cv2.line(image, (int(round(x)), top), (int(round(x)), height - bottom), (225, 225, 225),
                 1)
        cv2.putText(image, f"{tick:.1f}", (int(round(x)) - 10, height - bottom + 18), font, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    thresholds = curve["threshold"].to_numpy(dtype=np.float64)
    for k, column in enumerate(curve.columns[1:]):
        values = np.nan_to_num(curve[column].to_numpy(dtype=np.float64))
        xs, ys = to_px(thresholds, values)
        points = np.round(np.stack([xs, ys], axis=1) * 16).astype(np.int32)
        colour = COLOURS[k % len(COLOURS)]
        cv2.polylines(image, [points.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA, shift=4)
        legend_y = top + 16 + 16 * k
        cv2.line(image, (width - right - 150, legend_y - 4), (width - right - 130, legend_y - 4),
                 colour, 2)
        cv2.putText(image, str(column), (width - right - 125, legend_y), font, 0.38, (0, 0, 0),
                    1, cv2.LINE_AA)
    cv2.putText(image, "CAM threshold", (left + plot_w // 2 - 50, height - 12), font, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)
    label = np.full((20, 120, 3), 255, np.uint8)
    cv2.putText(label, "accuracy (%)", (4, 14), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    rotated = cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = top + plot_h // 2 - 60
    image[y0:y0 + 120, 4:24] = rotated
    cv2.putText(image, f"Localisation accuracy against threshold ({protocol})", (left, 22), font,
                0.45, (0, 0, 0), 1, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".png", image)
    if ok:
        atomic_write_bytes(path, encoded.tobytes())


def terminal_table(summary: pd.DataFrame) -> str:
    """The headline table: metric, value, threshold, IoU, count."""
    lines = [f"{'metric':<22}{'value':>9}{'threshold':>11}{'iou':>6}{'count':>8}"]
    for row in summary.itertuples():
        if str(row.metric).startswith("issue:"):
            continue
        threshold = "" if pd.isna(row.threshold) else f"{row.threshold:.3f}"
        iou = "" if pd.isna(row.iou) else f"{int(row.iou)}"
        ci = "" if pd.isna(row.ci_low) else f"  [{row.ci_low:.2f}, {row.ci_high:.2f}]"
        lines.append(f"{row.metric:<22}{row.value:>9.2f}{threshold:>11}{iou:>6}"
                     f"{int(row.count):>8}{ci}")
    return "\n".join(lines)
