"""What `compare` reads from each score report and how it resamples it: one report as
compare needs it (`Report`, `read_report`: report.json, summary.csv, per_image.csv's
names and labels), reduced to the per-image columns and threshold curves a bootstrap
round sums (`prepare` reads outcomes.npz, the large part), every metric of a method
for any weighting of the images (`method_metrics`: the observed values are the
weighting of ones, `observed_values`), and the paired bootstrap over every method
(`bootstrap`). The checks, the tables and the job around them are acol_eval.comparison.compare's.

In every bootstrap resample each method's best CAM threshold is picked again on the
resample (unless the report took its thresholds from another report), so the interval
includes the optimism of choosing the oracle threshold on the test images. How it stays
fast is told in acol_eval.comparison.stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse

from acol_eval.comparison.stats import resample_weights
from acol_eval.maps.reportfolder import ReportMeta, ScoreReport, as_report
from acol_eval.metrics import metricdefs
from acol_eval.util.errors import AcolError
from acol_eval.util.progress import Progress

RESAMPLE_BUDGET = 4_000_000  # images x rounds per resampling chunk (about 50 MB)
# the per-image columns every resample sums (Resampleable.columns), by position
HAS_GT, GT_FIXED, TOP1_FIXED, TOP1_RIGHT, TOP1_KNOWN = range(5)


# --------------------------------------------------------------------------- reading


@dataclass
class Report:
    """One score report as compare needs it, before restriction to common images."""

    path: Path
    meta: ReportMeta
    summary: pd.DataFrame  # summary.csv indexed by metric
    images: np.ndarray  # per_image.csv's image names, outcomes.npz's order
    labels: np.ndarray  # per_image.csv's labels
    source: ScoreReport | None = None  # the folder it was read from


def read_report(folder: str | Path | ScoreReport) -> Report:
    """report.json, summary.csv and per_image.csv's names and labels (outcomes.npz is
    read later, one report at a time: it is the large part)."""
    try:
        report = as_report(folder)
    except AcolError:
        raise AcolError(f"REPORT {folder} is not a folder") from None
    meta = report.meta
    summary = report.columns("summary", ["metric", "value", "threshold"],
                             optional=["threshold_source"])
    per_image = report.columns("per_image", ["image", "label"])
    if summary["metric"].duplicated().any():
        raise AcolError(f"{report.folder / 'summary.csv'} names a metric twice")
    return Report(path=report.folder, meta=meta, summary=summary.set_index("metric"),
                  images=per_image["image"].to_numpy(dtype=str),
                  labels=per_image["label"].astype(str).to_numpy(), source=report)


# --------------------------------------------------------------------------- per method


@dataclass
class Resampleable:
    """One report on the common images (n of them), reduced to what a resample needs.

    steps: curve name ('max_box_acc', 'max_box_acc_v2@50', ...) -> sparse (T, n)
    changes of per-image correctness along the threshold grid (acol_eval.comparison.stats).
    fixed: curves whose threshold is the report's own, not re-picked per resample
    (thresholds taken from another report). columns: (n, 5 + 2m) float32 per image:
    0/1 has ground truth, GT-known at the fixed threshold, Top-1 Loc there, top-1
    right, top-1 known (HAS_GT ... TOP1_KNOWN), then for each of the m registered
    per-image metrics the report has (`values`: name -> its column) the value where
    known (else 0) and 1 where known. mcnemar: (n,) GT-known at the report's own
    max_box_acc threshold.
    """

    steps: dict[str, scipy.sparse.csc_matrix]
    fixed: dict[str, int]
    columns: np.ndarray
    has_predictions: bool
    mcnemar: np.ndarray
    pxap: float
    values: dict[str, int] = field(default_factory=dict)
    # best_top1_loc, best_top5_loc: sparse steps of (GT-known and right class) along the
    # grid, read at the threshold max_box_acc picks in the same weighting (as score reads
    # them at best_gt_known_loc's, the same curve's best)
    joined: dict[str, scipy.sparse.csc_matrix] = field(default_factory=dict)


def _threshold_index(report: Report, thresholds: np.ndarray, metric: str) -> int:
    """Index in the grid of the threshold summary.csv gives for `metric`."""
    metric = fixed_name(report, metric)
    value = report.summary["threshold"].get(metric, np.nan)
    if pd.isna(value):
        raise AcolError(f"{report.path / 'summary.csv'} gives no threshold for {metric}; "
                        f"score the run again with this acol-eval")
    return int(np.argmin(np.abs(thresholds - float(value))))


def fixed_name(report: Report, metric: str) -> str:
    """summary.csv's name of `metric`: a report of the top-1 class's maps names its
    GT-known rows agnostic_loc."""
    known = metricdefs.get_metric("gt_known_loc")
    if report.meta.agnostic and metric.startswith(known.name):
        return known.agnostic_name + metric[len(known.name):]
    return metric


def _read_outcomes(report: Report):
    """outcomes.npz, checked against report.json and per_image.csv."""
    from acol_eval.maps.reportfolder import Outcomes

    outcomes = Outcomes.read(report.path)
    n, count = len(report.images), len(outcomes.thresholds)
    shapes_ok = (outcomes.v1.shape == (n, count)
                 and outcomes.v2.shape == (len(report.meta.iou), n, count)
                 and len(outcomes.has_gt) == n and len(outcomes.top1) == n)
    if not shapes_ok or not np.array_equal(np.asarray(outcomes.images, str), report.images):
        raise AcolError(f"{report.path}: outcomes.npz and per_image.csv do not list the same "
                        f"images; score the run again")
    if [int(k) for k in outcomes.iou] != [int(k) for k in report.meta.iou]:
        raise AcolError(f"{report.path}: outcomes.npz and report.json give other IoU lists")
    return outcomes


def prepare(report: Report, common: pd.Index) -> Resampleable:
    """Report -> Resampleable on the common images (reads outcomes.npz, the large part)."""
    from acol_eval.comparison.stats import threshold_steps

    outcomes = _read_outcomes(report)
    thresholds = np.asarray(outcomes.thresholds, np.float64)
    n = len(common)
    columns_of = common.get_indexer(report.images)  # -1: not a common image
    has_gt = np.asarray(outcomes.has_gt, bool)
    def annotated(bits: np.ndarray) -> np.ndarray:  # no copy when every image has boxes
        return bits if has_gt.all() else bits & has_gt[:, None]

    v1 = annotated(outcomes.v1)
    curves = {"max_box_acc": v1}
    curves.update({f"max_box_acc_v2@{int(k)}": annotated(outcomes.v2[j])
                   for j, k in enumerate(outcomes.iou)})
    steps = {name: threshold_steps(bits, columns_of, n) for name, bits in curves.items()}
    joined = {}
    if (np.asarray(outcomes.top1) >= 0).any():
        joined["best_top1_loc"] = (np.asarray(outcomes.top1) == 1)
        if not report.meta.agnostic:  # score reports no top-5 figure of top-1 maps
            joined["best_top5_loc"] = (np.asarray(outcomes.top5) == 1)
    joined = {name: threshold_steps(v1 & right[:, None], columns_of, n)
              for name, right in joined.items()}
    fixed = {}
    if str(report.meta.threshold_source).startswith("from"):
        fixed = {name: _threshold_index(report, thresholds, name) for name in curves}
    at_fixed = _threshold_index(report, thresholds, "gt_known_loc")
    at_best = _threshold_index(report, thresholds, "max_box_acc")
    kept = columns_of >= 0
    where = columns_of[kept]
    top1 = np.asarray(outcomes.top1)[kept]
    measured = _metric_values(report)
    columns = np.zeros((n, 5 + 2 * len(measured)), np.float32)
    columns[where, HAS_GT] = has_gt[kept]
    columns[where, GT_FIXED] = v1[kept, at_fixed]
    columns[where, TOP1_FIXED] = v1[kept, at_fixed] & (top1 == 1)
    columns[where, TOP1_RIGHT] = top1 == 1
    columns[where, TOP1_KNOWN] = top1 >= 0
    values = {}
    for k, (name, each) in enumerate(measured.items()):
        known = np.isfinite(each[kept])
        values[name] = 5 + 2 * k
        columns[where, 5 + 2 * k] = np.where(known, each[kept], 0)
        columns[where, 6 + 2 * k] = known
    mcnemar = np.zeros(n, bool)
    mcnemar[where] = v1[kept, at_best]
    pxap = report.summary["value"].get("pxap", np.nan)
    return Resampleable(steps=steps, fixed=fixed, columns=columns,
                        has_predictions=bool((top1 >= 0).any()), mcnemar=mcnemar,
                        pxap=float(pxap), values=values, joined=joined)


def _metric_values(report: Report) -> dict[str, np.ndarray]:
    """The per-image values of the registered per-image metrics (metricdefs), read from
    per_image.csv's columns named after them, in its row order (NaN: not counted); a
    report scored without such a metric has no column and no value for it."""
    wanted = [m.name for m in metricdefs.per_image_metrics()]
    if not wanted:
        return {}
    table = (report.source or as_report(report.path)).columns("per_image", ["image"],
                                                               optional=wanted)
    return {name: pd.to_numeric(table[name], errors="coerce").to_numpy(np.float64)
            for name in wanted if name in table}


def method_metrics(data: Resampleable, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric (percent) of one method for R weightings of the images (n, R): R
    bootstrap resamples, or ones for the observed values. Each curve's best threshold
    is picked per weighting (a report's own threshold where it was fixed)."""
    from acol_eval.comparison.stats import curve_counts

    # (columns, R); weights.T @ columns is 20x faster in BLAS than columns.T @ weights
    sums = (weights.T @ data.columns).T.astype(np.float64)
    annotated = sums[HAS_GT]
    found: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        if data.has_predictions:
            found["cls_top1"] = sums[TOP1_RIGHT] * 100.0 / sums[TOP1_KNOWN]
            found["top1_loc"] = sums[TOP1_FIXED] * 100.0 / annotated
        found["gt_known_loc"] = sums[GT_FIXED] * 100.0 / annotated
        rounds = np.arange(weights.shape[1])
        picked = {}
        for name, steps in data.steps.items():
            counts = curve_counts(steps, weights)
            picked[name] = (np.full(len(rounds), data.fixed[name]) if name in data.fixed
                            else counts.argmax(axis=0))
            found[name] = counts[picked[name], rounds].astype(np.float64) * 100.0 / annotated
        # best_gt_known_loc is max_box_acc (the same curve's best, reported once, as
        # max_box_acc); the joined curves are read at the threshold it picked
        for name, steps in data.joined.items():
            counts = curve_counts(steps, weights)[picked["max_box_acc"], rounds]
            found[name] = counts.astype(np.float64) * 100.0 / annotated
        found["max_box_acc_v2"] = np.mean(
            [v for k, v in found.items() if k.startswith(metricdefs.PER_IOU)], axis=0)
        for name, at in data.values.items():  # registered per-image metrics: their mean
            found[name] = (sums[at] * metricdefs.get_metric(name).scale / sums[at + 1])
    return found


def group_metrics(members: list[Resampleable], weights: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """A seed group's metrics: the mean over its reports, per weighting (NaN where one
    report lacks the metric, e.g. no predictions)."""
    each = [method_metrics(m, weights) for m in members]
    names = dict.fromkeys(k for found in each for k in found)
    missing = np.full(weights.shape[1], np.nan)
    return {k: np.mean([found.get(k, missing) for found in each], axis=0) for k in names}


# --------------------------------------------------------------------------- bootstrap


def bootstrap(methods: list[list[Resampleable]], images: int, rounds: int, seed: int,
              progress: Progress | None = None) -> list[dict[str, np.ndarray]]:
    """Per method (a list of seed reports), every metric in each of `rounds` paired
    resamples: the same resampled images for every method. Resamples are drawn in
    chunks of at most RESAMPLE_BUDGET weights, so memory does not grow with rounds."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(rounds, RESAMPLE_BUDGET // max(images, 1)))
    samples: list[dict[str, np.ndarray]] = [{} for _ in methods]
    for start in range(0, rounds, chunk):
        size = min(chunk, rounds - start)
        weights = resample_weights(rng, images, size)
        for found, members in zip(samples, methods):
            for name, values in group_metrics(members, weights).items():
                found.setdefault(name, np.full(rounds, np.nan))[start:start + size] = values
        if progress is not None:
            progress.update(size)
    return samples


def observed_values(members: list[Resampleable], images: int
                    ) -> list[dict[str, float]]:
    """Each report's metrics on the common images (pxap: summary.csv's, over the report's
    own images, since outcomes.npz has no pixels)."""
    ones = np.ones((images, 1), np.float32)
    found = []
    for member in members:
        values = {k: float(v[0]) for k, v in method_metrics(member, ones).items()}
        if not np.isnan(member.pxap):
            values["pxap"] = member.pxap
        found.append(values)
    return found
