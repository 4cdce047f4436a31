"""The whole product on a small synthetic set: synth -> train -> localize -> score."""

import csv
import json

import numpy as np

from acol_eval.readers import read_source
from conftest import read_rows, run_cli


def summary(report):
    with open(report / "summary.csv", newline="") as handle:
        return {row["metric"]: float(row["value"]) for row in csv.DictReader(handle)
                if row["value"] not in ("", "nan")}


def test_trained_acol_beats_the_centre_baseline_by_20_points(tmp_path):
    data, train, run = tmp_path / "data", tmp_path / "train", tmp_path / "run"
    steps = [
        ["synth", str(data), "--classes", "3", "--train-per-class", "30",
         "--val-per-class", "12", "--size", "160", "--seed", "3"],
        ["train", "--data", f"cub:{data}", "--out", str(train), "--arch",
         "mobilenet_v2", "--weights", "imagenet", "--recipe", "pn", "--feature-stride", "16",
         "--input-size", "160", "--epochs", "4", "--lr", "0.002", "--batch-size", "16",
         "--workers", "0"],
        ["localize", f"cub:{data}", "--split", "test", "--out", str(run), "--checkpoint",
         str(train / "best.pt"), "--workers", "0"],
        ["score", str(run), "--annotations", f"cub:{data}", "--split", "test", "--out",
         str(tmp_path / "report"), "--cam-curve-interval", "0.01"],
        ["score", str(run), "--annotations", f"cub:{data}", "--split", "test", "--out",
         str(tmp_path / "baseline"), "--cam-curve-interval", "0.01", "--baseline", "centre"],
        ["score", str(run), "--annotations", f"cub:{data}", "--split", "test", "--out",
         str(tmp_path / "native"), "--protocol", "native"],
    ]
    for step in steps:
        result = run_cli(*step)
        assert result.returncode == 0, (step[0], result.stderr)
    model, centre = summary(tmp_path / "report"), summary(tmp_path / "baseline")
    assert model["cls_top1"] >= 90.0
    assert model["max_box_acc_v2"] >= centre["max_box_acc_v2"] + 20.0, (model, centre)

    # train had boxes (cub:), so best.pt carries a calibrated CAM threshold and localize,
    # given none, boxed with it (issue 10)
    record = json.loads((run / "run.json").read_text())
    assert record["cam_threshold_source"] == "checkpoint"
    native = {r["metric"]: r for r in read_rows(tmp_path / "native" / "summary.csv")}
    assert float(native["best_gt_known_loc"]["threshold"]) == round(
        record["cam_threshold"], 6)
    # GT-known of predictions.csv's boxes, from the boxes and the annotations, equals
    # score's best_gt_known_loc under --protocol native, image for image
    annotations = read_source(f"cub:{data}").split("test")
    truth = annotations.boxes.groupby("image")
    scored = {r["image"]: int(r["correct"]) for r in
              read_rows(tmp_path / "native" / "per_image.csv")}
    predictions = read_rows(run / "predictions.csv")
    agree = [p for p in predictions if p["pred_1"] == p["label"]]
    assert len(agree) >= 0.9 * len(predictions)
    for row in agree:  # the row's box is the top-1 map's; GT-known judges the label's
        correct = 0
        if row["x0"] != "":
            box = np.array([float(row[k]) for k in ("x0", "y0", "x1", "y1")])
            for gt in truth.get_group(row["image"])[["x0", "y0", "x1", "y1"]].to_numpy():
                w = max(0.0, min(box[2], gt[2]) - max(box[0], gt[0]))
                h = max(0.0, min(box[3], gt[3]) - max(box[1], gt[1]))
                union = np.prod(box[2:] - box[:2]) + np.prod(gt[2:] - gt[:2]) - w * h
                correct |= bool(w * h / union >= 0.5)
        assert correct == scored[row["image"]], row["image"]
    if len(agree) == len(predictions):
        assert np.isclose(100.0 * np.mean([scored[p["image"]] for p in predictions]),
                          float(native["best_gt_known_loc"]["value"]), atol=1e-4)
