"""WSOL metrics: pure functions over numpy arrays, no I/O.

Per image, a protocol turns a map and the ground-truth boxes into the best IoU at
every CAM threshold (:func:`wsoleval_level_results`, :func:`native_image_ious`; the
protocols/ objects call them);
images are summed into correct-counts per threshold; the max over thresholds is
MaxBoxAcc. Boxes are int arrays (n, 4) x0 y0 x1 y1.
"""

from __future__ import annotations

import cv2
import numpy as np

from acol_eval.data.boxformats import BoxFormat, convert, rectangles_to_frame
from acol_eval.maps.boxes import native_level_image, wsoleval_contour_boxes
from acol_eval.metrics.sweep import best_box_iou, sweep_components, wsoleval_sweep

ERROR_TYPES = ("correct", "wrong_class", "multiple_instances", "part", "too_large", "mislocated")


# --------------------------------------------------------------------------- IoU


def _box_inter_union(boxes, gt, extra: int, dtype) -> tuple[np.ndarray, ...]:
    """Pairwise (n, g) intersection, union and both areas of boxes x0 y0 x1 y1; extra = 1
    counts pixels inclusively (width x1 - x0 + 1, wsoleval), 0 measures area (exclusive
    x1/y1, native). The one place where box overlap is computed outside the kernels."""
    a = np.asarray(boxes, dtype=dtype).reshape(-1, 1, 4)
    b = np.asarray(gt, dtype=dtype).reshape(1, -1, 4)
    inter_w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + extra
    inter_h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + extra
    inter = np.maximum(0, inter_w) * np.maximum(0, inter_h)
    area_a = (a[..., 2] - a[..., 0] + extra) * (a[..., 3] - a[..., 1] + extra)
    area_b = (b[..., 2] - b[..., 0] + extra) * (b[..., 3] - b[..., 1] + extra)
    return inter, area_a + area_b - inter, area_a, area_b


def _iou(boxes, gt, extra: int, dtype) -> np.ndarray:
    inter, union, _, _ = _box_inter_union(boxes, gt, extra, dtype)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def iou_inclusive(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """wsoleval IoU (n, g): pixels counted inclusively (width x1 - x0 + 1); union <= 0 gives 0."""
    return _iou(boxes, gt, 1, np.int64)


def iou_exclusive(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Native IoU (n, g): x1/y1 exclusive, intersection area / union area; empty union gives 0."""
    return _iou(boxes, gt, 0, np.float64)


def scale_boxes_wsoleval(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Ground-truth boxes (original pixels, XYXY) into the 224x224 frame with int()
    truncation, as wsolevaluation does (boxformats.BoxFormat.WSOLEVAL_224)."""
    return convert(boxes, BoxFormat.XYXY, BoxFormat.WSOLEVAL_224, (width, height))


# --------------------------------------------------------------------------- per image


def wsoleval_level_results(u8: np.ndarray, gt224: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per uint8 level L in [0, 256) (pixels > L kept), under the wsoleval protocol:
    best IoU over all contour boxes, IoU of the largest contour's box (cv2.contourArea),
    and that box (256, 4), x1/y1 inclusive; no contour gives the box (0, 0, 0, 0).

    u8: the 224x224 uint8 map (:func:`boxes.wsoleval_uint8`); gt224: its ground-truth
    boxes (g, 4) in that frame (none: IoUs 0). Only levels where the sweep cannot tell
    which contour OpenCV finds largest (close areas) ask OpenCV.
    """
    gt = np.asarray(gt224, dtype=np.int64).reshape(-1, 4)
    best, best_contour, box, contour_sure, n_components, _, candidates = wsoleval_sweep(u8, gt)
    no_box = best_box_iou(0, 0, 0, 0, gt, True)
    all_boxes = np.where(n_components > 0, np.maximum(best, 0.0), no_box)
    largest = np.where(n_components > 0, np.maximum(best_contour, 0.0), no_box)
    for level in np.flatnonzero((n_components > 1) & ~contour_sure):
        found = _largest_contour_box_in(u8, int(level), candidates[level])
        if found is None:
            found = wsoleval_contour_boxes(u8, int(level), all_boxes=False)[0]
        box[level] = found
        largest[level] = best_box_iou(*(int(v) for v in found), gt, True)
    return all_boxes, largest, box


def _largest_contour_box_in(u8: np.ndarray, level: int, crop: np.ndarray) -> np.ndarray | None:
    """The box of the contour of largest cv2.contourArea at `level`, found in the crop of
    the components that may have it (pixel box `crop`, grown by one pixel); None where
    two contours tie for the largest area (then OpenCV's contour order decides: ask it
    on the whole map). Components cut by the crop are not candidates: a cut piece has
    at most the area of its whole component, which is below the winner's."""
    height, width = u8.shape
    x0, y0 = max(int(crop[0]) - 1, 0), max(int(crop[1]) - 1, 0)
    x1, y1 = min(int(crop[2]) + 1, width - 1), min(int(crop[3]) + 1, height - 1)
    binary = (u8[y0:y1 + 1, x0:x1 + 1] > level).astype(np.uint8)
    contours = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if not len(contours):
        return None
    areas = [cv2.contourArea(c) for c in contours]
    top = max(areas)
    if areas.count(top) > 1:
        return None
    x, y, w, h = cv2.boundingRect(contours[areas.index(top)])
    return rectangles_to_frame([[x + x0, y + y0, w, h]], width, height)[0]


def native_image_ious(values: np.ndarray, gt: np.ndarray, thresholds: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU at every CAM threshold under the native protocol.

    values: the map at image size (float); gt: boxes (g, 4) in image pixels, exclusive.
    Returns (all components, largest component) IoU arrays of len(thresholds);
    a threshold with no component gives IoU 0.
    """
    gt = np.asarray(gt, dtype=np.int64).reshape(-1, 4)
    if len(gt) == 0:
        zeros = np.zeros(len(thresholds))
        return zeros, zeros.copy()
    levels = native_level_image(values, thresholds)
    best_all, best_largest, _, _, _ = sweep_components(levels, len(thresholds), gt, False)
    return np.maximum(best_all, 0.0), np.maximum(best_largest, 0.0)


# --------------------------------------------------------------------------- summaries


def pxap_from_histograms(true_hist: np.ndarray, false_hist: np.ndarray) -> float:
    """PxAP (percent): area under the pixel precision-recall curve, the wsolevaluation way.

    true_hist / false_hist: counts of foreground / background pixel scores in the bins
    [t0, t1), ..., [t_last, 1), [1, 2), [2, 3); a pixel is predicted positive at t_i when
    its score >= t_i. Ignored pixels are simply not in either histogram.
    """
    tp = np.asarray(true_hist, dtype=np.float64)[::-1].cumsum()
    fp = np.asarray(false_hist, dtype=np.float64)[::-1].cumsum()
    positives = tp[-1] if len(tp) else 0.0
    if positives <= 0 or (tp + fp).max() <= 0:
        return float("nan")
    nonzero = (tp + fp) != 0
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=nonzero)
    recall = tp / positives
    return float((precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100)


def bootstrap_interval(correct: np.ndarray, rounds: int, seed: int = 0
                       ) -> tuple[float, float]:
    """95% percentile interval (percent) of the accuracy of per-image 0/1 outcomes."""
    values = np.asarray(correct, dtype=np.float64)
    if rounds <= 0 or values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(rounds)
    for start in range(0, rounds, 256):  # batches keep memory at 256 x n
        stop = min(rounds, start + 256)
        picks = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[picks].mean(axis=1)
    low, high = np.percentile(means * 100, [2.5, 97.5])
    return float(low), float(high)


def error_type(box: np.ndarray | None, gt: np.ndarray, best_iou: float, top1: bool | None,
               inclusive: bool) -> str:
    """Why a localisation is wrong (or 'correct'), after the usual WSOL error analysis.

    correct: IoU >= 0.5 and the top-1 class right (or no predictions); wrong_class: the box
    is right, the class is not; multiple_instances: the box covers at least half of each
    of two or more ground-truth boxes; part: at least 80% of the box lies in one
    ground-truth box (the box is a part of the object); too_large: at least 80% of the
    best ground-truth box lies in the box; mislocated: anything else.
    """
    if best_iou >= 0.5:
        return "wrong_class" if top1 is False else "correct"
    if box is None or not len(gt):
        return "mislocated"
    inter, _, box_area, gt_area = _box_inter_union(box, gt, 1 if inclusive else 0, np.float64)
    inter, box_area, gt_area = inter[0], max(float(box_area[0, 0]), 1e-9), np.maximum(
        gt_area[0], 1e-9)
    if (inter / gt_area >= 0.5).sum() >= 2:
        return "multiple_instances"
    if (inter / box_area).max() >= 0.8:
        return "part"
    if (inter / gt_area).max() >= 0.8:
        return "too_large"
    return "mislocated"
