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
