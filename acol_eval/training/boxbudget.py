"""The box budget of a training run (`train --boxes-per-class K`): which validation images
give their boxes to a method that trains on them (FSL), and the box masks it trains on.

The draw: K images per class (or every one, `all`) among the validation images that have
boxes, stratified by class, chosen by a generator seeded from --seed alone, so one seed
gives one set whatever else changes. The validation split is the source's val split or
the part of the train split --val-fraction holds out; never the test split (a run whose
validation would fall back to the test split is refused). The images drawn leave the
validation set: best.pt and the calibrated CAM threshold are chosen on the others, so the
head's training images, the calibration images and the test images are three disjoint
sets, and OUT/boxes.json lists the first two with the budget spent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF

from acol_eval.data.datasets import decode_for_model
from acol_eval.data.readers import VALIDATION_SPLITS, Annotations
from acol_eval.models.fsl_method import BoxMasks
from acol_eval.util.errors import AcolError
from acol_eval.util.safeio import atomic_write_text

BOXES_FILE = "boxes.json"
ALL = "all"  # --boxes-per-class all: every validation image with boxes


@dataclass(frozen=True)
class BoxBudget:
    """head: the (image, class) items whose boxes train the method; calibration: the rest
    of the validation items (model choice and the CAM threshold); boxes: how many boxes
    the head images hold."""

    per_class: int | str
    head: list[tuple[str, int]]
    calibration: list[tuple[str, int]]
    classes: list[str]
    boxes: int
    source: str

    def counts(self) -> dict[str, int]:
        found = {name: 0 for name in self.classes}
        for _, label in self.head:
            found[self.classes[label]] += 1
        return found

    def summary(self) -> str:
        return (f"box budget: {self.boxes} boxes on {len(self.head)} validation images "
                f"({self.per_class} per class, {len(self.classes)} classes) train the "
                f"method; {len(self.calibration)} other validation images choose best.pt "
                f"and the CAM threshold")

    def record(self) -> dict[str, Any]:
        """OUT/boxes.json's content."""
        return {"boxes_per_class": self.per_class, "images": len(self.head),
                "boxes": self.boxes, "per_class": self.counts(), "source": self.source,
                "head_images": [image for image, _ in self.head],
                "calibration_images": [image for image, _ in self.calibration]}

    def write(self, out: str | Path) -> None:
        atomic_write_text(Path(out) / BOXES_FILE, json.dumps(self.record(), indent=1) + "\n")


def check_record(out: str | Path) -> None:
    """Refuse to replace an OUT/boxes.json train did not write (a run killed before its
    first checkpoint leaves one, which its rerun may replace)."""
    path = Path(out) / BOXES_FILE
    if not path.exists():
        return
    try:
        found = json.loads(path.read_text()) if path.stat().st_size < 2**26 else None
    except (OSError, ValueError):
        found = None
    if not (isinstance(found, dict) and {"boxes_per_class", "head_images"} <= found.keys()):
        raise AcolError(f"{path} is not a box budget acol-eval wrote, and train would "
                        f"replace it; move it or choose another --out")


def check_box_source(config: Any, annotations: Annotations) -> None:
    """Refuse a budget the source cannot pay: no boxes at all, or validation images that
    would be the test split (train's fallback when the source has no val split)."""
    if annotations.boxes.empty:
        raise AcolError(f"--boxes-per-class needs an annotation source with boxes; "
                        f"{config.data} has none")
    split = config.val_split or next(
        (s for s in VALIDATION_SPLITS if s in annotations.splits), None)
    if not config.val_fraction and split == "test":
        raise AcolError(f"--boxes-per-class draws from the validation split, and "
                        f"{config.data}'s would be its test split: give --val-fraction "
                        f"(a held-out part of train) or --val-split")


def draw_budget(annotations: Annotations, validation: list[tuple[str, int]],
                classes: list[str], per_class: int | str, seed: int,
                source: str = "") -> BoxBudget:
    """K validation images with boxes per class (stratified, seeded by `seed`); an
    impossible K (more than a class has, or a class with none) is an AcolError."""
    boxed = set(annotations.boxes["image"])
    rng = np.random.default_rng([int(seed), 0xB0C5])
    chosen: set[int] = set()
    for label, name in enumerate(classes):
        candidates = [i for i, (image, c) in enumerate(validation)
                      if c == label and image in boxed]
        take = len(candidates) if per_class == ALL else int(per_class)
        if not candidates or take > len(candidates):
            raise AcolError(f"--boxes-per-class {per_class}: class {name!r} has "
                            f"{len(candidates)} validation image(s) with boxes")
        chosen.update(candidates[j] for j in rng.permutation(len(candidates))[:take])
    head = [item for i, item in enumerate(validation) if i in chosen]
    rest = [item for i, item in enumerate(validation) if i not in chosen]
    wanted = {image for image, _ in head}
    boxes = int(annotations.boxes["image"].isin(wanted).sum())
    return BoxBudget(per_class, head, rest, list(classes), boxes, source)


def box_masks(annotations: Annotations, head: list[tuple[str, int]], side: int) -> BoxMasks:
    """The head images resized to side x side (as train's augmentation resizes before its
    crop) and their masks, 1 inside any box (boxes scaled from original pixels)."""
    root = Path(annotations.root)
    grouped = annotations.boxes.groupby("image")
    images = torch.zeros(len(head), 3, side, side, dtype=torch.uint8)
    masks = torch.zeros(len(head), side, side, dtype=torch.uint8)
    for k, (image, _) in enumerate(head):
        try:
            picture, width, height = decode_for_model(root / image, None)
        except Exception as exc:  # noqa: BLE001 - one line naming the image
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise AcolError(f"box image {image} could not be read: {reason}") from None
        resized = TF.resize(picture, [side, side])
        images[k] = torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1)
        for box in grouped.get_group(image).itertuples(index=False):
            x0, x1 = (int(v) for v in scaled(box.x0, box.x1, width, side))
            y0, y1 = (int(v) for v in scaled(box.y0, box.y1, height, side))
            masks[k, y0:y1, x0:x1] = 1
    return BoxMasks(images, masks)


def scaled(low: float, high: float, extent: float, side: int) -> tuple[int, int]:
    """A box's [low, high) in pixels of an `extent`-wide image -> pixels of `side`,
    covering every pixel the box touches (at least one)."""
    start = int(np.floor(low * side / extent))
    stop = int(np.ceil(high * side / extent))
    start = min(max(start, 0), side - 1)
    return start, min(max(stop, start + 1), side)
