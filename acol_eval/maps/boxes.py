"""Score maps into boxes: pure functions, numpy arrays in and out, no I/O.

Two protocols:
- native: a float map at image size, pixels >= min + t * (max - min), 8-connected
  components, boxes x0 y0 x1 y1 with x1/y1 exclusive (:func:`native_boxes`,
  :func:`native_level_boxes` for a whole threshold grid);
- wsoleval: the uint8 224x224 map of clovaai/wsolevaluation, pixels > level, the
  bounding rectangles of every OpenCV contour (outer borders and hole borders),
  x1 = x + w clipped to 223 (:func:`wsoleval_contour_boxes`).
Box formats and conversions: boxformats.
"""

from __future__ import annotations

import cv2
import numpy as np

from acol_eval.data.boxformats import WSOLEVAL_SIZE, BoxFormat, convert, rectangles_to_frame

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
    rects = stats[order][:, [cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                             cv2.CC_STAT_HEIGHT]]
    return convert(rects, BoxFormat.XYWH, BoxFormat.XYXY).astype(np.int64)


# --------------------------------------------------------------------------- map preparation


def upsample_map(map_2d: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic upsampling of a low-resolution map to (height, width), in float64."""
    values = np.asarray(map_2d, dtype=np.float64)
    if values.shape == (height, width):
        return values.copy()
    return cv2.resize(values, (int(width), int(height)), interpolation=cv2.INTER_CUBIC)


def normalise_map(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] the way wsolevaluation does it; a constant or NaN map gives zeros."""
    values = np.array(values, dtype=np.float64)
    if np.isnan(values).any() or values.min() == values.max():
        return np.zeros_like(values)
    values -= values.min()
    values /= values.max()
    return values


def wsoleval_uint8(map_2d: np.ndarray) -> np.ndarray:
    """The 224x224 uint8 map wsoleval thresholds: bicubic, min-max, x255, truncated."""
    scaled = normalise_map(upsample_map(map_2d, WSOLEVAL_SIZE, WSOLEVAL_SIZE)) * 255
    return scaled.astype(np.uint8)


def wsoleval_levels(thresholds: np.ndarray, map_max: int) -> np.ndarray:
    """The integer level each CAM threshold becomes: int(t * max of the uint8 map)."""
    return (np.asarray(thresholds, dtype=np.float64) * float(map_max)).astype(np.int64)


def native_level_image(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per pixel, how many thresholds keep it: pixel in at threshold i iff level > i.

    A pixel is kept at t when value >= min + t * (max - min), as in :func:`native_boxes`.
    A constant or non-finite map keeps nothing.
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all() or values.max() <= values.min():
        return np.zeros(values.shape, dtype=np.int32)
    low, high = values.min(), values.max()
    cuts = low + np.asarray(thresholds, dtype=np.float64) * (high - low)
    return np.searchsorted(cuts, values, side="right").astype(np.int32)


def wsoleval_contour_boxes(u8: np.ndarray, level: int, all_boxes: bool) -> np.ndarray:
    """The reference's boxes at one level (OpenCV contours), WSOLEVAL_224, clipped.

    Used where exactness needs OpenCV's own contour areas (the largest contour of
    MaxBoxAcc V1 when several components exist) and for the per-image report.
    """
    height, width = u8.shape
    binary = (u8 > level).astype(np.uint8) * 255
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    if not all_boxes:
        contours = [max(contours, key=cv2.contourArea)]
    rects = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int64).reshape(-1, 4)
    return rectangles_to_frame(rects, width, height)
