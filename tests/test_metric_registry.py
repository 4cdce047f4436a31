"""A metric is one object in one registry: a toy metric defined here, not in the package,
appears in summary.csv, per_image.csv, compare's leaderboard.csv and pairs.csv (a paired
difference with its interval) and both report.html pages; removed from the registry it
is gone from all of them. The built-in metrics' names and orders come from the registry."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest
from test_metric_names import GT, write_two_map_run

import acol_eval
from acol_eval.comparison.compare import CompareConfig, metric_order
from acol_eval.comparison.compare import run as compare
from acol_eval.metrics import metricdefs
from acol_eval.metrics.metricdefs import ImageView, Metric, Needs, Threshold
from acol_eval.scoring.scoring import ScoreConfig, score

NAME = "box_area_ratio"


def box_area_ratio(view: ImageView) -> float:
    """The predicted (largest) box's area over the first ground-truth box's, at the
    metric's threshold; 0 without a predicted box."""
    box, gt = view.box(), view.gt[0]
    if not len(box):
        return 0.0
    area = (box[0, 2] - box[0, 0]) * (box[0, 3] - box[0, 1])
    return float(area / ((gt[2] - gt[0]) * (gt[3] - gt[1])))


TOY = Metric(NAME, "Box area ratio", "the predicted box's area over the ground truth's, "
             "at the fixed CAM threshold", unit="ratio", higher_is_better=False,
             needs=Needs.BOXES, threshold=Threshold.FIXED, outcome=box_area_ratio, scale=1.0)


@pytest.fixture
def toy_metric():
    metricdefs.register_metric(TOY)
    try:
        yield TOY
    finally:
        metricdefs.unregister_metric(NAME)


# four images with one object each at GT; method "tight" draws the object's square,
# method "wide" a larger square from the image's corner, of another size per image
WIDE = [(0, 0, 60, 60), (0, 0, 70, 70), (0, 0, 60, 60), (0, 0, 80, 80)]


def _method(folder, boxes):
    images = [(f"i{k}.png", label, label, GT, box)
              for k, (label, box) in enumerate(zip("abab", boxes))]
    return write_two_map_run(folder, images)


def _score_and_compare(tmp_path, tag: str) -> dict[str, object]:
    reports = []
    for name, boxes in (("tight", [GT] * 4), ("wide", WIDE)):
        folder = tmp_path / f"{name}-{tag}"
        run = _method(folder, boxes)
        out = folder / "report"
        score(ScoreConfig(run=str(run), annotations=f"csv:{folder / 'ann.csv'}",
                          out=str(out), workers=0, interval=0.01, protocol="native",
                          map_choice="top1", threshold=0.5, bootstrap=1000))
        reports.append(out)
    result = compare(CompareConfig(reports=tuple(map(str, reports)),
                                   out=str(tmp_path / f"compare-{tag}"), bootstrap=1000),
                     log=lambda line: None)
    return {"summary": pd.read_csv(reports[1] / "summary.csv").set_index("metric"),
            "per_image": pd.read_csv(reports[1] / "per_image.csv"),
            "score_html": (reports[1] / "report.html").read_text(),
            "leaderboard": result.leaderboard, "pairs": result.pairs,
            "compare_html": (tmp_path / f"compare-{tag}" / "report.html").read_text(),
            "pairs_csv": pd.read_csv(tmp_path / f"compare-{tag}" / "pairs.csv")}


def test_a_registered_metric_flows_everywhere_and_leaves_with_its_entry(tmp_path):
    metricdefs.register_metric(TOY)
    try:
        assert NAME in acol_eval.list_metrics()
        with_toy = _score_and_compare(tmp_path, "with")
    finally:
        metricdefs.unregister_metric(NAME)
    # per image: the wide boxes over the object's 40 x 40 box, at the fixed 0.5
    ratios = with_toy["per_image"][NAME].to_numpy()
    expected = np.array([(x1 - x0) * (y1 - y0) / 1600 for x0, y0, x1, y1 in WIDE])
    assert ratios == pytest.approx(expected, abs=0.05)
    summary = with_toy["summary"]
    assert summary.at[NAME, "value"] == pytest.approx(ratios.mean(), abs=1e-5)
    assert summary.at[NAME, "threshold"] == pytest.approx(0.5)
    assert summary.at[NAME, "threshold_source"] == "fixed"
    assert summary.at[NAME, "count"] == 4
    assert summary.at[NAME, "ci_low"] < summary.at[NAME, "value"] < summary.at[NAME,
                                                                                "ci_high"]
    # compare: each method's mean, and the paired difference wide - tight with its
    # interval (the tight boxes are the object's: ratio 1 on every image)
    board = with_toy["leaderboard"].set_index("method")
    assert board.at["tight-with/report", NAME] == pytest.approx(1.0, abs=0.05)
    assert board.at["wide-with/report", NAME] == pytest.approx(ratios.mean(), abs=1e-4)
    pairs = with_toy["pairs_csv"].iloc[0]
    diff = ratios.mean() - board.at["tight-with/report", NAME]
    assert pairs[f"{NAME}_diff"] == pytest.approx(diff, abs=1e-4)
    assert pairs[f"{NAME}_diff_ci_low"] < pairs[f"{NAME}_diff"] < pairs[f"{NAME}_diff_ci_high"]
    assert pairs[f"{NAME}_diff_ci_low"] > 0  # wide is wider on every resample
    # both pages: score's card with its title and description, compare's pivot and legend
    described = html.escape(TOY.description)
    assert f'data-card="{NAME}" title="{described}"' in with_toy["score_html"]
    assert "Box area ratio" in with_toy["score_html"]
    assert "Box area ratio" in with_toy["compare_html"]
    assert described in with_toy["compare_html"]

    without = _score_and_compare(tmp_path, "without")
    assert NAME not in acol_eval.list_metrics()
    assert NAME not in without["summary"].index
    assert NAME not in without["per_image"].columns
    assert not [c for c in without["leaderboard"].columns if c.startswith(NAME)]
    assert not [c for c in without["pairs_csv"].columns if c.startswith(NAME)]
    assert NAME not in without["score_html"] and NAME not in without["compare_html"]
    # the built-in figures are the same with and without the toy metric
    assert without["summary"].equals(with_toy["summary"].drop(index=NAME))


def test_compare_order_and_list_come_from_the_registry(toy_metric):
    assert metric_order([30, 50]) == [
        "cls_top1", "top1_loc", "gt_known_loc", "max_box_acc", "best_top1_loc",
        "best_top5_loc", "max_box_acc_v2",
        "max_box_acc_v2@30", "max_box_acc_v2@50", "pxap", NAME]
    assert acol_eval.list_metrics()[-1] == NAME
    assert metricdefs.headline()[-1] == NAME
    assert metricdefs.get_metric("agnostic_loc").name == "gt_known_loc"


def test_a_metric_is_registered_once_and_only_as_a_mean_of_per_image_outcomes(toy_metric):
    with pytest.raises(ValueError, match="registered already"):
        metricdefs.register_metric(TOY)
    with pytest.raises(ValueError, match="registered already"):
        metricdefs.register_metric(Metric("agnostic_loc", "x", "x", outcome=len))
    with pytest.raises(ValueError, match="FIXED or NONE"):
        metricdefs.register_metric(Metric("other", "x", "x", outcome=len,
                                          threshold=Threshold.BEST))
    with pytest.raises(ValueError, match="outcome"):
        metricdefs.register_metric(Metric("other", "x", "x"))
    for column in ("correct", "x0", "label"):  # its column would overwrite per_image.csv's
        with pytest.raises(ValueError, match="column of per_image.csv"):
            metricdefs.register_metric(Metric(column, "x", "x", outcome=len))
    with pytest.raises(ValueError, match="cannot be removed|not a registered"):
        metricdefs.unregister_metric("gt_known_loc")
