"""One name, one meaning: class-agnostic localisation (the top-1 class's map) is not
called GT-known Loc, and every table with a threshold-dependent figure says at which
threshold and from where; per_class.csv uses the summary's thresholds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from acol_eval.metrics.reports import terminal_table
from acol_eval.scoring.scoring import ScoreConfig, score
from conftest import run_cli

SIZE = 100


def square(box, side=10, value=1.0):
    """A side x side map, `value` over `box` (x0 y0 x1 y1 of a SIZE x SIZE image)."""
    heat = np.zeros((side, side))
    x0, y0, x1, y1 = (int(v * side / SIZE) for v in box)
    heat[y0:y1, x0:x1] = value
    return heat


def write_two_map_run(folder, images):
    """A localize run with two maps per image: the label's (right box) and the top-1
    predicted class's (`top1_box`). images: (name, label, pred_1, gt_box, top1_box)."""
    run = folder / "run"
    run.mkdir(parents=True)
    maps, index = [], []
    for name, label, pred, gt, top1 in images:
        if label in ("a", "b"):  # the label's map only where the label is a model class
            index.append([len(maps), name, "ab".index(label), label, 0, 1])
            maps.append(square(gt))
        index.append([len(maps), name, "ab".index(pred), pred, 1, 0])
        maps.append(square(top1))
    np.asarray(maps, "<f2").tofile(run / "maps.f16")
    (run / "maps.json").write_text(json.dumps({
        "format": "acol-eval-maps", "version": 1, "dtype": "float16", "height": 10,
        "width": 10, "count": len(maps), "classes": ["a", "b"]}))
    pd.DataFrame(index, columns=["row", "image", "class_id", "class_name", "pred_rank",
                                 "is_label"]).to_csv(run / "maps_index.csv", index=False)
    pd.DataFrame({"image": [i[0] for i in images], "width": SIZE, "height": SIZE,
                  "pred_1": [i[2] for i in images],
                  "pred_2": ["b" if i[2] == "a" else "a" for i in images],
                  "score_1": 0.9, "score_2": 0.1, "x0": 0, "y0": 0,
                  "x1": 1, "y1": 1, "cam_threshold": 0.2}).to_csv(run / "predictions.csv",
                                                                  index=False)
    pd.DataFrame([[i[0], i[1], *i[3]] for i in images],
                 columns=["image", "label", "x0", "y0", "x1", "y1"]).to_csv(
        folder / "ann.csv", index=False)
    return run


GT, FAR = (10, 10, 50, 50), (60, 60, 90, 90)
# two images whose top-1 is wrong and whose top-1 map misses the object
IMAGES = [("i0.png", "a", "a", GT, GT), ("i1.png", "a", "b", GT, FAR),
          ("i2.png", "b", "b", GT, GT), ("i3.png", "b", "a", GT, FAR)]


def _score(folder, run, out, **options):
    return score(ScoreConfig(run=str(run), annotations=f"csv:{folder / 'ann.csv'}",
                             out=str(folder / out), workers=0, interval=0.01,
                             protocol="native", **options))


def test_top1_maps_are_named_agnostic_and_have_no_top5_loc(tmp_path):
    run = write_two_map_run(tmp_path, IMAGES)
    label = _score(tmp_path, run, "label", map_choice="label").summary.set_index("metric")
    top1 = _score(tmp_path, run, "top1", map_choice="top1").summary.set_index("metric")
    assert label.at["gt_known_loc", "value"] == pytest.approx(100.0)
    assert label.at["top5_loc", "value"] == pytest.approx(100.0)
    assert set(label.loc[["gt_known_loc", "max_box_acc_v2"], "map"]) == {"label"}
    assert label.at["cls_top1", "map"] == ""  # classification does not use the maps
    # the top-1 map misses on the two images whose top-1 class is wrong: another figure
    assert top1.at["agnostic_loc", "value"] == pytest.approx(50.0)
    assert top1.at["best_agnostic_loc", "value"] == pytest.approx(50.0)
    assert not {"gt_known_loc", "best_gt_known_loc", "top5_loc", "best_top5_loc"} & set(
        top1.index)
    assert top1.at["top1_loc", "value"] == pytest.approx(50.0)  # the same meaning
    assert top1.at["max_box_acc", "map"] == "top1"
    assert json.loads((tmp_path / "top1" / "report.json").read_text())["map_scored"] == "top1"
    curve = pd.read_csv(tmp_path / "top1" / "curve.csv")
    assert "agnostic_loc" in curve and "gt_known_loc" not in curve and "top5_loc" not in curve
    per_class = pd.read_csv(tmp_path / "top1" / "per_class.csv")
    assert {"agnostic_loc", "best_agnostic_loc"} <= set(per_class.columns)
    assert "gt_known_loc" not in per_class.columns


def test_auto_that_fell_back_to_a_top1_map_is_agnostic(tmp_path):
    images = [*IMAGES[:3], ("i3.png", "zebra", "a", GT, GT)]  # zebra: no model class
    run = write_two_map_run(tmp_path, images)
    result = _score(tmp_path, run, "auto")
    summary = result.summary.set_index("metric")
    assert "agnostic_loc" in summary.index and "gt_known_loc" not in summary.index
    assert summary.at["max_box_acc_v2", "map"] == "label+top1"
    assert result.meta.map_scored == "label+top1" and result.meta.agnostic


def test_per_class_uses_the_headline_thresholds_and_names_the_oracle(tmp_path):
    """Maps whose box is right only at high thresholds: the fixed 0.2 misses where the
    oracle hits, and per_class.csv reports both, each with its threshold and source."""
    images = [(f"j{k}.png", label, label, GT, GT) for k, label in enumerate("aabb")]
    run = write_two_map_run(tmp_path, images)
    # a faint halo around the object: at 0.2 the box takes it in (IoU 0.2), at 0.5 not
    maps = np.fromfile(run / "maps.f16", "<f2").reshape(-1, 10, 10).astype(np.float64)
    maps[:, :9, :9] = np.maximum(maps[:, :9, :9], 0.3)
    maps.astype("<f2").tofile(run / "maps.f16")
    result = _score(tmp_path, run, "rep", map_choice="label")
    summary = result.summary.set_index("metric")
    assert summary.at["gt_known_loc", "value"] == pytest.approx(0.0)
    assert summary.at["best_gt_known_loc", "value"] == pytest.approx(100.0)
    per_class = pd.read_csv(tmp_path / "rep" / "per_class.csv").set_index("class")
    assert list(per_class["gt_known_loc"]) == [0.0, 0.0]  # the headline's threshold
    assert set(per_class["threshold"]) == {summary.at["gt_known_loc", "threshold"]}
    assert set(per_class["threshold_source"]) == {"fixed"}
    assert list(per_class["best_gt_known_loc"]) == [100.0, 100.0]
    assert set(per_class["best_threshold"]) == {summary.at["best_gt_known_loc", "threshold"]}
    assert set(per_class["best_threshold_source"]) == {"oracle"}
    per_image = pd.read_csv(tmp_path / "rep" / "per_image.csv")
    assert set(per_image["threshold_source"]) == {"oracle"}
    table = terminal_table(result.summary)
    assert "source" in table.splitlines()[0]
    line = next(t for t in table.splitlines() if t.startswith("gt_known_loc "))
    assert "fixed" in line
    line = next(t for t in table.splitlines() if t.startswith("best_gt_known_loc "))
    assert "oracle" in line


def test_score_help_shows_a_plain_percent_sign():
    result = run_cli("score", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "95% intervals" in text and "95%%" not in text


def test_compare_names_top1_map_reports_agnostic_and_refuses_mixing_kinds(tmp_path):
    from acol_eval.comparison.compare import CompareConfig
    from acol_eval.comparison.compare import run as run_compare
    from acol_eval.util.errors import AcolError

    run = write_two_map_run(tmp_path, IMAGES)
    for out, choice in (("top1", "top1"), ("top1b", "top1"), ("label", "label")):
        _score(tmp_path, run, out, map_choice=choice)
    result = run_compare(CompareConfig(reports=(str(tmp_path / "top1"), str(tmp_path / "top1b")),
                                       out=str(tmp_path / "cmp"), bootstrap=0),
                         log=lambda line: None)
    board = result.leaderboard.set_index("method")
    assert "gt_known_loc" not in board.columns
    assert board["agnostic_loc"].tolist() == pytest.approx([50.0, 50.0])
    assert board["threshold"].tolist() == pytest.approx([0.2, 0.2])
    assert "agnostic_loc_diff" in result.pairs.columns
    assert "agnostic_loc" in (tmp_path / "cmp" / "report.html").read_text()
    with pytest.raises(AcolError, match="scored map"):
        run_compare(CompareConfig(reports=(str(tmp_path / "top1"), str(tmp_path / "label")),
                                  out=str(tmp_path / "cmp2"), bootstrap=0),
                    log=lambda line: None)
    assert not (tmp_path / "cmp2").exists()
