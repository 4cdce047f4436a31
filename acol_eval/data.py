"""Image decoding and the training data sets (readers live in `readers.py`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision import transforms

from .readers import Annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Scans and panoramas far above camera sizes are legitimate inputs; keep Pillow's
# decompression-bomb guard, but at 20k x 20k pixels instead of ~90 megapixels.
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000
# JPEGs this many times larger than the model's input are decoded at a reduced DCT
# scale (Pillow's draft mode): much faster, and the result is resized down anyway.
DRAFT_FACTOR = 4
EXIF_ORIENTATION = 0x0112


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
    return decode_for_model(path, None)[0]


def decode_for_model(
    path: str | Path, input_size: int | None
) -> tuple[Image.Image, int, int]:
    """RGB image for the model and the original (EXIF-oriented) width and height.

    Very large JPEGs are decoded at a reduced scale that still leaves every side
    at least `DRAFT_FACTOR * input_size` (full size when `input_size` is None); the
    returned size is the full one.
    """
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
            width, height = height, width
        if (input_size is not None and image.format == "JPEG"
                and min(image.size) > DRAFT_FACTOR * input_size):
            side = DRAFT_FACTOR * input_size
            image.draft("RGB", (side, side))
        image.load()
        return to_rgb(ImageOps.exif_transpose(image)), width, height


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


def eval_transform(
    input_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> transforms.Compose:
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


class ImagesForModel(Dataset):
    """(position, tensor, width, height, error) per image; an undecodable file gives its reason."""

    def __init__(self, paths: list[Path], input_size: int, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD) -> None:
        self.paths = paths
        self.input_size = input_size
        self.transform = eval_transform(input_size, mean, std)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int):
        try:
            image, width, height = decode_for_model(self.paths[position], self.input_size)
            return position, self.transform(image), width, height, ""
        except Exception as exc:  # noqa: BLE001 - reported in errors.csv, the run goes on
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            return position, None, 0, 0, f"{type(exc).__name__}: {reason}"


def collate_positions(batch):
    """Decoded samples stacked; failures kept aside as (position, reason)."""
    good = [sample for sample in batch if sample[1] is not None]
    failed = [(sample[0], sample[4]) for sample in batch if sample[1] is None]
    images = torch.stack([sample[1] for sample in good]) if good else None
    return (
        [sample[0] for sample in good],
        images,
        [(sample[2], sample[3]) for sample in good],
        failed,
    )
