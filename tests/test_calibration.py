"""Calibrating the CAM threshold: the calibration is score's best GT-known threshold on
the validation images, and localize's boxes at it reproduce that accuracy image for
image."""

from __future__ import annotations

import numpy as np

from acol_eval.calibration import calibrate, calibration_rows
from acol_eval.readers import read_source
from conftest import read_rows, synth_with_checkpoint


def _iou(box, gt):
    inter = (max(0.0, min(box[2], gt[2]) - max(box[0], gt[0]))
             * max(0.0, min(box[3], gt[3]) - max(box[1], gt[1])))
    union = ((box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1])
             - inter)
    return inter / union if union > 0 else 0.0


def test_localize_at_the_calibrated_threshold_gives_the_calibrated_accuracy(tmp_path):
    data, _ = synth_with_checkpoint(tmp_path, train_per_class=2, val_per_class=6)
    annotations = read_source(f"cub:{data}").split("test")
    images = sorted(annotations.images["image"])
    calibration = calibrate(tmp_path / "m.pt", annotations, images, tmp_path / "train",
                            workers=0)
    assert calibration is not None and calibration.images == len(images) == 18
    assert 0.0 <= calibration.threshold < 1.0
    # the label's map of each image, boxed as localize boxes its top-1 map, at the
    # calibrated threshold: GT-known must be the calibration's figure, image for image
    from acol_eval.boxes import native_boxes, upsample_map
    from acol_eval.mapstore import open_maps

    store = open_maps(tmp_path / "train" / "calibration" / "run")
    labelled = store.index[store.index["is_label"] == 1]
    sizes = annotations.images.set_index("image")
    root = str(annotations.root.resolve())
    right = 0
    for row in labelled.itertuples():
        name = row.image[len(root) + 1:]
        width, height = (int(sizes.at[name, k]) for k in ("width", "height"))
        cam = upsample_map(np.asarray(store.maps[row.row], np.float64), width, height)
        found = native_boxes(cam, calibration.threshold)
        gt = annotations.boxes[annotations.boxes["image"] == name][
            ["x0", "y0", "x1", "y1"]].to_numpy()
        right += len(found) > 0 and max(_iou(found[0], g) for g in gt) >= 0.5
    assert len(labelled) == 18
    assert 100.0 * right / len(labelled) == calibration.gt_known
    report = read_rows(tmp_path / "train" / "calibration" / "report" / "per_image.csv")
    assert sum(int(r["correct"]) for r in report) == right


def test_images_without_boxes_give_no_calibration(tmp_path):
    data, _ = synth_with_checkpoint(tmp_path, train_per_class=2, val_per_class=2)
    annotations = read_source(f"cub:{data}").split("test")
    annotations.boxes = annotations.boxes.iloc[0:0]
    assert calibration_rows(annotations, list(annotations.images["image"])) == []
    assert calibrate(tmp_path / "m.pt", annotations, list(annotations.images["image"]),
                     tmp_path / "train", workers=0) is None
    assert not (tmp_path / "train").exists()
