"""Calibrating the CAM threshold: the calibration is score's best GT-known threshold on
the validation images, and localize's boxes at it reproduce that accuracy image for
image."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from acol_eval.data.readers import read_source
from acol_eval.training.calibration import calibrate, calibration_rows
from conftest import (
    read_rows,
    reference_iou_exclusive,
    reference_native_box,
    synth_with_checkpoint,
)

GRID = np.arange(0, 1, 0.001)  # score's default grid, which calibration uses


def label_maps(run: Path, root: str) -> dict[str, np.ndarray]:
    """image (relative to the annotation root) -> its label's map, read from the map
    store with numpy as the store's format describes it."""
    meta = json.loads((run / "maps.json").read_text())
    maps = np.fromfile(run / "maps.f16", dtype="<f2").reshape(
        meta["count"], meta["height"], meta["width"])
    return {r["image"][len(root) + 1:]: maps[int(r["row"])].astype(np.float64)
            for r in read_rows(run / "maps_index.csv") if r["is_label"] == "1"}


def gt_known_curve(maps: dict[str, np.ndarray], annotations) -> np.ndarray:
    """(images, thresholds) 0/1: the label map's native box at every grid threshold has
    IoU >= 0.5 with some ground-truth box (conftest's reference, not the package)."""
    sizes = annotations.images.set_index("image")
    boxes = annotations.boxes.groupby("image")
    right = np.zeros((len(maps), len(GRID)), bool)
    for n, (name, cam) in enumerate(sorted(maps.items())):
        width, height = (int(sizes.at[name, k]) for k in ("width", "height"))
        gts = boxes.get_group(name)[["x0", "y0", "x1", "y1"]].to_numpy()
        big = cv2.resize(cam, (width, height), interpolation=cv2.INTER_CUBIC)  # once
        for i, t in enumerate(GRID):
            box = reference_native_box(big, width, height, t)
            right[n, i] = box is not None and max(
                reference_iou_exclusive(box, g) for g in gts) >= 0.5
    return right


@pytest.mark.slow
def test_localize_at_the_calibrated_threshold_gives_the_calibrated_accuracy(tmp_path):
    data, _ = synth_with_checkpoint(tmp_path, train_per_class=2, val_per_class=6)
    annotations = read_source(f"cub:{data}").split("test")
    images = sorted(annotations.images["image"])
    calibration = calibrate(tmp_path / "m.pt", annotations, images, tmp_path / "train",
                            workers=0)
    assert calibration is not None and calibration.images == len(images) == 18
    # the best GT-known threshold, first of the best ones, found here from the maps
    root = str(annotations.root.resolve())
    curve = 100.0 * gt_known_curve(label_maps(tmp_path / "train" / "calibration" / "run", root),
                                   annotations).mean(axis=0)
    assert calibration.threshold == GRID[int(np.argmax(curve))]
    assert calibration.gt_known == curve.max()
    # the label's map of each image, boxed as localize boxes its top-1 map, at the
    # calibrated threshold: GT-known must be the calibration's figure, image for image
    from acol_eval.maps.boxes import native_boxes, upsample_map
    from acol_eval.maps.mapstore import open_maps

    store = open_maps(tmp_path / "train" / "calibration" / "run")
    labelled = store.index[store.index["is_label"] == 1]
    sizes = annotations.images.set_index("image")
    right = 0
    for row in labelled.itertuples():
        name = row.image[len(root) + 1:]
        width, height = (int(sizes.at[name, k]) for k in ("width", "height"))
        cam = upsample_map(np.asarray(store.maps[row.row], np.float64), width, height)
        found = native_boxes(cam, calibration.threshold)
        gt = annotations.boxes[annotations.boxes["image"] == name][
            ["x0", "y0", "x1", "y1"]].to_numpy()
        right += len(found) > 0 and max(reference_iou_exclusive(found[0], g) for g in gt) >= 0.5
    assert len(labelled) == 18
    assert 100.0 * right / len(labelled) == calibration.gt_known
    report = read_rows(tmp_path / "train" / "calibration" / "report" / "per_image.csv")
    assert sum(int(r["correct"]) for r in report) == right


@pytest.mark.slow
def test_calibration_picks_the_first_threshold_of_the_one_best_range(tmp_path):
    """Ground truth made from the model's own maps: every image's box is its label map's
    native box at 0.5, so GT-known is 100% on one range of thresholds around 0.5 (and
    lower elsewhere); calibration must pick that range's first threshold."""
    data, _ = synth_with_checkpoint(tmp_path, train_per_class=2, val_per_class=6)
    annotations = read_source(f"cub:{data}").split("test")
    images = sorted(annotations.images["image"])
    root = str(annotations.root.resolve())
    first = calibrate(tmp_path / "m.pt", annotations, images, tmp_path / "a", workers=0)
    assert first is not None
    maps = label_maps(tmp_path / "a" / "calibration" / "run", root)
    sizes = annotations.images.set_index("image")
    rows = []
    for name, cam in sorted(maps.items()):
        width, height = (int(sizes.at[name, k]) for k in ("width", "height"))
        rows.append([name, *(float(v) for v in reference_native_box(cam, width, height, 0.5))])
    annotations.boxes = annotations.boxes.iloc[0:0].__class__(
        rows, columns=["image", "x0", "y0", "x1", "y1"])
    all_right = gt_known_curve(maps, annotations).all(axis=0)
    best = np.flatnonzero(all_right)
    assert len(best) and np.array_equal(best, np.arange(best[0], best[-1] + 1)), "one range"
    assert 0.2 < GRID[best[0]] <= 0.5 < GRID[best[-1]]
    calibration = calibrate(tmp_path / "m.pt", annotations, images, tmp_path / "b", workers=0)
    assert calibration is not None and calibration.gt_known == 100.0
    assert calibration.threshold == GRID[best[0]]
    # the second calibration localized the same maps
    assert all(np.array_equal(maps[k], v) for k, v in
               label_maps(tmp_path / "b" / "calibration" / "run", root).items())


def test_images_without_boxes_give_no_calibration(tmp_path):
    data, _ = synth_with_checkpoint(tmp_path, train_per_class=2, val_per_class=2)
    annotations = read_source(f"cub:{data}").split("test")
    annotations.boxes = annotations.boxes.iloc[0:0]
    assert calibration_rows(annotations, list(annotations.images["image"])) == []
    assert calibrate(tmp_path / "m.pt", annotations, list(annotations.images["image"]),
                     tmp_path / "train", workers=0) is None
    assert not (tmp_path / "train").exists()


@pytest.mark.slow
def test_a_source_without_a_val_split_warns_and_its_threshold_says_it_saw_the_test_split(
        tmp_path):
    """cub: has train and test only: validation falls back to the test split (as the
    contract says), so train warns, and the checkpoint's threshold names where it came
    from; with --val-fraction it is held out of train and says validation."""
    from acol_eval.data.synth import SynthConfig, write_synth
    from acol_eval.models.checkpoint import Checkpoint
    from acol_eval.training.trainconfig import TrainConfig
    from acol_eval.training.trainer import train

    # objects of 75-90% of the side: even an untrained model's boxes reach IoU 0.5 at
    # some threshold, so there is a threshold to calibrate
    data = tmp_path / "data"
    write_synth(data, SynthConfig(classes=2, train_per_class=5, val_per_class=3, size=48,
                                  min_scale=0.75, max_scale=0.9))
    tiny = dict(data=f"cub:{data}", arch="resnet18", weights="none", input_size=64,
                feature_stride=16, batch_size=4, epochs=1, workers=0, cache="off")
    lines: list[str] = []
    train(TrainConfig(out=str(tmp_path / "a"), **tiny), log=lines.append)
    warned = [line for line in lines if line.startswith("warning:")]
    assert len(warned) == 1 and "validation (best.pt and the CAM threshold) is its test " \
        "split" in warned[0] and "--val-fraction 0.2" in warned[0]
    source = Checkpoint.load(tmp_path / "a" / "best.pt").cam_threshold_source
    assert "on 6 test-split images (no val split; not held out from a test score)" in source
    lines.clear()
    train(TrainConfig(out=str(tmp_path / "b"), val_fraction=0.4, **tiny), log=lines.append)
    assert not [line for line in lines if line.startswith("warning:")]
    source = Checkpoint.load(tmp_path / "b" / "best.pt").cam_threshold_source
    assert "on 4 validation images with boxes" in source
