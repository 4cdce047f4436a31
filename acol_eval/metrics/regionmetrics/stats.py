"""What the seven region metrics read of one map and its ground-truth region, in one pass.

Every metric of this package depends on the map only through the order of its values
(the pointing game, Top-K Intersection, Relevance Rank Accuracy, AUC) or through sums
over the region and the whole map (the mass metrics). Both come from two histograms
over the map's distinct values: how many pixels, and how many region pixels, hold
each value. score's wsoleval frame is a 224x224 uint8 map, so its values are the
levels 0..255 and the histograms are two `bincount`s (O(n), no sort); a float map
(the native frame) takes one `np.unique` (a sort) to find its distinct values.

Ties are the rule on a uint8 map, so a metric that cuts the ranking at a count (Top-K
at k, rank accuracy at the region's size) takes the pixels tied at the cut in the
proportion the region holds of them: the mean over every order of the tied pixels.
Quantus sorts with numpy's unstable argsort, which breaks such ties in an order that
depends on the sort's implementation; where no tie straddles the cut the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acol_eval.metrics.regionmetrics.kernels import uint8_histograms


@dataclass(frozen=True)
class RegionStats:
    """One map against one region. levels: (L,) the map's distinct values, ascending;
    every: (L,) pixels at each level; inside: (L,) region pixels at each level;
    pixels: the map's size; region: the region's size; shape: the map's (h, w)."""

    levels: np.ndarray
    every: np.ndarray
    inside: np.ndarray
    pixels: int
    region: int
    shape: tuple[int, int]

    # ---------------------------------------------------------------- ranks
    def top_share(self, count: int) -> float:
        """Region pixels among the `count` highest-valued pixels, the tied ones at the
        cut taken in the proportion the region holds of them (their mean over orders)."""
        above = np.cumsum(self.every[::-1])  # pixels at or above each level, top down
        inside_above = np.cumsum(self.inside[::-1])
        cut = int(np.searchsorted(above, count))  # the level (top down) holding the cut
        before = int(above[cut - 1]) if cut else 0
        inside_before = int(inside_above[cut - 1]) if cut else 0
        tied, tied_inside = int(self.every[::-1][cut]), int(self.inside[::-1][cut])
        return inside_before + (count - before) * tied_inside / tied

    def auc(self) -> float:
        """Area under the ROC curve of the map's values ranking region pixels above the
        others: the chance a region pixel outranks an outside one, ties counting half
        (the trapezoids of the ROC curve through every distinct value)."""
        outside = self.every - self.inside
        below = np.cumsum(outside) - outside  # outside pixels strictly below each level
        wins = float(np.dot(self.inside, below + 0.5 * outside))
        return wins / (float(self.region) * float(self.pixels - self.region))

    # ---------------------------------------------------------------- masses
    def mass(self, values: np.ndarray) -> tuple[float, float]:
        """(sum inside the region, sum over the map) of a function of the levels."""
        return float(np.dot(self.inside, values)), float(np.dot(self.every, values))

    @property
    def top_level_inside(self) -> bool:
        """Some pixel holding the map's maximum lies in the region."""
        return bool(self.inside[-1] > 0)


def region_stats(frame: np.ndarray, region: np.ndarray) -> RegionStats:
    """The histograms of a 2-D map (uint8 levels, or floats) over its region (bool, same
    shape). The map must be finite (see measure())."""
    flat = frame.reshape(-1)
    chosen = region.reshape(-1)
    if flat.dtype == np.uint8:
        every, inside = uint8_histograms(flat, chosen)
        used = np.flatnonzero(every)
        levels, every, inside = used.astype(np.float64), every[used], inside[used]
    else:
        levels, index = np.unique(flat, return_inverse=True)
        every = np.bincount(index, minlength=len(levels))
        inside = np.bincount(index[chosen], minlength=len(levels))
        levels = levels.astype(np.float64)
    return RegionStats(levels, every, inside, int(flat.size), int(inside.sum()),
                       tuple(frame.shape))
