"""`score` on random maps against MaxBoxAcc, MaxBoxAccV2 and PxAP computed here, from
wsolevaluation's definitions, with numpy and OpenCV alone (conftest's reference_*).

Thirty images of random sizes with one to three random boxes, maps of random shapes
(noise plus a blob near, or far from, the first box), and a mask set with ignore
regions for PxAP. The oracle loops over images and thresholds as wsolevaluation does:
per threshold the uint8 map's contours, their boxes, the inclusive IoU; per IoU
threshold the best accuracy over the CAM thresholds; MaxBoxAccV2 the mean over 30, 50
and 70 (every contour's box), MaxBoxAcc the largest contour (cv2.contourArea) at 50.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from acol_eval.scoring.scoring import ScoreConfig, score
from conftest import (
    reference_best_iou,
    reference_boxes,
    reference_gt224,
    reference_pxap,
    reference_scores,
    reference_uint8,
    run_cli,
    write_wsol_metadata,
)

INTERVAL = 0.01  # a coarse grid keeps the oracle fast; score is given the same one
GRID = np.arange(0, 1, INTERVAL)
IMAGES = 30
IOU = (30, 50, 70)


def random_set(root: Path, seed: int = 11) -> list[dict]:
    """Images (size, boxes, map) with their maps saved as ROOT/maps/<id>.npy."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(IMAGES):
        width, height = int(rng.integers(60, 400)), int(rng.integers(60, 400))
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            w = int(rng.integers(width // 6, width * 3 // 4))
            h = int(rng.integers(height // 6, height * 3 // 4))
            x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            boxes.append([x0, y0, x0 + w, y0 + h])
        mh, mw = (int(v) for v in rng.choice([7, 14, 28, 33], 2))  # not always square
        heat = rng.random((mh, mw)) ** 3
        # a blob near the first box for most images, anywhere for the rest
        x0, y0, x1, y1 = boxes[0]
        cx, cy = ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height) if i % 4 else rng.random(2)
        yy, xx = np.mgrid[0:mh, 0:mw]
        spread = rng.uniform(0.02, 0.12)
        heat += np.exp(-((xx / mw - cx) ** 2 + (yy / mh - cy) ** 2) / spread)
        image_id = f"cls{i % 3}/img{i:02d}.jpg"
        path = root / "maps" / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, heat.astype(np.float32))
        images.append({"id": image_id, "cls": str(i % 3), "width": width, "height": height,
                       "boxes": boxes, "map": np.load(path)})
    return images


def oracle_box_metrics(images: list[dict]) -> dict[str, tuple[float, float]]:
    """metric -> (value in percent, CAM threshold), as summary.csv names them."""
    v1 = np.zeros(len(GRID))
    v2 = {k: np.zeros(len(GRID)) for k in IOU}
    for image in images:
        u8 = reference_uint8(image["map"])
        gt = reference_gt224(image["boxes"], image["width"], image["height"])
        for index, t in enumerate(GRID):
            every, largest = reference_boxes(u8, t)
            v1[index] += reference_best_iou(largest, gt) >= 0.5
            best = reference_best_iou(every, gt)
            for k in IOU:
                v2[k][index] += best >= k / 100
    count = float(len(images))
    accuracy = v1 * 100.0 / count
    fixed = int(np.argmin(np.abs(GRID - 0.2)))
    found = {"gt_known_loc": (accuracy[fixed], GRID[fixed]),
             "best_gt_known_loc": (accuracy.max(), GRID[int(np.argmax(accuracy))]),
             "max_box_acc": (accuracy.max(), GRID[int(np.argmax(accuracy))])}
    for k in IOU:
        curve = v2[k] * 100.0 / count
        found[f"max_box_acc_v2@{k}"] = (curve.max(), GRID[int(np.argmax(curve))])
    found["max_box_acc_v2"] = (sum(found[f"max_box_acc_v2@{k}"][0] for k in IOU) / len(IOU),
                               np.nan)
    return found


def write_box_metadata(root: Path, images: list[dict]) -> Path:
    return write_wsol_metadata(
        root / "boxes",
        [(m["id"], m["cls"], m["width"], m["height"]) for m in images],
        [f"{m['id']},{','.join(str(v) for v in box)}" for m in images for box in m["boxes"]])


def write_masks(root: Path, images: list[dict], seed: int = 12) -> tuple[Path, list[np.ndarray]]:
    """An OpenImages-style mask set (one or two instance masks per image, an ignore
    region for every third image) and, per image, the 224x224 mask wsolevaluation builds
    from it: 1 foreground, 0 background, 255 ignored."""
    rng = np.random.default_rng(seed)
    lines, masks224 = [], []
    side = (224, 224)
    for n, image in enumerate(images):
        width, height = image["width"], image["height"]
        instances = []
        for k, (x0, y0, x1, y1) in enumerate(image["boxes"][:2]):
            mask = np.zeros((height, width), np.uint8)
            cv2.ellipse(mask, ((x0 + x1) // 2, (y0 + y1) // 2),
                        (max(1, (x1 - x0) // 2), max(1, (y1 - y0) // 2)), 0, 0, 360, 255, -1)
            name = image["id"].replace(".jpg", f"_m{k}.png")
            (root / "masks" / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "masks" / name), mask)
            instances.append((name, mask))
        ignore_name, ignore = "", None
        if n % 3 == 0:
            ignore = np.zeros((height, width), np.uint8)
            gx, gy = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
            ignore[gy:gy + height // 3, gx:gx + width // 3] = 255
            ignore_name = image["id"].replace(".jpg", "_ignore.png")
            cv2.imwrite(str(root / "masks" / ignore_name), ignore)
        lines += [f"{image['id']},{name},{ignore_name}" for name, _ in instances]
        # wsolevaluation's get_mask: float32, nearest to 224x224, > 0.5, union of instances
        foreground = np.stack([cv2.resize(np.float32(m), side, interpolation=cv2.INTER_NEAREST)
                               > 0.5 for _, m in instances]).any(axis=0)
        combined = foreground.astype(np.uint8)
        if ignore is not None:
            region = cv2.resize(np.float32(ignore), side, interpolation=cv2.INTER_NEAREST) > 0.5
            combined[region & ~foreground] = 255
        masks224.append(combined)
    meta = write_wsol_metadata(root / "openimages",
                               [(m["id"], m["cls"], m["width"], m["height"]) for m in images],
                               lines)
    return meta, masks224


def summary_of(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    return {r.metric: (float(r.value), float(r.threshold)) for r in frame.itertuples()}


@pytest.fixture(scope="module")
def random_boxes(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    images = random_set(root)
    return root, images, oracle_box_metrics(images)


def test_the_random_set_is_not_trivial(random_boxes):
    """Accuracies strictly between 0 and 100 and thresholds off the grid's ends: a
    wrong map, box or IoU would move them."""
    _, _, expected = random_boxes
    for metric, (value, threshold) in expected.items():
        assert 0 < value < 100, metric
        assert np.isnan(threshold) or 0 < threshold < GRID[-1], metric


def test_score_equals_the_oracle_on_random_maps(random_boxes, tmp_path):
    root, images, expected = random_boxes
    meta = write_box_metadata(tmp_path, images)
    result = score(ScoreConfig(run=str(root / "maps"), annotations=f"wsol:{meta}",
                               out=str(tmp_path / "report"), interval=INTERVAL, workers=0))
    found = summary_of(result.summary)
    for metric, (value, threshold) in expected.items():
        assert found[metric][0] == pytest.approx(value, abs=1e-9), metric
        if not np.isnan(threshold):
            assert found[metric][1] == pytest.approx(threshold, abs=1e-12), metric
    assert found["max_box_acc"][0] == found["best_gt_known_loc"][0]


def test_pxap_equals_the_oracle_on_random_maps(random_boxes, tmp_path):
    root, images, _ = random_boxes
    meta, masks = write_masks(tmp_path, images)
    expected = reference_pxap([reference_scores(m["map"]) for m in images], masks, GRID)
    assert 10 < expected < 90
    result = score(ScoreConfig(run=str(root / "maps"), annotations=f"wsol:{meta}",
                               out=str(tmp_path / "report"), interval=INTERVAL, workers=0,
                               mask_root=str(tmp_path / "masks")))
    found = summary_of(result.summary)
    assert found["pxap"][0] == pytest.approx(expected, abs=1e-9)


@pytest.mark.slow
def test_the_cli_prints_the_oracle_to_the_last_digit(random_boxes, tmp_path):
    """stdout's headline (two decimals) and summary.csv (six significant digits) as the
    oracle's figures print at those precisions."""
    root, images, expected = random_boxes
    meta, masks = write_masks(tmp_path, images)
    expected = {**expected, "pxap": (reference_pxap(
        [reference_scores(m["map"]) for m in images], masks, GRID), np.nan)}
    runs = (("boxes", write_box_metadata(tmp_path, images), []),
            ("pxap", meta, ["--mask-root", str(tmp_path / "masks")]))
    for name, source, extra in runs:
        out = tmp_path / name
        result = run_cli("score", str(root / "maps"), "--annotations", f"wsol:{source}",
                         "--out", str(out), "--cam-curve-interval", str(INTERVAL),
                         "--workers", "0", *extra)
        assert result.returncode == 0, result.stderr
        printed = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()
                   if line.split() and line.split()[0] in expected}
        written = {r["metric"]: r["value"] for r in
                   pd.read_csv(out / "summary.csv", dtype=str).to_dict("records")}
        metrics = ["pxap"] if name == "pxap" else [m for m in expected if m != "pxap"]
        for metric in metrics:
            value = expected[metric][0]
            assert printed[metric] == f"{value:.2f}", (metric, result.stdout)
            assert written[metric] == f"{value:.6g}", metric
