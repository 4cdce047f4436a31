"""thresholds.py: which CAM threshold localize and boxes use, and where it came from."""

from __future__ import annotations

import math

import pytest

from acol_eval.maps.thresholds import (
    DEFAULT_CAM_THRESHOLD,
    CamThreshold,
    ThresholdSource,
    check_threshold,
    resolve_cam_threshold,
    threshold_from_report,
)
from acol_eval.util.errors import AcolError

HEADER = "metric,value,threshold,iou,protocol,count,ci_low,ci_high\n"


def write_report(folder, protocol="native", best=0.765, count=60, extra=""):
    """A summary.csv as score writes it (float_format %.6g)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.csv").write_text(
        HEADER
        + f"cls_top1,61.6667,,,{protocol},{count},,\n"
        + f"gt_known_loc,26.6667,0.2,50,{protocol},{count},,\n"
        + f"best_gt_known_loc,53.3333,{best},50,{protocol},{count},,\n"
        + f"max_box_acc_v2@30,70,0.512,30,{protocol},{count},,\n"
        + extra)
    return folder


def test_a_flag_wins_and_is_checked():
    chosen = resolve_cam_threshold(0.35, None, checkpoint_threshold=0.7)
    assert chosen == CamThreshold(0.35, ThresholdSource.FLAG)
    assert chosen.calibrated and "--cam-threshold" in chosen.describe()


def test_a_report_gives_its_best_gt_known_threshold(tmp_path):
    report = write_report(tmp_path / "r", best=0.726)
    chosen = resolve_cam_threshold(None, report, checkpoint_threshold=0.4)
    assert chosen.value == 0.726 and chosen.source is ThresholdSource.REPORT
    assert chosen.detail == str(report / "summary.csv")
    assert chosen.record() == {"cam_threshold": 0.726, "cam_threshold_source": "report",
                               "cam_threshold_detail": str(report / "summary.csv")}
    # the summary.csv itself is accepted as well as its folder
    assert threshold_from_report(report / "summary.csv")[0] == 0.726


def test_a_checkpoint_threshold_comes_before_the_default():
    chosen = resolve_cam_threshold(None, None, 0.64, "best_gt_known_loc on val (native)")
    assert chosen.value == 0.64 and chosen.source is ThresholdSource.CHECKPOINT
    assert "best_gt_known_loc on val" in chosen.describe()


def test_nothing_given_is_the_uncalibrated_default():
    chosen = resolve_cam_threshold()
    assert chosen.value == DEFAULT_CAM_THRESHOLD == 0.2
    assert chosen.source is ThresholdSource.DEFAULT and not chosen.calibrated
    assert "uncalibrated" in chosen.describe()


def test_flag_and_report_together_are_refused(tmp_path):
    with pytest.raises(AcolError, match="not both"):
        resolve_cam_threshold(0.3, write_report(tmp_path / "r"))


@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan, math.inf, "x"])
def test_thresholds_outside_zero_one_are_refused(value):
    with pytest.raises(AcolError, match="outside|not a number"):
        check_threshold(value, "--cam-threshold")


def test_a_bad_checkpoint_threshold_is_refused():
    with pytest.raises(AcolError, match="checkpoint"):
        resolve_cam_threshold(None, None, 1.7)


def test_zero_and_one_are_thresholds():
    assert check_threshold(0, "t") == 0.0 and check_threshold(1, "t") == 1.0


def test_a_wsoleval_report_is_refused_with_the_way_out(tmp_path):
    with pytest.raises(AcolError, match="--protocol native"):
        threshold_from_report(write_report(tmp_path / "r", protocol="wsoleval"))


def test_a_baseline_report_is_refused(tmp_path):
    with pytest.raises(AcolError, match="baseline"):
        threshold_from_report(write_report(tmp_path / "r", protocol="native (baseline: centre)"))


def test_a_folder_that_is_not_a_report_is_refused(tmp_path):
    (tmp_path / "predictions.csv").write_text("image\n")
    with pytest.raises(AcolError, match="not an acol-eval report"):
        threshold_from_report(tmp_path)
    (tmp_path / "summary.csv").write_text("a,b\n1,2\n")
    with pytest.raises(AcolError, match="not an acol-eval summary.csv"):
        threshold_from_report(tmp_path)


def test_a_report_without_the_threshold_is_refused(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "summary.csv").write_text(HEADER + "pxap,41.2,,,native,9,,\n")
    with pytest.raises(AcolError, match="no best_gt_known_loc threshold"):
        threshold_from_report(folder)
    # a row without a threshold, or scored over no boxed image
    write_report(folder, best="")
    with pytest.raises(AcolError, match="no best_gt_known_loc threshold"):
        threshold_from_report(folder)
    write_report(folder, count=0)
    with pytest.raises(AcolError, match="no image with boxes"):
        threshold_from_report(folder)


def test_a_report_threshold_outside_zero_one_is_refused(tmp_path):
    with pytest.raises(AcolError, match="outside"):
        threshold_from_report(write_report(tmp_path / "r", best=1.5))
