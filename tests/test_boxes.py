"""Maps into boxes: the native protocol by hand, the wsoleval protocol against the reference."""

from __future__ import annotations

import numpy as np

from acol_eval.maps.boxes import native_boxes
from conftest import reference_boxes, reference_uint8


def test_native_boxes_largest_and_all_in_raster_order():
    heat = np.zeros((6, 8))
    heat[1:3, 1:3] = 1.0   # 4 pixels: the largest
    heat[4, 5:8] = 0.9     # 3 pixels
    heat[0, 7] = 0.8       # 1 pixel, first in raster order
    assert native_boxes(heat, 0.5).tolist() == [[1, 1, 3, 3]]
    assert native_boxes(heat, 0.5, all_boxes=True).tolist() == [
        [7, 0, 8, 1], [1, 1, 3, 3], [5, 4, 8, 5]]
    # threshold 0.85 of the range [0, 1] drops the 0.8 pixel only
    assert native_boxes(heat, 0.85, all_boxes=True).tolist() == [[1, 1, 3, 3], [5, 4, 8, 5]]


def test_native_boxes_ties_go_to_the_first_in_raster_order_and_diagonals_connect():
    heat = np.zeros((4, 6))
    heat[0, 4:6] = 1.0
    heat[2, 0:2] = 1.0
    assert native_boxes(heat, 0.5).tolist() == [[4, 0, 6, 1]]
    heat[1, 3] = 1.0  # touches (0, 4) diagonally: one 3-pixel component
    assert native_boxes(heat, 0.5).tolist() == [[3, 0, 6, 2]]


def test_native_boxes_threshold_is_inclusive_of_the_range_fraction():
    heat = np.array([[0.0, 2.0, 4.0, 10.0]])
    # min + 0.4 * range = 4.0: pixels >= 4 are kept
    assert native_boxes(heat, 0.4).tolist() == [[2, 0, 4, 1]]


def test_native_boxes_constant_or_nan_map_gives_no_box():
    assert native_boxes(np.ones((5, 5)), 0.2).shape == (0, 4)
    heat = np.arange(9, dtype=float).reshape(3, 3)
    heat[1, 1] = np.nan
    assert native_boxes(heat, 0.2).shape == (0, 4)


def test_wsoleval_boxes_of_the_protocol_equal_the_reference_contours():
    """The wsoleval reference written here from numpy and OpenCV (bicubic 224x224 in
    float64, min-max, x255 truncated to uint8, findContours RETR_TREE, the largest
    contourArea's boundingRect, x1/y1 clipped to 223) at several levels against the box
    the protocol reports from its first-pass record."""
    from acol_eval.scoring.protocols import get_protocol

    protocol = get_protocol("wsoleval")
    rng = np.random.default_rng(5)
    thresholds = np.arange(0, 1, 0.05)
    for side in (7, 14, 28):
        heat = rng.random((side, side)) ** 2
        heat[side // 4: side // 2, side // 4: side // 2] += 1.5   # one dominant blob
        record = np.zeros((), protocol.record_dtype(len(thresholds)))
        protocol.image_record(heat, np.array([[50.0, 50, 150, 150]]), 224, 224, thresholds,
                              record)
        u8 = reference_uint8(heat)
        for index, t in enumerate(thresholds):
            _, largest = reference_boxes(u8, t)
            got = protocol.box_at(record, thresholds, index, lambda: None)
            assert got.tolist() == largest, (side, t)
