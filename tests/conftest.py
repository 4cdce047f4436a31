"""Shared fixtures: tiny data sets made here, the optional real data, CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from acol_eval.data.synth import background, texture

# pytest imports this file as the module `conftest` (tests/ is no package); importing it
# as `tests.conftest` would make a second copy with its own state, so that is refused.
if __name__ != "conftest":
    raise ImportError(f"import the test helpers as `from conftest import ...`, not as "
                      f"{__name__}")

ROOT = Path(__file__).resolve().parents[1]
SHARED_ENV = "ACOL_EVAL_SHARED_DATA"


def shared_data() -> Path:
    """../shared/data, found through ACOL_EVAL_SHARED_DATA (set by `make test`)."""
    value = os.environ.get(SHARED_ENV)
    if not value or not Path(value).is_dir():
        pytest.skip(f"real data not available ({SHARED_ENV} is not set to a folder)")
    return Path(value)


def write_texture_folder(
    root: Path, train_per_class: int = 40, val_per_class: int = 16, size: int = 64, seed: int = 0
) -> Path:
    """Two classes of squares told apart only by texture (stripes vs checker)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name, kind in (("checker", "checker"), ("stripes", "stripes")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = background(rng, size)
                side = int(rng.integers(size // 3, size // 2 + 1))
                x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
                pattern = texture(kind, side, int(rng.integers(6, 10)), rng.uniform(0, 6.3))
                a, b = rng.uniform(0, 90, 3), rng.uniform(165, 255, 3)
                image[y0:y0 + side, x0:x0 + side] = a + (b - a) * pattern[..., None]
                cv2.imwrite(str(folder / f"{name}_{i:03d}.png"),
                            np.clip(image, 0, 255).astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def texture_folder(tmp_path_factory) -> Path:
    return write_texture_folder(tmp_path_factory.mktemp("textures"))


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run `acol-eval` in a fresh process, as a user would."""
    full_env = {**os.environ, "ACOL_EVAL_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def write_wsol_metadata(folder: Path, images: list[tuple[str, str, int, int]],
                        localization: list[str]) -> Path:
    """A wsolevaluation metadata folder: `images` as (path, class id, width, height),
    `localization` as the lines of localization.txt (boxes or OpenImages mask lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "image_ids.txt").write_text("".join(f"{p}\n" for p, _, _, _ in images))
    (folder / "class_labels.txt").write_text("".join(f"{p},{c}\n" for p, c, _, _ in images))
    (folder / "image_sizes.txt").write_text(
        "".join(f"{p},{w},{h}\n" for p, _, w, h in images))
    (folder / "localization.txt").write_text("".join(f"{line}\n" for line in localization))
    return folder


# --------------------------------------------------------------------------- localize helpers

CLASSES = ["checker", "stripes", "third"]


def make_checkpoint(path: Path, recipe: str = "pp", zero_heads: bool = False, seed: int = 0,
                    classes: list[str] = CLASSES, **fields):
    """A small resnet18 (stride 16, input 64) acol-eval checkpoint at `path`; `fields`
    override checkpoint entries (input_size=0 makes a broken one). Returns the model."""
    import torch

    from acol_eval.data.datasets import IMAGENET_MEAN, IMAGENET_STD
    from acol_eval.models.checkpoint import save_checkpoint
    from acol_eval.models.model import build_model

    torch.manual_seed(seed)
    model = build_model("resnet18", len(classes), recipe, [0.5], "linear", 16)
    if zero_heads:
        for head in model.heads:
            torch.nn.init.zeros_(head.classifier.weight)
            torch.nn.init.zeros_(head.classifier.bias)
    save_checkpoint(path, {
        "arch": "resnet18", "recipe": recipe, "deltas": [0.5], "head": "linear",
        "feature_stride": 16, "classes": classes, "input_size": 64,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "state_dict": model.state_dict(), "epoch": 0, **fields,
    })
    return model.eval()


def synth_with_checkpoint(tmp_path: Path, train_per_class: int, val_per_class: int):
    """A small synth set under tmp_path/s and a recipe-p checkpoint tmp_path/m.pt over
    its classes; returns (folder, class names)."""
    from acol_eval.data.synth import SynthConfig, class_names, write_synth

    write_synth(tmp_path / "s", SynthConfig(classes=3, train_per_class=train_per_class,
                                            val_per_class=val_per_class, size=64))
    names = class_names(3)
    make_checkpoint(tmp_path / "m.pt", recipe="p", classes=names)
    return tmp_path / "s", names


def run_localize(images, out, log=None, **options):
    """`localize` in this process (decoding in the main process unless `workers` is
    given); returns its LocalizeResult."""
    from acol_eval.maps.localization import localize
    from acol_eval.maps.localizeconfig import LocalizeConfig

    options.setdefault("workers", 0)
    config = LocalizeConfig(images=str(images), out=str(out), **options)
    return localize(config, log=log or (lambda message: None))


def read_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def tree_state(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for folders): equal states mean
    nothing was created, removed or changed."""
    state: dict[str, bytes | None] = {}
    for path in sorted(Path(folder).rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            state[key] = b"<special>"
        else:
            state[key] = None if path.is_dir() else path.read_bytes()
    return state


def write_images(folder: Path, names: list[str], size: tuple[int, int] = (72, 56),
                 seed: int = 0) -> Path:
    """Small random-texture images at `folder/name` (format from the extension)."""
    rng = np.random.default_rng(seed)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0], 3), np.uint8),
                                 (0, 0), 2)
        assert cv2.imwrite(str(path), image), path
    return folder


# --------------------------------------------------------------------------- wsoleval reference
# Written from wsolevaluation's definitions with numpy and OpenCV only: nothing here
# calls acol_eval, so a test that compares the package with these functions checks the
# package against something other than itself.

WSOLEVAL_SIDE = 224


def reference_uint8(raw: np.ndarray) -> np.ndarray:
    """wsolevaluation's map: resized to 224x224 (bicubic, float64), min-max normalised in
    place (a map with NaN or a constant one becomes zeros), times 255, cast to uint8."""
    cam = cv2.resize(np.asarray(raw, dtype=np.float64), (WSOLEVAL_SIDE, WSOLEVAL_SIDE),
                     interpolation=cv2.INTER_CUBIC)
    if np.isnan(cam).any() or cam.min() == cam.max():
        cam = np.zeros_like(cam)
    else:
        cam -= cam.min()
        cam /= cam.max()
    return (cam * 255).astype(np.uint8)


def reference_scores(raw: np.ndarray) -> np.ndarray:
    """The float map wsolevaluation's mask evaluator histograms: bicubic to 224x224 in
    float64, then min-max normalised (no uint8 step)."""
    cam = cv2.resize(np.asarray(raw, dtype=np.float64), (WSOLEVAL_SIDE, WSOLEVAL_SIDE),
                     interpolation=cv2.INTER_CUBIC)
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def reference_boxes(u8: np.ndarray, threshold: float) -> tuple[list, list]:
    """(every box, the largest contour's box) of the uint8 map at one CAM threshold:
    cv2.threshold at int(t * max) (pixels strictly above it), findContours RETR_TREE +
    CHAIN_APPROX_SIMPLE, bounding rectangles as x, y, min(x + w, 223), min(y + h, 223);
    the largest is the contour of largest cv2.contourArea (max keeps the first of equal
    areas); no contour gives [0, 0, 0, 0] for both."""
    _, binary = cv2.threshold(u8, int(threshold * np.max(u8)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return [[0, 0, 0, 0]], [[0, 0, 0, 0]]
    height, width = u8.shape

    def box(contour) -> list[int]:
        x, y, w, h = cv2.boundingRect(contour)
        return [x, y, min(x + w, width - 1), min(y + h, height - 1)]

    return [box(c) for c in contours], [box(max(contours, key=cv2.contourArea))]


def reference_iou(box, gt) -> float:
    """IoU with pixels counted inclusively (a box x0..x1 is x1 - x0 + 1 wide)."""
    inter_w = min(box[2], gt[2]) - max(box[0], gt[0]) + 1
    inter_h = min(box[3], gt[3]) - max(box[1], gt[1]) + 1
    inter = max(0, inter_w) * max(0, inter_h)
    area_box = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    area_gt = (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1)
    union = area_box + area_gt - inter
    return inter / union if union > 0 else 0.0


def reference_best_iou(boxes, gts) -> float:
    """The best IoU of any box against any ground-truth box (0 without ground truth)."""
    return max((reference_iou(b, g) for b in boxes for g in gts), default=0.0)


def reference_gt224(boxes, width: float, height: float) -> list[list[int]]:
    """Ground-truth boxes into the 224 frame: int(x * 224 / width), as wsolevaluation."""
    return [[int(x0 * WSOLEVAL_SIDE / width), int(y0 * WSOLEVAL_SIDE / height),
             int(x1 * WSOLEVAL_SIDE / width), int(y1 * WSOLEVAL_SIDE / height)]
            for x0, y0, x1, y1 in boxes]


def reference_pxap(scores: list[np.ndarray], masks: list[np.ndarray],
                   thresholds: np.ndarray) -> float:
    """PxAP (percent) the way wsolevaluation's mask evaluator computes it, from the pixels
    themselves: at every threshold t of the grid, TP / FP = foreground / background
    pixels with score >= t (pixels marked 255 are ignored); precision = TP / (TP + FP),
    recall = TP / all foreground; the area is sum over the grid, from the highest
    threshold down, of precision times the rise in recall. The grid is extended by 1
    and 2 above (no pixel scores 2 or more: the curve starts at recall 0)."""
    edges = list(np.append(thresholds, [1.0, 2.0]))[::-1]  # highest first
    positives = sum(int((m == 1).sum()) for m in masks)
    precision, recall = [], []
    for t in edges:
        tp = sum(int(((s >= t) & (m == 1)).sum()) for s, m in zip(scores, masks))
        fp = sum(int(((s >= t) & (m == 0)).sum()) for s, m in zip(scores, masks))
        precision.append(tp / (tp + fp) if tp + fp else float("nan"))
        recall.append(tp / positives)
    area = 0.0
    for k in range(1, len(edges)):
        area += precision[k] * (recall[k] - recall[k - 1])
    return area * 100


# --------------------------------------------------------------------------- native reference


def reference_native_box(raw: np.ndarray, width: int, height: int, threshold: float):
    """The native protocol's box of a low-resolution map, from its definition, with
    OpenCV's resize and scipy's labelling (not the package's code): the map bicubic to
    the image size in float64, pixels >= min + t * (max - min), 8-connected components,
    the one with most pixels (ties: first in raster order), as x0, y0, x1, y1 with x1/y1
    exclusive. None when no component (a constant or non-finite map)."""
    from scipy import ndimage

    values = np.asarray(raw, dtype=np.float64)
    if values.shape != (height, width):
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_CUBIC)
    low, high = values.min(), values.max()
    if not np.isfinite(values).all() or high <= low:
        return None
    labels, count = ndimage.label(values >= low + threshold * (high - low),
                                  structure=np.ones((3, 3)))
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    # scipy numbers components in raster order of their first pixel: argmax keeps the first
    rows, cols = ndimage.find_objects(labels)[int(np.argmax(sizes))]
    return cols.start, rows.start, cols.stop, rows.stop


def reference_iou_exclusive(box, gt) -> float:
    """Intersection area / union area of boxes with exclusive x1/y1; empty union: 0."""
    w = max(0.0, min(box[2], gt[2]) - max(box[0], gt[0]))
    h = max(0.0, min(box[3], gt[3]) - max(box[1], gt[1]))
    union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - w * h
    return w * h / union if union > 0 else 0.0


def write_coco(folder: Path) -> Path:
    """A COCO instances JSON of one 100x100 image: a large box of 'cat', two small boxes
    of 'dog' (so the largest-area and most-boxes label rules disagree)."""
    import json

    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 60, 60]},
                            {"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5]},
                            {"image_id": 1, "category_id": 2, "bbox": [90, 90, 5, 5]}]}
    (folder / "ann.json").write_text(json.dumps(coco))
    return folder / "ann.json"


@pytest.fixture(scope="module")
def tiny_boxes(tmp_path_factory) -> Path:
    """A synth set of 2 classes, 5 train and 3 test images each, with boxes (cub:)."""
    from acol_eval.data.synth import SynthConfig, write_synth

    root = tmp_path_factory.mktemp("synth") / "s"
    write_synth(root, SynthConfig(classes=2, train_per_class=5, val_per_class=3, size=48))
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests, restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class KilledAfterEpoch(Exception):
    """Stands for a kill right after an epoch's files were written."""


def train_until_killed(config, monkeypatch) -> None:
    """`train(config)` killed right after its first epoch's files are written."""
    from acol_eval.training.trainer import Trainer, train

    record = Trainer._record

    def record_then_die(self, epoch, row, has_val):
        record(self, epoch, row, has_val)
        raise KilledAfterEpoch

    monkeypatch.setattr(Trainer, "_record", record_then_die)
    with pytest.raises(KilledAfterEpoch):
        train(config, log=lambda message: None)
    monkeypatch.undo()
