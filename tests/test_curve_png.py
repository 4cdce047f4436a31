"""curve.png: the same rules as report.html's curves: every metric's chosen
threshold and the fixed threshold marked, lines told apart by colour and dash."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from acol_eval.report.curveplot import (
    DASHES,
    FIXED_GREY,
    PlotFrame,
    bgr,
    curve_marks,
    dash_pieces,
    line_style,
    plot_curve,
)


def bump(thresholds, centre, height):
    return height * np.exp(-(((thresholds - centre) / 0.2) ** 2))


def made_curve() -> tuple[pd.DataFrame, pd.DataFrame]:
    t = np.arange(0, 1, 0.001)
    curve = pd.DataFrame({"threshold": t, "gt_known_loc": bump(t, 0.3, 80),
                          "top1_loc": bump(t, 0.3, 60), "top5_loc": bump(t, 0.3, 70),
                          "box_acc_v2@30": bump(t, 0.15, 90),
                          "box_acc_v2@50": bump(t, 0.45, 75),
                          "box_acc_v2@70": bump(t, 0.62, 40)})
    summary = pd.DataFrame({
        "metric": ["gt_known_loc", "best_gt_known_loc", "best_top1_loc", "max_box_acc",
                   "max_box_acc_v2@30", "max_box_acc_v2@50", "max_box_acc_v2@70",
                   "max_box_acc_v2"],
        "threshold": [0.8, 0.3, 0.3, 0.3, 0.15, 0.45, 0.62, np.nan]})
    return curve, summary


def test_marks_are_summary_thresholds_and_the_fixed_one():
    curve, summary = made_curve()
    marks = curve_marks(curve, summary)
    found = {m.metric: (m.column, m.threshold) for m in marks}
    assert found == {"best_gt_known_loc": ("gt_known_loc", 0.3),
                     "max_box_acc_v2@30": ("box_acc_v2@30", 0.15),
                     "max_box_acc_v2@50": ("box_acc_v2@50", 0.45),
                     "max_box_acc_v2@70": ("box_acc_v2@70", 0.62),
                     "gt_known_loc": (None, 0.8)}
    gt = next(m for m in marks if m.metric == "best_gt_known_loc")
    assert abs(gt.accuracy - 80.0) < 1e-6 and gt.style == 0


def column_colour_count(image: np.ndarray, x: float, rows: slice, colour: str) -> int:
    strip = image[rows, int(round(x)) - 1:int(round(x)) + 2].reshape(-1, 3).astype(int)
    return int((np.abs(strip - np.array(bgr(colour))).max(axis=1) < 40).sum())


def test_marked_thresholds_columns_hold_the_marks_colour(tmp_path):
    curve, summary = made_curve()
    plot_curve(tmp_path / "curve.png", curve, "wsoleval", summary)
    image = cv2.imread(str(tmp_path / "curve.png"))
    frame = PlotFrame()
    assert image.shape == (frame.height, frame.width, 3)
    below = slice(frame.height - frame.bottom - 40, frame.height - frame.bottom - 1)
    for mark in curve_marks(curve, summary):
        x, y = frame.to_px(mark.threshold, 0 if mark.column is None else mark.accuracy)
        if mark.column is None:  # grey dots over the whole height, above every curve
            top = slice(frame.top + 2, frame.top + 40)
            assert column_colour_count(image, x, top, FIXED_GREY) >= 6, mark
            continue
        colour = line_style(mark.style)[0]
        dot = image[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].reshape(-1, 3).astype(int)
        assert (np.abs(dot - np.array(bgr(colour))).max(axis=1) < 40).mean() > 0.6, mark
        assert column_colour_count(image, x, below, colour) >= 8, mark
    # a threshold nobody chose has no such line: the column at 0.95 is white near the axis
    assert column_colour_count(image, frame.to_px(0.95, 0)[0], below, "#ffffff") > 80


def test_lines_differ_in_colour_and_dash():
    styles = [line_style(k) for k in range(24)]
    assert len(set(styles)) == 24
    first = styles[:len(DASHES)]
    assert len({c for c, _ in first}) == len({d for _, d in first}) == len(DASHES)


def test_dash_pieces_follow_the_pattern():
    line = np.array([[0.0, 10.0], [60.0, 10.0], [60.0, 70.0]])  # 120 px with a corner
    assert len(dash_pieces(line, "")) == 1
    pieces = dash_pieces(line, "8 4")
    drawn = sum(np.hypot(*np.diff(p, axis=0).T).sum() for p in pieces)
    assert len(pieces) == 10 and 70 < drawn < 90  # 10 dashes of 8 px (less the sampling)
    assert all(np.hypot(*np.diff(p, axis=0).T).sum() <= 8.01 for p in pieces)
    # an odd pattern repeats twice over, as in SVG: '2 3' is 2 on 3 off
    assert len(dash_pieces(np.array([[0.0, 0.0], [50.0, 0.0]]), "2 3")) == 10


def test_score_marks_its_own_summary_thresholds_on_curve_png(tmp_path):
    """A real score run (raccoon photos, VOC boxes): curve.png's dots sit where
    summary.csv says each metric's threshold is."""
    from tests.test_report_html import make_raccoon_report

    report = make_raccoon_report(tmp_path, count=8)
    curve = pd.read_csv(report / "curve.csv")
    summary = pd.read_csv(report / "summary.csv")
    marks = [m for m in curve_marks(curve, summary) if m.column is not None]
    assert {m.metric for m in marks} == {"best_gt_known_loc", "max_box_acc_v2@30",
                                         "max_box_acc_v2@50", "max_box_acc_v2@70"}
    image = cv2.imread(str(report / "curve.png"))
    frame = PlotFrame()
    for k, mark in enumerate(marks):
        x, y = frame.to_px(mark.threshold, mark.accuracy)
        later = [frame.to_px(m.threshold, m.accuracy) for m in marks[k + 1:]]
        if any(np.hypot(x - a, y - b) < 9 for a, b in later):
            continue  # a later dot covers this one
        dot = image[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].reshape(-1, 3).astype(int)
        colour = np.array(bgr(line_style(mark.style)[0]))
        assert (np.abs(dot - colour).max(axis=1) < 40).mean() > 0.6, mark
