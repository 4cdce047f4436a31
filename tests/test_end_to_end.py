"""The whole product on a small synthetic set: synth -> train -> localize -> score."""

import csv
import json

import numpy as np
import pytest

from acol_eval.data.readers import read_source
from conftest import read_rows, reference_iou_exclusive, reference_native_box, run_cli


def summary(report):
    with open(report / "summary.csv", newline="") as handle:
        return {row["metric"]: float(row["value"]) for row in csv.DictReader(handle)
                if row["value"] not in ("", "nan")}


@pytest.mark.slow
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
    # given none, boxed with it
    record = json.loads((run / "run.json").read_text())
    assert record["cam_threshold_source"] == "checkpoint"
    native = {r["metric"]: r for r in read_rows(tmp_path / "native" / "summary.csv")}
    assert float(native["best_gt_known_loc"]["threshold"]) == round(
        record["cam_threshold"], 6)
    # The headline, recomputed here from the map store (read with numpy as its format
    # describes) and the annotations, with the native protocol's definition written in
    # conftest (OpenCV resize, scipy labelling): the label's map of every image, boxed
    # at the calibrated threshold; GT-known is IoU >= 0.5 against some box.
    meta = json.loads((run / "maps.json").read_text())
    maps = np.fromfile(run / "maps.f16", dtype="<f2").reshape(
        meta["count"], meta["height"], meta["width"])
    labelled = {r["image"]: int(r["row"]) for r in read_rows(run / "maps_index.csv")
                if r["is_label"] == "1"}
    annotations = read_source(f"cub:{data}").split("test")
    truth = annotations.boxes.groupby("image")
    sizes = annotations.images.set_index("image")
    root = str(annotations.root.resolve())
    scored = {r["image"]: int(float(r["correct"])) for r in
              read_rows(tmp_path / "native" / "per_image.csv")}
    assert len(labelled) == len(sizes) == len(scored) > 0
    right = {}
    for image, row in labelled.items():
        name = image[len(root) + 1:] if image.startswith(root) else image
        width, height = (int(sizes.at[name, k]) for k in ("width", "height"))
        box = reference_native_box(maps[row], width, height, record["cam_threshold"])
        gts = truth.get_group(name)[["x0", "y0", "x1", "y1"]].to_numpy()
        right[name] = int(box is not None and
                          max(reference_iou_exclusive(box, g) for g in gts) >= 0.5)
    by_name = {k[len(root) + 1:] if k.startswith(root) else k: v for k, v in scored.items()}
    assert right == by_name
    headline = 100.0 * sum(right.values()) / len(right)
    assert float(native["best_gt_known_loc"]["value"]) == float(f"{headline:.6g}")
    # predictions.csv's box is the top-1 map's: where top-1 is the label, it is the one
    # GT-known judged
    predictions = read_rows(run / "predictions.csv")
    agree = [p for p in predictions if p["pred_1"] == p["label"]]
    assert len(agree) >= 0.9 * len(predictions)
    for row in agree:
        name = row["image"][len(root) + 1:] if row["image"].startswith(root) else row["image"]
        correct = 0
        if row["x0"] != "":
            box = [float(row[k]) for k in ("x0", "y0", "x1", "y1")]
            correct = int(any(reference_iou_exclusive(box, g) >= 0.5 for g in
                              truth.get_group(name)[["x0", "y0", "x1", "y1"]].to_numpy()))
        assert correct == right[name], name
