"""Report tables of `score`: summary.csv, per_class.csv and curve.csv as
DataFrames and the terminal table (curve.png is drawn in curveplot.py). Typed inputs
in, tables out; reportfolder.py writes them into the report folder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from acol_eval.metrics import metricdefs
from acol_eval.metrics.metricdefs import ThresholdChoice
from acol_eval.metrics.metrics import bootstrap_interval, pxap_from_histograms

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
    for metric in metricdefs.per_image_metrics():  # registered ones: their mean, scaled
        if metric.name in boxed:
            per_class[metric.name] = groups[metric.name].mean() * metric.scale
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


def terminal_table(summary: pd.DataFrame) -> str:
    """The headline table: metric, value, threshold and where it came from, IoU, count."""
    width = max([22] + [len(str(m)) + 1 for m in summary["metric"]
                        if not str(m).startswith("issue:")])  # region metrics' long names
    lines = [f"{'metric':<{width}}{'value':>9}{'threshold':>11}  {'source':<26}{'iou':>4}"
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
        lines.append(f"{row.metric:<{width}}{row.value:>9.2f}{threshold:>11}  {source:<26}"
                     f"{iou:>4}{int(row.count):>8}{ci}")
    return "\n".join(lines)
