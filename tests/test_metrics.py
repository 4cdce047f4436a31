"""Metrics by hand: IoU in both protocols, MaxBoxAcc/V2 on a three-image example, PxAP."""

from __future__ import annotations

import numpy as np
import pytest

from acol_eval.metrics.metrics import (
    error_type,
    iou_exclusive,
    iou_inclusive,
    native_image_ious,
    pxap_from_histograms,
    scale_boxes_wsoleval,
)


def test_iou_both_protocols_by_hand():
    # inclusive: boxes 0..9 (10x10=100 px) and 5..14 (100 px), overlap 5x5 = 25 -> 25/175
    assert iou_inclusive([[0, 0, 9, 9]], [[5, 5, 14, 14]])[0, 0] == pytest.approx(25 / 175)
    # exclusive: 10x10 and 10x10 overlapping 5x5 -> 25/175 as well, one pixel shifted coords
    assert iou_exclusive([[0, 0, 10, 10]], [[5, 5, 15, 15]])[0, 0] == pytest.approx(25 / 175)
    # the reference's no-box (0,0,0,0) counts one pixel
    assert iou_inclusive([[0, 0, 0, 0]], [[0, 0, 1, 1]])[0, 0] == pytest.approx(1 / 4)
    assert iou_exclusive([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 0.0


def test_gt_boxes_scale_to_224_with_truncation():
    assert scale_boxes_wsoleval([[60, 27, 385, 331]], 500, 335).tolist() == [
        [26, 18, 172, 221]]


def test_max_box_acc_and_v2_on_three_images_by_hand():
    """Three 10x10 maps, thresholds 0.25 and 0.75, native protocol.

    Image 1: one blob 0..4 (value 1) -> box [0,0,5,5], GT [0,0,5,5]: IoU 1 at both.
    Image 2: blob A value 1 at 0..1 (2x2), blob B value 0.5 at 5..9 (5x5); GT = B's box.
      t=0.25: both blobs; largest is B (25 px) -> IoU 1; all boxes -> 1.
      t=0.75: only A -> IoU 0 for both.
    Image 3: value 1 on [0,0,4,4], 0.5 ring [4..7]; GT [0,0,8,8].
      t=0.25: box [0,0,8,8] IoU 1. t=0.75: box [0,0,4,4] IoU 16/64 = 0.25.
    MaxBoxAcc@50 = max(3/3, 1/3) = 100 at t=0.25; at IoU 20 t=0.75 gives 2/3.
    """
    t = np.array([0.25, 0.75])
    one = np.zeros((10, 10))
    one[0:5, 0:5] = 1
    two = np.zeros((10, 10))
    two[0:2, 0:2] = 1
    two[5:10, 5:10] = 0.5
    three = np.zeros((10, 10))
    three[0:8, 0:8] = 0.5
    three[0:4, 0:4] = 1
    results = [native_image_ious(m, np.array(g), t) for m, g in (
        (one, [[0, 0, 5, 5]]), (two, [[5, 5, 10, 10]]), (three, [[0, 0, 8, 8]]))]
    all_boxes = np.array([r[0] for r in results])
    largest = np.array([r[1] for r in results])
    assert all_boxes.tolist() == [[1, 1], [1, 0], [1, 0.25]]
    assert largest.tolist() == [[1, 1], [1, 0], [1, 0.25]]
    accuracy50 = (largest >= 0.5).mean(axis=0) * 100
    assert accuracy50.max() == pytest.approx(100) and accuracy50.argmax() == 0
    accuracy20 = (all_boxes >= 0.2).mean(axis=0) * 100
    assert accuracy20.tolist() == pytest.approx([100, 200 / 3])


def test_pxap_on_a_tiny_mask_by_hand():
    """4 pixels: foreground scores 0.9, 0.4; background 0.6, 0.1; thresholds 0, 0.5.

    Bins [0,.5) [.5,1) [1,2) [2,3): fg (1,1,0,0), bg (1,1,0,0). From high to low:
    t>=2,1: nothing; t=0.5: tp 1 fp 1 -> P 1/2 R 1/2; t=0: tp 2 fp 2 -> P 1/2 R 1.
    AP = 1/2 * 1/2 + 1/2 * 1/2 = 0.5 -> 50%.
    """
    assert pxap_from_histograms(np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0])) == \
        pytest.approx(50.0)
    # perfect separation: fg (0,2,0,0), bg (2,0,0,0): P 1 at R 1 -> 100
    assert pxap_from_histograms(np.array([0, 2, 0, 0]), np.array([2, 0, 0, 0])) == \
        pytest.approx(100.0)


def test_each_error_type():
    gt = np.array([[0, 0, 10, 10]])
    assert error_type(np.array([0, 0, 10, 10]), gt, 1.0, True, False) == "correct"
    assert error_type(np.array([0, 0, 10, 10]), gt, 1.0, False, False) == "wrong_class"
    assert error_type(np.array([2, 2, 5, 5]), gt, 0.09, True, False) == "part"
    assert error_type(np.array([0, 0, 30, 30]), gt, 0.11, True, False) == "too_large"
    assert error_type(np.array([50, 50, 60, 60]), gt, 0.0, True, False) == "mislocated"
    two = np.array([[0, 0, 10, 10], [20, 0, 30, 10]])
    assert error_type(np.array([0, 0, 30, 10]), two, 0.33, True, False) == "multiple_instances"


def test_kernel_scalar_iou_equals_the_array_iou_in_both_conventions():
    from acol_eval.metrics.metrics import iou_exclusive, iou_inclusive
    from acol_eval.metrics.sweep import best_box_iou

    def boxes(n):  # x0 <= x1, y0 <= y1
        xs, ys = np.sort(rng.integers(0, 30, (2, n, 2)), axis=2)
        return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)

    rng = np.random.default_rng(0)
    for _ in range(200):
        gt, box = boxes(3), boxes(1)[0]
        assert best_box_iou(*box, gt, True) == iou_inclusive(box, gt).max()
        assert best_box_iou(*box, gt, False) == iou_exclusive(box, gt).max()
    assert best_box_iou(0, 0, 0, 0, np.zeros((0, 4), np.int64), True) == 0.0
