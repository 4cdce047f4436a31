"""Annotation readers: every source becomes one :class:`Annotations` table (SPEC 6).

One row per image (relative path, class name, split, size when known) and one
row per box. A source is named `FORMAT:PATH` or given as a bare path whose
format is detected. A new format is a function `PATH -> Annotations` added to
`READERS` (and, when it can be recognised, to `detect_format`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import AcolError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
IMAGE_COLUMNS = ["image", "label", "split", "width", "height"]
BOX_COLUMNS = ["image", "x0", "y0", "x1", "y1"]
VALIDATION_SPLITS = ("val", "validation", "test")


@dataclass
class Annotations:
    """One annotation source as tables.

    `images`: image (path relative to `root`, `/` separators), label (class
    name), split, width, height (NaN when the format lacks them). `boxes`:
    image, x0, y0, x1, y1 in original pixels, x1/y1 exclusive. `issues`: counts
    of bad annotations that were repaired or dropped.
    """

    root: Path
    images: pd.DataFrame
    boxes: pd.DataFrame
    classes: list[str]
    issues: dict[str, int] = field(default_factory=dict)

    def split(self, name: str) -> Annotations:
        keep = self.images["split"] == name
        images = self.images[keep].reset_index(drop=True)
        boxes = self.boxes[self.boxes["image"].isin(images["image"])].reset_index(drop=True)
        return Annotations(self.root, images, boxes, self.classes, dict(self.issues))

    @property
    def splits(self) -> list[str]:
        return sorted(self.images["split"].unique())


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------- readers


def read_folder(path: str | Path) -> Annotations:
    """An ImageFolder tree: ROOT/<split>/<class>/image, or ROOT/<class>/image (split 'all')."""
    root = Path(path)
    if not root.is_dir():
        raise AcolError(f"image folder {root} does not exist")
    split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name in
                  ("train", *VALIDATION_SPLITS)]
    layout = [(d.name, d) for d in split_dirs] if split_dirs else [("all", root)]
    rows = []
    for split, split_dir in layout:
        class_dirs = [d for d in sorted(split_dir.iterdir()) if d.is_dir()]
        for class_dir in class_dirs:
            files = sorted(p for p in class_dir.rglob("*") if p.is_file() and is_image_file(p))
            if not files:
                raise AcolError(f"class folder {class_dir} has no images")
            rows += [(p.relative_to(root).as_posix(), class_dir.name, split) for p in files]
    if not rows:
        raise AcolError(
            f"no images found in {root}: expected ROOT/train/<class>/*.jpg "
            "(and ROOT/val/<class>/...) or ROOT/<class>/*.jpg"
        )
    images = pd.DataFrame(rows, columns=["image", "label", "split"])
    images["width"] = np.nan
    images["height"] = np.nan
    classes = sorted(images["label"].unique())
    return Annotations(root, images, pd.DataFrame(columns=BOX_COLUMNS), classes)


def _read_table(path: Path, names: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise AcolError(f"missing annotation file {path}")
    return pd.read_csv(path, sep=r"\s+", header=None, names=names, engine="python")


def read_cub(path: str | Path) -> Annotations:
    """A CUB-200-2011 root: images.txt, image_class_labels.txt, bounding_boxes.txt, ..."""
    root = Path(path)
    if not root.is_dir():
        raise AcolError(f"CUB folder {root} does not exist")
    files = _read_table(root / "images.txt", ["id", "image"])
    labels = _read_table(root / "image_class_labels.txt", ["id", "class_id"])
    split = _read_table(root / "train_test_split.txt", ["id", "is_train"])
    classes_table = _read_table(root / "classes.txt", ["class_id", "name"])
    names = dict(zip(classes_table["class_id"], classes_table["name"]))
    table = files.merge(labels, on="id").merge(split, on="id")
    issues = {}
    unknown = ~table["class_id"].isin(names)
    if unknown.any():
        issues["unknown_class"] = int(unknown.sum())
        table = table[~unknown]
    images = pd.DataFrame({
        "image": table["image"].astype(str),
        "label": table["class_id"].map(names),
        "split": np.where(table["is_train"] == 1, "train", "test"),
        "width": np.nan,
        "height": np.nan,
    })
    boxes = pd.DataFrame(columns=BOX_COLUMNS)
    if (root / "bounding_boxes.txt").is_file():
        raw = _read_table(root / "bounding_boxes.txt", ["id", "x", "y", "w", "h"])
        raw = raw.merge(table[["id", "image"]], on="id")
        boxes = pd.DataFrame({
            "image": raw["image"].astype(str),
            "x0": raw["x"], "y0": raw["y"],
            "x1": raw["x"] + raw["w"], "y1": raw["y"] + raw["h"],
        })
    classes = [names[k] for k in sorted(names)]
    return Annotations(root / "images", images.reset_index(drop=True), boxes, classes, issues)


READERS: dict[str, Callable[[str], Annotations]] = {
    "folder": read_folder,
    "cub": read_cub,
}


def detect_format(path: Path) -> str:
    if (path / "images.txt").is_file() and (path / "image_class_labels.txt").is_file():
        return "cub"
    if path.is_dir():
        return "folder"
    raise AcolError(f"cannot tell the annotation format of {path}; name it as FORMAT:PATH")


def read_source(source: str) -> Annotations:
    """Read `FORMAT:PATH` or a bare PATH whose format is detected."""
    fmt, sep, rest = source.partition(":")
    if sep and fmt in READERS:
        return READERS[fmt](rest)
    if sep and len(fmt) > 1 and not Path(source).exists():
        raise AcolError(f"unknown annotation format {fmt!r}; known: {', '.join(READERS)}")
    path = Path(source)
    if not path.exists():
        raise AcolError(f"data source {source} does not exist")
    return READERS[detect_format(path)](str(path))
