"""`score --baseline centre`: a centred Gaussian map for every image of RUN, same protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, write_wsol_metadata
from tests.test_score import square_maps, write_run


def score_baseline(tmp_path, boxes, labels, preds, *extra):
    # the run's own maps are perfect: the baseline must ignore them
    run = write_run(tmp_path, boxes, labels, preds, square_maps(boxes))
    result = run_cli("score", str(run), "--annotations", str(tmp_path / "ann.csv"),
                     "--out", str(tmp_path / "rep"), "--baseline", "centre", *extra)
    assert result.returncode == 0, result.stderr
    assert "baseline: centre" in result.stdout
    return pd.read_csv(tmp_path / "rep" / "summary.csv").set_index("metric")


def test_centre_baseline_scores_centred_objects_high(tmp_path):
    boxes = [(25, 25, 75, 75), (20, 20, 80, 80), (30, 30, 70, 70)]
    summary = score_baseline(tmp_path, boxes, ["a", "b", "a"], ["a", "a", "a"])
    assert (summary["protocol"] == "wsoleval (baseline: centre)").all()
    assert summary.at["max_box_acc", "value"] == pytest.approx(100.0)
    assert summary.at["max_box_acc_v2@50", "value"] == pytest.approx(100.0)
    # classification comes from the run's predictions: image 2 is b, predicted a
    assert summary.at["cls_top1", "value"] == pytest.approx(200 / 3)
    assert summary.at["best_top1_loc", "value"] == pytest.approx(200 / 3)


def test_centre_baseline_scores_corner_objects_low(tmp_path):
    boxes = [(0, 0, 30, 30), (70, 70, 100, 100), (0, 70, 30, 100)]
    summary = score_baseline(tmp_path, boxes, ["a", "a", "a"], ["a", "a", "a"],
                             "--protocol", "native")
    assert (summary["protocol"] == "native (baseline: centre)").all()
    assert summary.at["max_box_acc", "value"] == pytest.approx(0.0)
    assert summary.at["max_box_acc_v2@30", "value"] == pytest.approx(0.0)
    assert summary.at["cls_top1", "value"] == pytest.approx(100.0)


def test_centre_baseline_on_a_npy_folder_uses_28x28_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    heat = np.zeros((7, 7))
    heat[0, 0] = 1.0                              # the run's map points at the corner
    for name in ("a", "b"):
        np.save(maps / f"{name}.npy", heat)
    meta = write_wsol_metadata(tmp_path / "meta",
                               [("a.jpg", "0", 200, 200), ("b.jpg", "0", 200, 200)],
                               ["a.jpg,50,50,150,150", "b.jpg,0,0,40,40"])
    result = run_cli("score", str(maps), "--annotations", f"wsol:{meta}", "--out",
                     str(tmp_path / "rep"), "--baseline", "centre")
    assert result.returncode == 0, result.stderr
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv").set_index("metric")
    assert "cls_top1" not in summary.index
    assert summary.at["max_box_acc", "value"] == pytest.approx(50.0)   # the centred one only
    per_image = pd.read_csv(tmp_path / "rep" / "per_image.csv").set_index("image")
    assert per_image.at["a.jpg", "correct"] == 1 and per_image.at["b.jpg", "correct"] == 0
