"""The wsoleval protocol against the straightforward reference; the score command end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from acol_eval.data.readers import read_wsol
from acol_eval.maps.boxes import wsoleval_uint8
from acol_eval.scoring.protocols import get_protocol
from conftest import (
    ROOT,
    assert_one_line_error,
    reference_best_iou,
    reference_boxes,
    reference_gt224,
    reference_uint8,
    run_cli,
    shared_data,
    write_wsol_metadata,
)

THRESHOLDS = np.arange(0, 1, 0.001)


def reference_ious(raw_map: np.ndarray, gt224, thresholds: np.ndarray):
    """The oracle, written from wsolevaluation's definitions without the package: the
    uint8 map, one threshold + findContours per CAM threshold, inclusive IoU; (all
    boxes, largest contour) best IoU at every threshold."""
    u8 = reference_uint8(raw_map)
    boxes = [reference_boxes(u8, t) for t in thresholds]
    return (np.array([reference_best_iou(every, gt224) for every, _ in boxes]),
            np.array([reference_best_iou(largest, gt224) for _, largest in boxes]))


def protocol_ious(raw_map: np.ndarray, gt: np.ndarray, width: float, height: float,
                  thresholds=THRESHOLDS):
    """The very entry point `score` runs per image (protocol.image_record), read back at
    every CAM threshold as the first pass reads it."""
    protocol = get_protocol("wsoleval")
    record = np.zeros((), protocol.record_dtype(len(thresholds)))
    protocol.image_record(raw_map, np.asarray(gt, float), width, height, thresholds, record)
    return protocol.threshold_ious(record, thresholds)


def assert_same_as_reference(raw_map: np.ndarray, gt224: np.ndarray, thresholds=THRESHOLDS):
    # the pre-processing on its own first: a difference there is easiest to read
    assert np.array_equal(wsoleval_uint8(raw_map), reference_uint8(raw_map))
    # a 224x224 image: the ground truth is already in the frame
    fast_all, fast_largest = protocol_ious(raw_map, gt224, 224, 224, thresholds)
    ref_all, ref_largest = reference_ious(raw_map, gt224.tolist(), thresholds)
    assert np.array_equal(fast_all, ref_all)
    assert np.array_equal(fast_largest, ref_largest)


def ring_map() -> np.ndarray:
    heat = np.zeros((224, 224))
    heat[40:180, 40:180] = 1.0
    heat[80:140, 80:140] = 0.0       # a hole
    heat[100:120, 100:120] = 0.7     # a component nested in the hole
    heat[10:20, 190:215] = 0.5       # a second component
    return heat


@pytest.mark.parametrize("name", ["holes_nested", "several", "constant", "nan", "noise"])
def test_wsoleval_equals_reference_on_hard_maps(name):
    rng = np.random.default_rng(3)
    heat = {
        "holes_nested": ring_map(),
        "several": rng.random((7, 7)),
        "constant": np.full((14, 14), 0.3),
        "nan": np.where(rng.random((14, 14)) > 0.9, np.nan, 1.0),
        "noise": rng.random((56, 56)),
    }[name]
    gt = np.array([[60, 60, 160, 160], [100, 100, 120, 120], [0, 0, 5, 5]])
    assert_same_as_reference(heat, gt)


@pytest.mark.slow
def test_wsoleval_equals_reference_on_300_maps_over_real_cub_metadata():
    metadata = read_wsol(shared_data() / "wsol-metadata" / "CUB" / "test")
    rng = np.random.default_rng(0)
    images = metadata.images.sample(300, random_state=0)
    boxes = metadata.boxes.groupby("image")
    thresholds = np.arange(0, 1, 0.002)
    for k, row in enumerate(images.itertuples()):
        gt = boxes.get_group(row.image)[["x0", "y0", "x1", "y1"]].to_numpy()
        gt224 = reference_gt224(gt.tolist(), row.width, row.height)
        side = (7, 14, 28)[k % 3]
        heat = rng.random((side, side)) ** 3
        cx = (gt224[0][0] + gt224[0][2]) / 448 * side
        cy = (gt224[0][1] + gt224[0][3]) / 448 * side
        yy, xx = np.mgrid[0:side, 0:side]
        heat += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.05 * side * side))
        fast_all, fast_largest = protocol_ious(heat, gt, row.width, row.height, thresholds)
        ref_all, ref_largest = reference_ious(heat, gt224, thresholds)
        assert np.array_equal(fast_all, ref_all), row.image
        assert np.array_equal(fast_largest, ref_largest), row.image


# --------------------------------------------------------------------------- the command


def write_run(folder, boxes, labels, preds, maps, classes=("a", "b"), size=(100, 100)):
    """A localize run folder as localize writes it, written with numpy."""
    run = folder / "run"
    run.mkdir(parents=True)
    names = [f"img{i:02d}.png" for i in range(len(maps))]
    np.asarray(maps, dtype="<f2").tofile(run / "maps.f16")
    (run / "maps.json").write_text(json.dumps({
        "format": "acol-eval-maps", "version": 1, "dtype": "float16",
        "height": maps[0].shape[0], "width": maps[0].shape[1], "count": len(maps),
        "classes": list(classes)}))
    pd.DataFrame({"row": range(len(maps)), "image": names, "class_id": 0,
                  "class_name": labels, "pred_rank": 1, "is_label": 1}).to_csv(
        run / "maps_index.csv", index=False)
    pd.DataFrame({"image": names, "width": size[0], "height": size[1], "label": labels,
                  "pred_1": preds, "score_1": 0.9, "x0": 0, "y0": 0, "x1": 1, "y1": 1,
                  "cam_threshold": 0.2}).to_csv(run / "predictions.csv", index=False)
    rows = [[n, lab, *b] for n, lab, b in zip(names, labels, boxes)]
    pd.DataFrame(rows, columns=["image", "label", "x0", "y0", "x1", "y1"]).to_csv(
        folder / "ann.csv", index=False)
    return run


def square_maps(boxes, shift=0):
    maps = []
    for x0, y0, x1, y1 in boxes:
        heat = np.zeros((10, 10))
        heat[(y0 // 10):(y1 // 10), (x0 // 10 + shift):(x1 // 10 + shift)] = 1.0
        maps.append(heat)
    return maps


def test_score_command_writes_every_report_and_counts_top1_loc(tmp_path):
    boxes = [(10, 10, 50, 50), (40, 40, 90, 90), (20, 50, 60, 90)]
    run = write_run(tmp_path, boxes, ["a", "b", "a"], ["a", "a", "a"], square_maps(boxes))
    result = run_cli("score", str(run), "--annotations", str(tmp_path / "ann.csv"),
                     "--out", str(tmp_path / "rep"), "--protocol", "native")
    assert result.returncode == 0, result.stderr
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv").set_index("metric")
    assert list(pd.read_csv(tmp_path / "rep" / "summary.csv").columns) == [
        "metric", "value", "threshold", "iou", "protocol", "count", "ci_low", "ci_high",
        "threshold_source", "map", "coverage"]
    assert summary.at["gt_known_loc", "value"] == pytest.approx(100.0)
    assert summary.at["top1_loc", "value"] == pytest.approx(200 / 3)   # image 2 is class b
    assert summary.at["cls_top1", "value"] == pytest.approx(200 / 3)
    assert summary.at["max_box_acc_v2@70", "value"] == pytest.approx(100.0)
    assert (summary["protocol"] == "native").all()
    per_image = pd.read_csv(tmp_path / "rep" / "per_image.csv")
    assert per_image["error"].tolist() == ["correct", "wrong_class", "correct"]
    for name in ("per_class.csv", "curve.csv", "curve.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    assert "max_box_acc_v2" in result.stdout


def test_threshold_from_applies_the_other_reports_thresholds(tmp_path):
    boxes = [(10, 10, 50, 50), (40, 40, 90, 90)]
    run = write_run(tmp_path, boxes, ["a", "b"], ["a", "b"], square_maps(boxes))
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame({"metric": ["best_gt_known_loc", "max_box_acc_v2@50"],
                  "threshold": [0.999, 0.5]}).to_csv(other / "summary.csv", index=False)
    result = run_cli("score", str(run), "--annotations", str(tmp_path / "ann.csv"),
                     "--out", str(tmp_path / "rep"), "--threshold-from", str(other),
                     "--iou", "50")
    assert result.returncode == 0, result.stderr
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv").set_index("metric")
    assert summary.at["best_gt_known_loc", "threshold"] == pytest.approx(0.999)
    assert summary.at["max_box_acc_v2@50", "threshold"] == pytest.approx(0.5)


@pytest.mark.parametrize(("first", "then", "phrase"), [
    (["--protocol", "native"], ["--protocol", "wsoleval"],
     "chose its thresholds under native, this score runs wsoleval"),
    (["--baseline", "centre"], [],
     "under wsoleval (baseline: centre), this score runs wsoleval"),
])
def test_threshold_from_refuses_thresholds_chosen_another_way(tmp_path, first, then, phrase):
    boxes = [(10, 10, 50, 50), (40, 40, 90, 90)]
    run = write_run(tmp_path, boxes, ["a", "b"], ["a", "b"], square_maps(boxes))
    common = ["score", str(run), "--annotations", str(tmp_path / "ann.csv")]
    assert run_cli(*common, "--out", str(tmp_path / "val"), *first).returncode == 0
    result = run_cli(*common, "--out", str(tmp_path / "test"), *then,
                     "--threshold-from", str(tmp_path / "val"))
    assert_one_line_error(result, 2, phrase, "--threshold-from")
    assert not (tmp_path / "test").exists()
    # scored the same way, the same report's thresholds are taken
    same = run_cli(*common, "--out", str(tmp_path / "same"), *first,
                   "--threshold-from", str(tmp_path / "val"))
    assert same.returncode == 0, same.stderr


def test_bootstrap_interval_holds_the_value_and_narrows_with_more_images(tmp_path):
    widths = []
    for n in (8, 64):
        rng = np.random.default_rng(n)
        boxes = [tuple(int(v) for v in (x, y, x + 40, y + 40))
                 for x, y in rng.integers(0, 50, (n, 2))]
        maps = square_maps(boxes[: n // 2]) + square_maps(boxes[n // 2:], shift=3)
        folder = tmp_path / str(n)
        run = write_run(folder, boxes, ["a"] * n, ["a"] * n, maps)
        result = run_cli("score", str(run), "--annotations", str(folder / "ann.csv"),
                         "--out", str(folder / "rep"), "--bootstrap", "1000",
                         "--protocol", "native", "--threshold", "0.5")
        assert result.returncode == 0, result.stderr
        row = pd.read_csv(folder / "rep" / "summary.csv").set_index("metric").loc["gt_known_loc"]
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
        widths.append(row["ci_high"] - row["ci_low"])
    assert widths[1] < widths[0]


def test_npy_folder_maps_have_no_classification_and_missing_sides_are_counted(tmp_path):
    maps = tmp_path / "maps" / "001.cls"
    maps.mkdir(parents=True)
    heat = np.zeros((224, 224))
    heat[20:120, 30:130] = 1
    np.save(maps / "a.npy", heat)
    np.save(maps / "stray.npy", heat)          # a map with no annotation
    meta = write_wsol_metadata(
        tmp_path / "meta",
        [("001.cls/a.jpg", "0", 224, 224), ("001.cls/b.jpg", "0", 224, 224)],
        ["001.cls/a.jpg,30,20,130,120", "001.cls/b.jpg,1,1,5,5"])
    result = run_cli("score", str(tmp_path / "maps"), "--annotations", f"wsol:{meta}",
                     "--out", str(tmp_path / "rep"), "--allow-missing")
    assert result.returncode == 0, result.stderr
    assert "1 map without annotation" in result.stderr
    assert "1 annotated image without a map" in result.stderr
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv").set_index("metric")
    assert "cls_top1" not in summary.index and "top1_loc" not in summary.index
    assert summary.at["max_box_acc", "value"] == pytest.approx(100.0)
    assert summary.at["issue:map_without_annotation", "value"] == 1
    assert summary.at["issue:annotation_without_map", "value"] == 1


def test_score_bad_usage_is_one_line(tmp_path):
    assert_one_line_error(run_cli("score", str(tmp_path / "nope"), "--annotations",
                                  str(tmp_path), "--out", str(tmp_path / "r")), 2)


def test_scoring_does_not_import_torch():
    code = ("import sys, acol_eval.scoring.scoring, acol_eval.metrics.reports, "
            "acol_eval.metrics.metrics; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_largest_contour_from_the_candidates_crop_equals_the_whole_map():
    from acol_eval.maps.boxes import wsoleval_contour_boxes
    from acol_eval.metrics.metrics import _largest_contour_box_in
    from acol_eval.metrics.sweep import wsoleval_sweep

    rng = np.random.default_rng(7)
    checked = 0
    for side in (7, 14, 28, 56):
        for _ in range(5):
            u8 = wsoleval_uint8(rng.random((side, side)) ** 3)
            result = wsoleval_sweep(u8, np.array([[50, 50, 150, 150]]))
            contour_sure, n_components, candidates = result[3], result[4], result[6]
            for level in np.flatnonzero((n_components > 1) & ~contour_sure):
                crop = _largest_contour_box_in(u8, int(level), candidates[level])
                if crop is not None:
                    whole = wsoleval_contour_boxes(u8, int(level), all_boxes=False)[0]
                    assert crop.tolist() == whole.tolist()
                    checked += 1
    assert checked > 50
