"""Every metric acol-eval reports, each one `Metric` object in one ordered registry.

A metric's name, title, unit, direction and meaning are written here once; `score`'s
summary, `per_image.csv`, `compare`'s leaderboard, pairs and bootstrap, and the two
report.html pages read them from here.

Two kinds of metric:

- built-in ones are read on score's threshold curves (counts summed over images in the
  compiled sweep, and re-picked per resample by `compare`); their per-image outcome
  functions are what `per_image.csv`'s hidden outcome columns and `outcomes.npz` hold.
- any other registered metric (`register_metric`) is a mean of per-image outcomes: its
  `outcome` is called on every scored image with an `ImageView` of the first pass's
  record at the metric's threshold, the value goes into its own column of
  `per_image.csv` (named as the metric), summary.csv gets its mean with a bootstrap
  interval, and `compare` resamples that column (paired with the reference's).
  outcomes.npz is left as it is: per-image values need no new file format.
- an opt-in metric (`opt_in`) is such a metric computed only where `score` is asked for
  it: its value is measured on the map itself in score's first pass (where the map is
  loaded) and reaches its outcome as `ImageView.map_values`; a report scored without
  it has no column, no row and no card for it. compare_order() and headline() leave
  opt-in metrics out unless asked (opt_in=True): the pages list the ones present.
  regionmetrics/ holds the first ones.
A metric whose per-image outcome is a hit or a miss (`binary`) is also tested pairwise
by `compare` with the exact McNemar test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, Flag, auto
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from acol_eval.metrics.reports import Curves


class Needs(Flag):
    """What a metric cannot be computed without."""

    BOXES = auto()       # ground-truth boxes
    MASKS = auto()       # ground-truth masks
    LABEL = auto()       # the annotated class
    PREDICTION = auto()  # the model's top-k classes


class Aggregate(str, Enum):
    """How per-image outcomes become the reported value."""

    MEAN = "mean"                      # mean of per-image outcomes at one threshold
    BEST = "best"                      # best of the threshold curve's means
    MEAN_OF_BESTS = "mean of bests"    # mean over --iou of each IoU's best
    AREA_UNDER_PR = "area under PR"    # pixel precision-recall curve's area


class Threshold(str, Enum):
    """Which CAM threshold the metric is read at."""

    NONE = "none"    # no threshold (classification)
    FIXED = "fixed"  # the fixed one: --threshold, carried, another report's, or 0.2
    BEST = "best"    # the best of its curve on these images (oracle), or another report's
    CURVE = "curve"  # the whole curve (PxAP), one per IoU (MaxBoxAccV2)


@dataclass(frozen=True)
class ImageView:
    """One scored image as an outcome function sees it, at the metric's threshold.

    index: the threshold's index in `thresholds`. largest: (T,) IoU of the largest box
    at every threshold; any_box: (T,) best IoU of any box. gt: (g, 4) ground truth in
    the protocol's frame (x1, y1 exclusive). box(): the largest box at `index` in the
    same frame ((1, 4), or (0, 4) without one). top1 / top5: None without predictions.
    """

    image: str
    label: str
    thresholds: np.ndarray
    index: int
    largest: np.ndarray
    any_box: np.ndarray
    gt: np.ndarray
    top1: bool | None
    top5: bool | None
    box: Callable[[], np.ndarray] = field(repr=False, default=lambda: np.zeros((0, 4)))
    map_values: Mapping[str, float] = field(default_factory=dict)  # opt-in metrics' values

    @property
    def has_gt(self) -> bool:
        return len(self.gt) > 0


Outcome = Callable[[ImageView], float]


@dataclass(frozen=True)
class Metric:
    """One metric. name: its summary.csv and CSV column name; title: what pages call it;
    unit: '%' or what its value is in; higher_is_better: its direction; needs: what it
    cannot go without; aggregate and threshold: how it is read; description: one
    sentence for the compare page's legend and report.html's cards. outcome: the
    per-image outcome (1.0 right, 0.0 wrong, or a value; NaN: not counted); scale
    turns the mean of outcomes into the unit (100 for a percentage of 0/1 outcomes).
    agnostic_name: its name where the top-1 class's map was scored ('' when the metric
    is not reported then). compare_rank / headline_rank: its place in compare's tables
    and report.html's cards (None: not there). builtin: read on score's curves.
    opt_in: computed only where score is asked for it (see the module's docstring).
    binary: its per-image outcome is 1 or 0 (compare's McNemar test applies)."""

    name: str
    title: str
    description: str
    unit: str = "%"
    higher_is_better: bool = True
    needs: Needs = Needs.BOXES
    aggregate: Aggregate = Aggregate.MEAN
    threshold: Threshold = Threshold.FIXED
    outcome: Outcome | None = None
    scale: float = 100.0
    agnostic_name: str | None = None
    compare_rank: float | None = None
    headline_rank: float | None = None
    builtin: bool = False
    opt_in: bool = False
    binary: bool = False

    def name_for(self, agnostic: bool) -> str:
        """Its summary.csv name: the agnostic one where the top-1 class's map was scored
        ('' for a metric that is not reported then)."""
        if agnostic and self.agnostic_name is not None:
            return self.agnostic_name
        return self.name

    def value(self, view: ImageView) -> float:
        """The per-image outcome, NaN where the image lacks what the metric needs."""
        if self.outcome is None:
            return float("nan")
        if Needs.BOXES in self.needs and not view.has_gt:
            return float("nan")
        if Needs.PREDICTION in self.needs and view.top1 is None:
            return float("nan")
        return float(self.outcome(view))


# --------------------------------------------------------------------------- outcomes


def localised(view: ImageView) -> float:
    """The largest box reaches IoU 0.5 (GT-known Loc, MaxBoxAcc)."""
    return float(view.has_gt and view.largest[view.index] >= 0.5)


def any_box_reaches(iou_percent: int) -> Outcome:
    """Any box reaches IoU iou_percent / 100 (one IoU of MaxBoxAccV2)."""
    return lambda view: float(view.has_gt and view.any_box[view.index] >= iou_percent / 100)


def _top1_right(view: ImageView) -> float:
    return float(bool(view.top1))


def _top5_right(view: ImageView) -> float:
    return float(bool(view.top5))


def _top1_localised(view: ImageView) -> float:
    return localised(view) * _top1_right(view)


def _top5_localised(view: ImageView) -> float:
    return localised(view) * _top5_right(view)


# --------------------------------------------------------------------------- registry

BOXED_CLASS = Needs.BOXES | Needs.LABEL | Needs.PREDICTION
_builtin = partial(Metric, builtin=True)

BUILTIN = (
    _builtin("cls_top1", "Top-1 cls", "top-1 classification accuracy, %",
           needs=Needs.LABEL | Needs.PREDICTION, threshold=Threshold.NONE,
           outcome=_top1_right, compare_rank=0, headline_rank=8),
    _builtin("cls_top5", "Top-5 cls", "top-5 classification accuracy, %",
           needs=Needs.LABEL | Needs.PREDICTION, threshold=Threshold.NONE,
           outcome=_top5_right),
    _builtin("gt_known_loc", "GT-known Loc",
           "GT-known Loc, %: the largest box of the true class's map reaches IoU 0.5, at "
           "the report's fixed (or calibrated, or taken) CAM threshold",
           outcome=localised, agnostic_name="agnostic_loc", compare_rank=2, headline_rank=4),
    _builtin("top1_loc", "Top-1 Loc",
           "Top-1 Loc, %: right top-1 class and a box of IoU >= 0.5, at the report's fixed "
           "(or calibrated, or taken) CAM threshold",
           needs=BOXED_CLASS, outcome=_top1_localised, compare_rank=1, headline_rank=2),
    _builtin("top5_loc", "Top-5 Loc",
           "Top-5 Loc, %: the true class among the top 5 and a box of IoU >= 0.5, at the "
           "fixed CAM threshold", needs=BOXED_CLASS, outcome=_top5_localised,
           agnostic_name=""),
    _builtin("best_gt_known_loc", "GT-known Loc at the oracle threshold",
           "GT-known Loc, %, at the CAM threshold best on these images",
           aggregate=Aggregate.BEST, threshold=Threshold.BEST, outcome=localised,
           agnostic_name="best_agnostic_loc", headline_rank=5),
    _builtin("best_top1_loc", "Top-1 Loc at the oracle threshold",
           "Top-1 Loc, %, at best_gt_known_loc's CAM threshold", needs=BOXED_CLASS,
           aggregate=Aggregate.BEST, threshold=Threshold.BEST, outcome=_top1_localised,
           headline_rank=3, compare_rank=3.2),
    _builtin("best_top5_loc", "Top-5 Loc at the oracle threshold",
           "Top-5 Loc, %, at best_gt_known_loc's CAM threshold", needs=BOXED_CLASS,
           aggregate=Aggregate.BEST, threshold=Threshold.BEST, outcome=_top5_localised,
           agnostic_name="", compare_rank=3.3),
    _builtin("max_box_acc", "MaxBoxAcc",
           "MaxBoxAcc, %: GT-known Loc at the CAM threshold best on these images "
           "(oracle), unless the report took its threshold from another report",
           aggregate=Aggregate.BEST, threshold=Threshold.BEST, outcome=localised,
           compare_rank=3, headline_rank=1),
    _builtin("max_box_acc_v2", "MaxBoxAccV2",
           "MaxBoxAccV2, %: the mean of max_box_acc_v2@k over the IoU list",
           aggregate=Aggregate.MEAN_OF_BESTS, threshold=Threshold.CURVE,
           compare_rank=4, headline_rank=0),
    _builtin("pxap", "PxAP",
           "PxAP, %: area under the pixel precision-recall curve, from each report's "
           "summary.csv (not resampled: outcomes.npz holds no pixels)",
           needs=Needs.MASKS, aggregate=Aggregate.AREA_UNDER_PR, threshold=Threshold.CURVE,
           compare_rank=6, headline_rank=9),
)

PER_IOU = "max_box_acc_v2@"  # one row per --iou IoU k: max_box_acc_v2@k
PER_IOU_RANK = 5  # where compare puts them: after max_box_acc_v2, before pxap
PER_IOU_DESCRIPTION = ("any box of the map reaches IoU k (the number after @, in %), at "
                       "the CAM threshold best for that IoU (oracle), %")

_REGISTRY: dict[str, Metric] = {m.name: m for m in BUILTIN}

# per_image.csv's own columns, before one column per per-image metric: a metric may not
# take one of these names, or its column would overwrite the image's box or label
PER_IMAGE_FIXED_COLUMNS = (
    "image", "label", "map", "frame", "threshold", "threshold_source", "iou",
    "x0", "y0", "x1", "y1", "orig_x0", "orig_y0", "orig_x1", "orig_y1",
    "correct", "top1_correct", "top5_correct", "error", "has_gt")


def register_metric(metric: Metric) -> Metric:
    """Add a metric computed from per-image outcomes (see the module's docstring). Its
    threshold is FIXED or NONE: a best-threshold metric would need a curve per image,
    which only the built-in ones have."""
    if metric.name in every_name():
        raise ValueError(f"a metric named {metric.name!r} is registered already")
    if metric.outcome is None:
        raise ValueError(f"metric {metric.name!r} needs an outcome function")
    if metric.threshold not in (Threshold.FIXED, Threshold.NONE):
        raise ValueError(f"metric {metric.name!r}: only FIXED or NONE thresholds are "
                         f"computed per image")
    if metric.aggregate is not Aggregate.MEAN or metric.builtin:
        raise ValueError(f"metric {metric.name!r}: a registered metric is a MEAN of "
                         f"per-image outcomes")
    if not metric.name.isidentifier() or metric.name.startswith("issue"):
        raise ValueError(f"metric name {metric.name!r}: use letters, digits and _")
    if metric.name in PER_IMAGE_FIXED_COLUMNS:
        raise ValueError(f"metric name {metric.name!r} is a column of per_image.csv "
                         f"already; choose another")
    _REGISTRY[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Remove a registered (not built-in) metric."""
    metric = _REGISTRY.get(name)
    if metric is None or metric.builtin:
        raise ValueError(f"{name!r} is not a registered metric that can be removed")
    del _REGISTRY[name]


def metrics() -> tuple[Metric, ...]:
    """Every metric, in summary.csv's row order."""
    return tuple(_REGISTRY.values())


def get_metric(name: str) -> Metric:
    """A metric by any of its names (gt_known_loc or agnostic_loc); KeyError otherwise."""
    for metric in _REGISTRY.values():
        if name in (metric.name, metric.agnostic_name):
            return metric
    raise KeyError(name)


def every_name() -> set[str]:
    return {n for m in _REGISTRY.values() for n in (m.name, m.agnostic_name) if n}


def per_image_metrics() -> tuple[Metric, ...]:
    """The registered metrics that are means of per-image outcomes in their own
    per_image.csv column (not the built-in ones)."""
    return tuple(m for m in _REGISTRY.values() if not m.builtin)


def binary_names() -> list[str]:
    """The registered per-image metrics whose outcome is a hit or a miss (McNemar)."""
    return [m.name for m in per_image_metrics() if m.binary]


def fixed_names() -> set[str]:
    """Every name of a metric read at the fixed threshold (gt_known_loc, agnostic_loc, ...)."""
    return {n for m in _REGISTRY.values() if m.threshold is Threshold.FIXED
            for n in (m.name, m.agnostic_name) if n}


def higher_is_better(name: str) -> bool:
    """The direction of a metric by any of its names (per-IoU rows and unknown: higher)."""
    try:
        return get_metric(name).higher_is_better
    except KeyError:
        return True


def list_metrics() -> list[str]:
    """The names of every metric, in summary.csv's order."""
    return [m.name for m in _REGISTRY.values()]


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class ThresholdChoice:
    """Where each metric is read on the grid (indices into thresholds) and why: source is
    'oracle' (best on these images), 'fixed' (--threshold or the 0.2 default),
    'from:PATH' (another report's threshold) or, for the fixed rows, 'run:HOW' (the
    threshold the scored run boxed with: run:checkpoint-calibrated, run:cam-threshold,
    run:threshold-from)."""

    fixed: int
    fixed_source: str
    best_gt: int
    best_source: str
    v2: dict[int, int]
    v2_source: dict[int, str]


def choose_thresholds(curves: Curves, fixed: float | None, other: dict[str, float],
                      other_name: str = "", fixed_source: str = "fixed", *,
                      default: float) -> ThresholdChoice:
    """Pure: the grid index of each metric. A metric named in `other` (another report's
    thresholds) takes the grid point nearest to it, the others the best of their curve;
    the fixed threshold is `fixed` (from `fixed_source`), else other's gt_known_loc,
    else `default` (score's). The largest-box figure's thresholds are taken from the other report
    under either of its names (gt_known_loc, agnostic_loc): both are read on the same
    kind of curve."""
    thresholds = curves.thresholds
    for metric in (_REGISTRY["gt_known_loc"], _REGISTRY["best_gt_known_loc"]):
        if metric.agnostic_name in other:
            other = {metric.name: other[metric.agnostic_name], **other}

    def nearest(value: float) -> int:
        return int(np.argmin(np.abs(thresholds - value)))

    def pick(metric: str, curve: np.ndarray) -> tuple[int, str]:
        if metric in other:
            return nearest(other[metric]), f"from:{other_name}"
        return int(np.argmax(curve)), "oracle"

    best_gt, best_source = pick("best_gt_known_loc", curves.gt_known)
    if fixed is not None:
        fixed_index = nearest(fixed)
    elif "gt_known_loc" in other:
        fixed_index, fixed_source = nearest(other["gt_known_loc"]), f"from:{other_name}"
    else:
        fixed_index, fixed_source = nearest(default), "fixed"
    v2 = {k: pick(f"max_box_acc_v2@{k}", curves.v2[j]) for j, k in enumerate(curves.iou)}
    return ThresholdChoice(fixed_index, fixed_source, best_gt, best_source,
                           {k: v[0] for k, v in v2.items()},
                           {k: v[1] for k, v in v2.items()})


# --------------------------------------------------------------------------- orders


def _ranked(rank: Callable[[Metric], float | None], extra: float,
            opt_in: bool = False) -> list[Metric]:
    """Metrics with a rank in that order; registered ones (no rank) after the built-in,
    in registration order; opt-in ones only when asked."""
    ranked = [(rank(m) if m.builtin else extra, k, m) for k, m in enumerate(_REGISTRY.values())
              if opt_in or not m.opt_in]
    return [m for r, _, m in sorted((x for x in ranked if x[0] is not None),
                                    key=lambda x: (x[0], x[1]))]


def compare_order(iou, opt_in: bool = False) -> list[str]:
    """compare's metric columns, in order: the IoUs of MaxBoxAccV2 after its mean; the
    opt-in metrics last when asked (opt_in)."""
    names, per_iou = [], [f"{PER_IOU}{int(k)}" for k in iou]
    for metric in _ranked(lambda m: m.compare_rank, 100.0, opt_in):
        if metric.compare_rank is not None and metric.compare_rank > PER_IOU_RANK \
                and per_iou:
            names += per_iou
            per_iou = []
        names.append(metric.name)
    return names + per_iou


def headline(opt_in: bool = False) -> list[str]:
    """report.html's card order: each headline metric, with its agnostic name beside; the
    opt-in metrics last when asked (opt_in)."""
    names = []
    for metric in _ranked(lambda m: m.headline_rank, 100.0, opt_in):
        names += [n for n in (metric.name, metric.agnostic_name) if n]
    return names


def titles() -> dict[str, str]:
    """Every metric name (agnostic ones too) -> its title."""
    found = {}
    for metric in _REGISTRY.values():
        found[metric.name] = metric.title
        if metric.agnostic_name:
            found[metric.agnostic_name] = metric.title.replace(
                "GT-known Loc", "Class-agnostic Loc (top-1 map)")
    return found


def descriptions() -> dict[str, str]:
    """Every compared metric name -> its sentence ('max_box_acc_v2@': the per-IoU rows)."""
    found = {m.name: m.description for m in _REGISTRY.values()}
    found["agnostic_loc"] = "class-agnostic Loc, %: as GT-known Loc on the top-1 class's map"
    found[PER_IOU] = PER_IOU_DESCRIPTION
    return found
