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


def _plot(path: Path, curve: pd.DataFrame, protocol: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    for column in curve.columns[1:]:
        axes.plot(curve["threshold"], curve[column], label=column)
    axes.set_xlabel("CAM threshold")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(f"Localisation accuracy against threshold ({protocol})")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


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
