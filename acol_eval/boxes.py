"""Score maps into boxes: pure functions, numpy arrays in and out, no I/O.

Two protocols (SPEC 7):
- native: a float map at image size, pixels >= min + t * (max - min), 8-connected
  components, boxes x0 y0 x1 y1 with x1/y1 exclusive (:func:`native_boxes`,
  :func:`native_level_boxes` for a whole threshold grid);
- wsoleval: the uint8 224x224 map of clovaai/wsolevaluation, pixels > level, the
  bounding rectangles of every OpenCV contour (outer borders and hole borders),
  x1/y1 inclusive and clipped to 223 (:func:`wsoleval_level_boxes`).
"""

from __future__ import annotations

import cv2
import numpy as np

EMPTY_BOXES = np.zeros((0, 4), dtype=np.int64)


def native_boxes(map_2d: np.ndarray, threshold: float, all_boxes: bool = False) -> np.ndarray:
    """Boxes of the 8-connected components of `map_2d >= min + threshold * (max - min)`.

    Returns (n, 4) int64 x0 y0 x1 y1 in the map's pixels, x1/y1 exclusive: the largest
    component (most pixels, ties to the first in raster order) or, with `all_boxes`,
    every component in raster order of its first pixel. A constant map, or one with
    NaN or inf, gives no box: shape (0, 4).
    """
    values = np.asarray(map_2d, dtype=np.float64)
    if values.ndim != 2 or values.size == 0 or not np.isfinite(values).all():
        return EMPTY_BOXES.copy()
    low, high = values.min(), values.max()
    if high <= low:
        return EMPTY_BOXES.copy()
    mask = (values >= low + threshold * (high - low)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return EMPTY_BOXES.copy()
    # Order components by their first pixel in raster order: OpenCV's label order is
    # not promised to be raster order for its block-based algorithms.
    # The first pixel of a component lies in its top row: the leftmost pixel there.
    ids = np.arange(1, count)
    tops = stats[ids, cv2.CC_STAT_TOP]
    first_col = np.argmax(labels[tops] == ids[:, None], axis=1)
    order = ids[np.lexsort((first_col, tops))]
    if not all_boxes:
        areas = stats[order, cv2.CC_STAT_AREA]
        order = order[[int(np.argmax(areas))]]  # argmax keeps the first of equal areas
    x0 = stats[order, cv2.CC_STAT_LEFT].astype(np.int64)
    y0 = stats[order, cv2.CC_STAT_TOP].astype(np.int64)
    x1 = x0 + stats[order, cv2.CC_STAT_WIDTH]
    y1 = y0 + stats[order, cv2.CC_STAT_HEIGHT]
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)
