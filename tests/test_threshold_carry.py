"""Thresholds carry: `score` of a run boxed at a calibrated threshold reads its fixed rows
at that threshold and says so; `--threshold-from` across protocols is refused with the
command that makes a usable report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from acol_eval.maps.thresholds import threshold_from_report
from acol_eval.scoring.scoring import ScoreConfig, score
from acol_eval.util.errors import AcolError
from conftest import make_checkpoint, run_localize
from tests.test_metric_names import GT, write_two_map_run

IMAGES = [(f"h{k}.png", label, label, GT, GT) for k, label in enumerate("aabb")]


def halo_run(folder, threshold=None, source=None):
    """Four images whose box is right above a CAM threshold of 0.3 and wrong below it
    (a faint halo around the object); run.json records how the run boxed."""
    run = write_two_map_run(folder, IMAGES)
    maps = np.fromfile(run / "maps.f16", "<f2").reshape(-1, 10, 10).astype(np.float64)
    maps[:, :9, :9] = np.maximum(maps[:, :9, :9], 0.3)
    maps.astype("<f2").tofile(run / "maps.f16")
    if threshold is not None:
        (run / "run.json").write_text(json.dumps({"cam_threshold": threshold,
                                                  "cam_threshold_source": source}))
    return run


def _score(folder, run, out, **options):
    options.setdefault("protocol", "native")
    return score(ScoreConfig(run=str(run), annotations=f"csv:{folder / 'ann.csv'}",
                             out=str(folder / out), workers=0, interval=0.01,
                             **options)).summary.set_index("metric")


@pytest.mark.parametrize("protocol", ["native", "wsoleval"])
def test_a_calibrated_run_scores_its_fixed_rows_at_its_threshold(tmp_path, protocol):
    run = halo_run(tmp_path, 0.5, "checkpoint")
    summary = _score(tmp_path, run, "rep", protocol=protocol)
    for metric in ("gt_known_loc", "top1_loc"):
        assert summary.at[metric, "threshold"] == pytest.approx(0.5)
        assert summary.at[metric, "threshold_source"] == "run:checkpoint-calibrated"
    assert summary.at["gt_known_loc", "value"] == pytest.approx(100.0)  # 0.2 gives 0
    per_class = pd.read_csv(tmp_path / "rep" / "per_class.csv")
    assert set(per_class["threshold_source"]) == {"run:checkpoint-calibrated"}


def test_what_the_user_says_wins_and_a_default_run_is_not_carried(tmp_path):
    run = halo_run(tmp_path, 0.5, "checkpoint")
    given = _score(tmp_path, run, "given", threshold=0.25)
    assert given.at["gt_known_loc", "threshold"] == pytest.approx(0.25)
    assert given.at["gt_known_loc", "threshold_source"] == "fixed"
    centre = _score(tmp_path, run, "centre", baseline="centre")  # not the run's maps
    assert centre.at["gt_known_loc", "threshold"] == pytest.approx(0.2)
    (run / "run.json").write_text(json.dumps({"cam_threshold": 0.2,
                                              "cam_threshold_source": "default"}))
    default = _score(tmp_path, run, "default")
    assert default.at["gt_known_loc", "threshold_source"] == "fixed"
    assert default.at["gt_known_loc", "value"] == pytest.approx(0.0)
    (run / "run.json").write_text(json.dumps({"cam_threshold": 0.45,
                                              "cam_threshold_source": "flag"}))
    flag = _score(tmp_path, run, "flag")
    assert flag.at["gt_known_loc", "threshold_source"] == "run:cam-threshold"


def test_localize_with_a_calibrated_checkpoint_then_score_scores_its_boxes(tmp_path):
    """The real pipeline: the fixed rows of `score --protocol native` are the accuracy of
    predictions.csv's own boxes (where the top-1 class is the label, its map is the
    label's, the box the same)."""
    from acol_eval.data.readers import read_source
    from acol_eval.data.synth import SynthConfig, class_names, write_synth

    write_synth(tmp_path / "s", SynthConfig(classes=3, train_per_class=1, val_per_class=4,
                                            size=64))
    grid = np.arange(0, 1, 0.01)
    calibrated = float(grid[47])
    make_checkpoint(tmp_path / "m.pt", recipe="p", classes=class_names(3),
                    cam_threshold=calibrated, cam_threshold_source="calibrated on val")
    run_localize(f"cub:{tmp_path / 's'}", tmp_path / "run", checkpoint=str(tmp_path / "m.pt"),
                 split="test", top_k=1, device="cpu")
    summary = score(ScoreConfig(run=str(tmp_path / "run"), annotations=f"cub:{tmp_path / 's'}",
                                split="test", out=str(tmp_path / "rep"), protocol="native",
                                interval=0.01, workers=0)).summary.set_index("metric")
    assert summary.at["gt_known_loc", "threshold"] == calibrated
    assert summary.at["gt_known_loc", "threshold_source"] == "run:checkpoint-calibrated"
    annotations = read_source(f"cub:{tmp_path / 's'}").split("test")
    rows = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert (rows["cam_threshold"] == calibrated).all()
    labels = annotations.images.set_index("image")["label"]
    right = 0
    for row in rows.itertuples():
        gt = annotations.boxes[annotations.boxes["image"] == row.image][
            ["x0", "y0", "x1", "y1"]].to_numpy(float)
        box = np.array([row.x0, row.y0, row.x1, row.y1], float)
        inter = (np.clip(np.minimum(box[2], gt[:, 2]) - np.maximum(box[0], gt[:, 0]), 0, None)
                 * np.clip(np.minimum(box[3], gt[:, 3]) - np.maximum(box[1], gt[:, 1]), 0,
                           None))
        union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[:, 2] - gt[:, 0]) * (
            gt[:, 3] - gt[:, 1]) - inter
        right += row.pred_1 == labels[row.image] and (inter / union).max() >= 0.5
    assert summary.at["top1_loc", "value"] == pytest.approx(100.0 * right / len(rows))


def test_threshold_from_across_protocols_names_the_command(tmp_path):
    run = halo_run(tmp_path)
    _score(tmp_path, run, "wsol", protocol="wsoleval")
    source = f"csv:{tmp_path / 'ann.csv'}"
    expected = (f"acol-eval score {run.resolve()} --annotations {source} --protocol native "
                f"--out {tmp_path / 'wsol'}-native")
    with pytest.raises(AcolError) as boxes_error:  # localize and boxes read it this way
        threshold_from_report(tmp_path / "wsol")
    assert expected in str(boxes_error.value)
    _score(tmp_path, run, "native")
    with pytest.raises(AcolError) as score_error:
        _score(tmp_path, run, "other", protocol="wsoleval",
               threshold_from=str(tmp_path / "native"))
    assert (f"acol-eval score {run.resolve()} --annotations {source} --protocol wsoleval "
            f"--out {tmp_path / 'native'}-wsoleval") in str(score_error.value)
    assert not (tmp_path / "other").exists()


def test_a_report_of_top1_maps_gives_localize_its_threshold(tmp_path):
    run = halo_run(tmp_path)
    summary = _score(tmp_path, run, "top1", map_choice="top1")
    value, _ = threshold_from_report(tmp_path / "top1")
    assert value == summary.at["best_agnostic_loc", "threshold"]
    # and score --threshold-from takes it for the label's figure of another score
    other = _score(tmp_path, run, "label", map_choice="label",
                   threshold_from=str(tmp_path / "top1"))
    assert other.at["best_gt_known_loc", "threshold_source"] == f"from:{tmp_path / 'top1'}"
    assert other.at["best_gt_known_loc", "threshold"] == value
