"""The localisation metrics of the explanation literature, as Quantus 0.6.0 collects them,
each one `RegionMetric` registered in the metric registry (metricdefs) where it is
defined below. They are opt-in: `score --region-metrics` names them, and score's first
pass measures each map (in the protocol's frame, as the box metrics see it) against the
image's ground-truth region (its mask, else the union of its boxes).

A value is NaN (not counted in the mean) where the region is empty, where the map is
constant or not finite in the frame (it points nowhere: wsoleval's frame turns a NaN
map into zeros), and for AUC where the region is the whole image (no pixel outside).
docs/reference.md gives every definition, its source and the choices made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from acol_eval.metrics.metricdefs import ImageView, Metric, Needs, Threshold, register_metric
from acol_eval.metrics.regionmetrics.stats import RegionStats, region_stats

QUANTUS_TOP_K = 1000  # Quantus's TopKIntersection default k
QUANTUS_EPSILON = 1e-9  # Quantus's AttributionLocalisation adds it to the total


@dataclass(frozen=True)
class RegionOptions:
    """Which region metrics a score computes (names, in the registry's order) and their
    parameters: pointing_tolerance, in frame pixels, around the region within which the
    map's maximum still hits (Quantus: 0; Zhang et al. use 15); top_k, Top-K
    Intersection's k (Quantus: 1000)."""

    names: tuple[str, ...] = ()
    pointing_tolerance: float = 0.0
    top_k: int = QUANTUS_TOP_K

    def record(self) -> dict[str, object]:
        """What report.json keeps: the metrics and every parameter."""
        return {"metrics": list(self.names), "pointing_tolerance": self.pointing_tolerance,
                "top_k": self.top_k}


@dataclass(frozen=True)
class MapRegion:
    """One map in the protocol's frame, its ground-truth region (bool, same shape) and
    the histograms every metric reads (stats.py)."""

    frame: np.ndarray
    region: np.ndarray
    stats: RegionStats


Compute = Callable[[MapRegion, RegionOptions], float]


@dataclass(frozen=True)
class RegionMetric:
    """One region metric: its registry entry and its value on one map and region (the
    map finite and not constant, the region not empty: measure() checks)."""

    metric: Metric
    compute: Compute

    @property
    def name(self) -> str:
        return self.metric.name


REGION_METRICS: dict[str, RegionMetric] = {}  # name -> metric, registration order


def _stored(name: str) -> Callable[[ImageView], float]:
    """The outcome the registry calls: the value the first pass measured on the map."""
    return lambda view: view.map_values.get(name, float("nan"))


def region_metric(name: str, title: str, description: str, compute: Compute, *,
                  binary: bool = False) -> RegionMetric:
    """Register one region metric (a mean of per-image values, scaled to % when binary or
    a share; every metric here reads higher as better)."""
    metric = register_metric(Metric(
        name, title, description, unit="%", needs=Needs.MASKS,  # a mask, or boxes where none
        threshold=Threshold.NONE, outcome=_stored(name), scale=100.0, opt_in=True,
        binary=binary))
    found = REGION_METRICS[name] = RegionMetric(metric, compute)
    return found


def region_metrics() -> tuple[RegionMetric, ...]:
    """Every region metric, in the registry's order."""
    return tuple(REGION_METRICS.values())


def region_names() -> list[str]:
    return list(REGION_METRICS)


# --------------------------------------------------------------------------- the metrics


def _pointing(data: MapRegion, options: RegionOptions) -> float:
    """A hit when any pixel holding the maximum lies in the region (or within
    `pointing_tolerance` frame pixels of it, Euclidean)."""
    if data.stats.top_level_inside:
        return 1.0
    if options.pointing_tolerance <= 0:
        return 0.0
    outside = np.ascontiguousarray(~data.region, dtype=np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    peaks = data.frame == data.stats.levels[-1]
    return float(distance[peaks].min() <= options.pointing_tolerance)


def _attribution(data: MapRegion, options: RegionOptions) -> float:
    """Share of the absolute map (scaled to a maximum of 1) in the region, over its total
    plus Quantus's 1e-9."""
    magnitude = np.abs(data.stats.levels)
    inside, total = data.stats.mass(magnitude / magnitude.max())
    return inside / (total + QUANTUS_EPSILON)


def _top_k(data: MapRegion, options: RegionOptions) -> float:
    """Share of the k highest-valued pixels in the region (k at most the map's size)."""
    k = min(int(options.top_k), data.stats.pixels)
    return data.stats.top_share(k) / k


def _rank(data: MapRegion, options: RegionOptions) -> float:
    """Share of the region among its size's count of highest-valued pixels."""
    return data.stats.top_share(data.stats.region) / data.stats.region


def _mass(data: MapRegion, options: RegionOptions) -> float:
    """The map's sum in the region over its sum (NaN where the sum is 0)."""
    inside, total = data.stats.mass(data.stats.levels)
    return inside / total if total != 0 else float("nan")


def _auc(data: MapRegion, options: RegionOptions) -> float:
    if data.stats.region == data.stats.pixels:
        return float("nan")
    return data.stats.auc()


def _energy(data: MapRegion, options: RegionOptions) -> float:
    """The min-max normalised map's sum in the region over its sum."""
    levels = data.stats.levels
    inside, total = data.stats.mass((levels - levels[0]) / (levels[-1] - levels[0]))
    return inside / total


POINTING_GAME = region_metric(
    "pointing_game", "Pointing Game",
    "Pointing Game, %: the map's maximum lies in the ground-truth region (Zhang et al. "
    "2018; any of tied maxima hits)", _pointing, binary=True)
ATTRIBUTION_LOCALISATION = region_metric(
    "attribution_localisation", "Attribution Localisation",
    "Attribution Localisation, %: the share of the map's absolute values inside the "
    "ground-truth region (Kohlbrenner et al. 2020)", _attribution)
TOP_K_INTERSECTION = region_metric(
    "top_k_intersection", "Top-K Intersection",
    "Top-K Intersection, %: the share of the map's k highest pixels inside the "
    "ground-truth region (Theiner et al. 2021)", _top_k)
RELEVANCE_RANK_ACCURACY = region_metric(
    "relevance_rank_accuracy", "Relevance Rank Accuracy",
    "Relevance Rank Accuracy, %: the share of the map's highest pixels, as many as the "
    "region has, inside the ground-truth region (Arras et al. 2021)", _rank)
RELEVANCE_MASS_ACCURACY = region_metric(
    "relevance_mass_accuracy", "Relevance Mass Accuracy",
    "Relevance Mass Accuracy, %: the map's sum inside the ground-truth region over its "
    "total sum (Arras et al. 2021)", _mass)
AUC = region_metric(
    "region_auc", "AUC (region)",
    "AUC, %: area under the ROC curve of the map's values telling the ground-truth "
    "region's pixels from the others (Fawcett 2006)", _auc)
ENERGY_POINTING_GAME = region_metric(
    "energy_pointing_game", "Energy-based Pointing Game",
    "Energy-based Pointing Game, %: the min-max normalised map's energy inside the "
    "ground-truth region over its total (Wang et al. 2020, Score-CAM)", _energy)


# --------------------------------------------------------------------------- measuring


def measure(frame: np.ndarray, region: np.ndarray, options: RegionOptions) -> np.ndarray:
    """The chosen metrics (options.names) of one map in the protocol's frame against its
    ground-truth region (bool, same shape); NaN where a metric is undefined."""
    values = np.full(len(options.names), np.nan)
    if not region.any() or frame.shape != region.shape:
        return values
    if frame.dtype != np.uint8:
        if not np.isfinite(frame).all():
            return values
    stats = region_stats(frame, region)
    if len(stats.levels) < 2:  # constant: the map points nowhere
        return values
    data = MapRegion(frame, region, stats)
    with np.errstate(divide="ignore", invalid="ignore"):
        for n, name in enumerate(options.names):
            values[n] = REGION_METRICS[name].compute(data, options)
    return values
