"""The whole product on a small synthetic set: synth -> train -> localize -> score."""

import csv

from conftest import run_cli


def summary(report):
    with open(report / "summary.csv", newline="") as handle:
        return {row["metric"]: float(row["value"]) for row in csv.DictReader(handle)
                if row["value"] not in ("", "nan")}


def test_trained_acol_beats_the_centre_baseline_by_20_points(tmp_path):
    data, train, run = tmp_path / "data", tmp_path / "train", tmp_path / "run"
    steps = [
        ["synth", str(data), "--classes", "3", "--train-per-class", "30",
         "--val-per-class", "12", "--size", "160", "--seed", "3"],
        ["train", "--data", str(data / "images"), "--out", str(train), "--arch",
         "mobilenet_v2", "--weights", "imagenet", "--recipe", "pn", "--feature-stride", "16",
         "--input-size", "160", "--epochs", "4", "--lr", "0.002", "--batch-size", "16",
         "--workers", "0"],
        ["localize", f"cub:{data}", "--split", "test", "--out", str(run), "--checkpoint",
         str(train / "best.pt"), "--workers", "0"],
        ["score", str(run), "--annotations", f"cub:{data}", "--split", "test", "--out",
         str(tmp_path / "report"), "--cam-curve-interval", "0.01"],
        ["score", str(run), "--annotations", f"cub:{data}", "--split", "test", "--out",
         str(tmp_path / "baseline"), "--cam-curve-interval", "0.01", "--baseline", "centre"],
    ]
    for step in steps:
        result = run_cli(*step)
        assert result.returncode == 0, (step[0], result.stderr)
    model, centre = summary(tmp_path / "report"), summary(tmp_path / "baseline")
    assert model["cls_top1"] >= 90.0
    assert model["max_box_acc_v2"] >= centre["max_box_acc_v2"] + 20.0, (model, centre)
