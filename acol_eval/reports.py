"""Report files of `score` (SPEC 7, 9): summary.csv, per_class.csv, per_image.csv,
curve.csv, curve.png and the terminal table. Tables in, files out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import bootstrap_interval, pxap_from_histograms

SUMMARY_COLUMNS = ["metric", "value", "threshold", "iou", "protocol", "count", "ci_low",
                   "ci_high"]


def protocol_label(config) -> str:
    """The protocol field of every row: the protocol, plus `(baseline: centre)` when the
    maps were the centre baseline's and not the run's."""
    baseline = getattr(config, "baseline", None)
    return f"{config.protocol} (baseline: {baseline})" if baseline else config.protocol


def summary_table(curves: dict, config, has_predictions: bool, best_gt: int, fixed: int,
                  v2_index: dict[int, int], hist: np.ndarray | None, per_image: pd.DataFrame,
                  issues: dict[str, int], failed: int) -> pd.DataFrame:
    """summary.csv rows: every metric with its threshold, IoU, protocol, count and CI."""
    thresholds = curves["thresholds"]
    count = max(curves["count"], 1)
    protocol = protocol_label(config)
    rows = []

    def add(metric, value, threshold, iou, n, outcomes=None):
        low = high = np.nan
        if config.bootstrap and outcomes is not None:
            low, high = bootstrap_interval(outcomes, config.bootstrap, config.seed)
        rows.append([metric, value, threshold, iou, protocol, n, low, high])

    def pct(curve, index):
        return float(curve[index] * 100.0 / count)

    def outcomes(column):
        return per_image[column].to_numpy(dtype=float) if column in per_image else None

    top1_ok = per_image["top1_correct"].astype(float).to_numpy() if has_predictions else None
    if has_predictions:
        top1_share = np.nanmean(top1_ok) * 100
        add("cls_top1", top1_share, np.nan, np.nan, len(per_image), top1_ok)
        top5_ok = per_image["top5_correct"].astype(float).to_numpy()
        add("cls_top5", np.nanmean(top5_ok) * 100, np.nan, np.nan, len(per_image), top5_ok)
    for name, index, column in (("", fixed, "_gt_fixed"), ("best_", best_gt, "_gt_best")):
        gt_out = outcomes(column)
        add(f"{name}gt_known_loc", pct(curves["gt_known"], index), thresholds[index], 50,
            curves["count"], gt_out)
        if has_predictions:
            both = gt_out * top1_ok if gt_out is not None else None
            add(f"{name}top1_loc", pct(curves["top1"], index), thresholds[index], 50,
                curves["count"], both)
            add(f"{name}top5_loc", pct(curves["top5"], index), thresholds[index], 50,
                curves["count"], gt_out * top5_ok if gt_out is not None else None)
    add("max_box_acc", pct(curves["gt_known"], best_gt), thresholds[best_gt], 50,
        curves["count"], outcomes("_gt_best"))
    v2_values = []
    for j, k in enumerate(config.iou):
        value = pct(curves["v2"][j], v2_index[k])
        v2_values.append(value)
        add(f"max_box_acc_v2@{k}", value, thresholds[v2_index[k]], k, curves["count"],
            outcomes(f"_v2_{k}"))
    add("max_box_acc_v2", float(np.mean(v2_values)), np.nan, np.nan, curves["count"])
    if hist is not None:
        add("pxap", pxap_from_histograms(hist[0], hist[1]), np.nan, np.nan,
            int(per_image.shape[0]))
    for name, amount in sorted({**issues, **({"unreadable_map": failed} if failed else {})}
                               .items()):
        rows.append([f"issue:{name}", amount, np.nan, np.nan, protocol, amount,
                     np.nan, np.nan])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def write_reports(out: Path, summary: pd.DataFrame, per_image: pd.DataFrame, curves: dict,
                  config) -> None:
    """summary.csv, per_class.csv, curve.csv, curve.png; per_image.csv is streamed by the
    scoring job itself (per_image here holds only the outcome columns: label, iou,
    correct, top1_correct, ...)."""
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    if len(per_image):
        per_class = per_image.groupby("label").agg(
            count=("correct", "size"), gt_known_loc=("correct", "mean"),
            mean_iou=("iou", "mean")).reset_index()
        per_class["gt_known_loc"] *= 100
        if per_image["top1_correct"].notna().any():
            ok = per_image["correct"] * per_image["top1_correct"].astype(float)
            per_class["top1_loc"] = ok.groupby(per_image["label"]).mean().to_numpy() * 100
        per_class.rename(columns={"label": "class"}).to_csv(out / "per_class.csv", index=False,
                                                             float_format="%.6g")
    count = max(curves["count"], 1)
    curve = pd.DataFrame({"threshold": curves["thresholds"],
                          "gt_known_loc": curves["gt_known"] * 100.0 / count})
    if curves["top1"].any():
        curve["top1_loc"] = curves["top1"] * 100.0 / count
        curve["top5_loc"] = curves["top5"] * 100.0 / count
    for j, k in enumerate(config.iou):
        curve[f"box_acc_v2@{k}"] = curves["v2"][j] * 100.0 / count
    curve.to_csv(out / "curve.csv", index=False, float_format="%.6g")
    _plot(out / "curve.png", curve, protocol_label(config))


COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]


def _plot(path: Path, curve: pd.DataFrame, protocol: str) -> None:
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
    cv2.imwrite(str(path), image)


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
