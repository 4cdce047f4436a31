"""Annotation readers, image decoding and the training data sets.

Every annotation source becomes one :class:`Annotations` table (SPEC 6): one
row per image (relative path, class name, split, size when known) and one row
per box. A source is named `FORMAT:PATH` or given as a bare path whose format
is detected. Readers for more formats plug into `READERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision import transforms

from .errors import AcolError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
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


# --------------------------------------------------------------------------- images


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB (16-bit and float images are rescaled, alpha dropped)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float64))
        low, high = array.min(), array.max()
        scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
        image = Image.fromarray((scaled * 255).astype(np.uint8))
    elif image.mode == "P":
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(path: str | Path) -> Image.Image:
    """Decode by content (not extension), honour EXIF orientation, return RGB."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))


# --------------------------------------------------------------------------- data sets


def train_transform(
    input_size: int, resize_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> transforms.Compose:
    """The official recipe: resize to a square, random crop, horizontal flip."""
    return transforms.Compose([
        transforms.Resize((resize_size, resize_size)),
        transforms.RandomCrop(input_size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def eval_transform(input_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> transforms.Compose:
    return transforms.Compose([
        transforms.Resize((input_size, input_size)),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


class LabelledImages(Dataset):
    """(image tensor, class index) pairs; an undecodable file yields None (see collate)."""

    def __init__(self, root: Path, items: list[tuple[str, int]], transform) -> None:
        self.root = Path(root)
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        relative, label = self.items[index]
        try:
            image = decode_image(self.root / relative)
        except Exception:  # noqa: BLE001 - skipped and counted by the caller
            return None
        return self.transform(image), label


def collate_skipping(batch):
    """Stack the decodable samples; return (images, labels, number skipped)."""
    good = [sample for sample in batch if sample is not None]
    skipped = len(batch) - len(good)
    if not good:
        return None, None, skipped
    images = torch.stack([image for image, _ in good])
    labels = torch.tensor([label for _, label in good], dtype=torch.long)
    return images, labels, skipped


def labelled_items(annotations: Annotations, split: str, classes: list[str]):
    index = {name: i for i, name in enumerate(classes)}
    table = annotations.images[annotations.images["split"] == split]
    return [(image, index[label]) for image, label in zip(table["image"], table["label"])]
