"""The embedded default data set (`acol-eval synth`).

Each class is one (shape, texture) pair; colours, places, scales and the
cluttered background are random and shared by all classes, so only the
object tells the class. Everything is drawn from one `numpy` generator seeded
by `seed`, and written losslessly (PNG), so a seed gives byte-identical files.

Layout of OUT:
    images/train/<class>/<name>.png, images/val/<class>/<name>.png  (ImageFolder)
    masks/<split>/<class>/<name>.png   exact object masks (0/255)
    annotations.csv                    image,label,x0,y0,x1,y1,split (x1,y1 exclusive)
    images.txt, image_class_labels.txt, bounding_boxes.txt,
    train_test_split.txt, classes.txt  (CUB layout; images under images/)
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from acol_eval.util import safeio
from acol_eval.util.csvtext import csv_writer
from acol_eval.util.errors import AcolError
from acol_eval.util.safeio import FolderLock, atomic_write_bytes, atomic_write_text

SHAPES = ("disc", "square", "triangle", "cross", "diamond", "ring")
TEXTURES = ("stripes", "checker", "dots", "diagonal", "grid", "waves")


MAX_PER_CLASS = 10_000
MIN_SIZE, MAX_SIZE = 32, 1024
MIN_OBJECT_SIDE = 8  # pixels: below this a shape and its texture are not recognisable


def _whole(flag: str, value, low: int, high: int) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value != int(value) or not low <= value <= high):
        raise AcolError(f"{flag} {value!r} must be a whole number from {low} to {high}")
    return int(value)


@dataclass(frozen=True)
class SynthConfig:
    """`acol-eval synth` options; every check is here, each error names its flag."""

    classes: int = 4
    train_per_class: int = 60
    val_per_class: int = 25
    size: int = 160
    min_scale: float = 0.3
    max_scale: float = 0.6
    seed: int = 0
    overwrite: bool = False  # write into an OUT that already holds files

    def __post_init__(self) -> None:
        class_names(_whole("--classes", self.classes, -(2**31), 2**31))  # its own message
        _whole("--train-per-class", self.train_per_class, 1, MAX_PER_CLASS)
        _whole("--val-per-class", self.val_per_class, 1, MAX_PER_CLASS)
        _whole("--size", self.size, MIN_SIZE, MAX_SIZE)
        _whole("--seed", self.seed, 0, 2**63 - 1)
        for flag, value in (("--min-scale", self.min_scale), ("--max-scale", self.max_scale)):
            if not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and 0 < value <= 1):
                raise AcolError(f"{flag} {value!r} must be a number in (0, 1]")
        if self.min_scale > self.max_scale:
            raise AcolError(f"--min-scale {self.min_scale} is above --max-scale "
                            f"{self.max_scale}")
        if int(self.size * self.min_scale) < MIN_OBJECT_SIDE:
            raise AcolError(f"objects of {self.min_scale} x {self.size} pixels are under "
                            f"{MIN_OBJECT_SIDE} pixels: raise --size or --min-scale")


def class_names(count: int) -> list[str]:
    if not 2 <= count <= len(SHAPES):
        raise AcolError(f"synth makes 2 to {len(SHAPES)} classes, not {count}")
    return [f"{SHAPES[i]}_{TEXTURES[i]}" for i in range(count)]


def shape_mask(shape: str, side: int) -> np.ndarray:
    """A filled shape in a side x side square, uint8 0/1."""
    mask = np.zeros((side, side), np.uint8)
    c, r = side / 2, side / 2 - 1
    if shape == "disc":
        cv2.circle(mask, (int(c), int(c)), int(r), 1, -1)
    elif shape == "square":
        mask[int(side * 0.1): int(side * 0.9), int(side * 0.1): int(side * 0.9)] = 1
    elif shape == "triangle":
        points = np.array([[c, 0], [side - 1, side - 1], [0, side - 1]], np.int32)
        cv2.fillPoly(mask, [points], 1)
    elif shape == "cross":
        a, b = int(side * 0.35), int(side * 0.65)
        mask[a:b, :] = 1
        mask[:, a:b] = 1
    elif shape == "diamond":
        points = np.array([[c, 0], [side - 1, c], [c, side - 1], [0, c]], np.int32)
        cv2.fillPoly(mask, [points], 1)
    elif shape == "ring":
        cv2.circle(mask, (int(c), int(c)), int(r), 1, -1)
        cv2.circle(mask, (int(c), int(c)), int(r * 0.5), 0, -1)
    return mask


def texture(kind: str, side: int, period: int, phase: float) -> np.ndarray:
    """A 0/1 float texture pattern."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    if kind == "stripes":
        pattern = np.sin(2 * np.pi * y / period + phase) > 0
    elif kind == "checker":
        pattern = ((x // (period / 2) + y // (period / 2)) % 2) == 0
    elif kind == "dots":
        pattern = ((x % period - period / 2) ** 2 + (y % period - period / 2) ** 2) < (
            period / 3.5) ** 2
    elif kind == "diagonal":
        pattern = np.sin(2 * np.pi * (x + y) / period + phase) > 0
    elif kind == "grid":
        pattern = ((x % period) < period / 4) | ((y % period) < period / 4)
    else:  # waves
        pattern = np.sin(2 * np.pi * y / period + 3 * np.sin(2 * np.pi * x / (3 * period))) > 0
    return pattern.astype(np.float32)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Clutter: smooth colour gradients, random rectangles, lines and blurred noise."""
    canvas = np.empty((size, size, 3), np.float32)
    low, high = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    canvas[:] = low + (high - low) * ramp
    for _ in range(rng.integers(6, 14)):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 12, size // 3, 2)
        colour = rng.uniform(30, 230, 3)
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), colour.tolist(), -1)
    for _ in range(rng.integers(4, 10)):
        p, q = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])),
                 rng.uniform(30, 230, 3).tolist(), int(rng.integers(1, 4)))
    noise = cv2.GaussianBlur(rng.normal(0, 25, (size, size, 3)).astype(np.float32), (0, 0), 2)
    return canvas + noise


def draw_sample(
    rng: np.random.Generator, class_index: int, config: SynthConfig
) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 BGR) and its exact object mask (uint8 0/1)."""
    size = config.size
    image = background(rng, size)
    side = int(size * rng.uniform(config.min_scale, config.max_scale))
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
    mask_patch = shape_mask(SHAPES[class_index], side)
    pattern = texture(TEXTURES[class_index], side, int(rng.integers(6, 11)), rng.uniform(0, 6.3))
    colour_a, colour_b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    while np.abs(colour_a - colour_b).sum() < 200:  # keep the texture visible
        colour_b = rng.uniform(0, 255, 3)
    patch = colour_a + (colour_b - colour_a) * pattern[..., None]
    region = image[y0: y0 + side, x0: x0 + side]
    region[mask_patch == 1] = patch[mask_patch == 1]
    mask = np.zeros((size, size), np.uint8)
    mask[y0: y0 + side, x0: x0 + side] = mask_patch
    return np.clip(image, 0, 255).astype(np.uint8), mask


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box of a mask, x1/y1 exclusive."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def check_out(out: Path, overwrite: bool) -> None:
    """OUT must be a folder holding nothing (but our lock), unless `overwrite`."""
    safeio.refuse_existing(out, None, overwrite, lambda found: (
        f"{out} is not empty; choose an empty or new folder, or add --overwrite to replace "
        f"the data set's files in it"), label=str(out))


def write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise AcolError(f"cannot encode {path}")
    atomic_write_bytes(path, encoded.tobytes())


def write_synth(out: str | Path, config: SynthConfig = SynthConfig()) -> dict[str, int]:
    """Write the whole data set under `out`; returns image counts per split.

    OUT must be empty or new unless `config.overwrite`; one synth writes it at a time.
    """
    out = Path(out)
    check_out(out, config.overwrite)
    with FolderLock(out, "synth"):
        check_out(out, config.overwrite)
        return _write_all(out, config)


def _write_all(out: Path, config: SynthConfig) -> dict[str, int]:
    names = class_names(config.classes)
    rng = np.random.default_rng(config.seed)
    records = []
    counts = {"train": 0, "val": 0}
    for split, per_class in (("train", config.train_per_class), ("val", config.val_per_class)):
        for index, name in enumerate(names):
            image_dir = out / "images" / split / name
            mask_dir = out / "masks" / split / name
            image_dir.mkdir(parents=True, exist_ok=True)
            mask_dir.mkdir(parents=True, exist_ok=True)
            for number in range(per_class):
                image, mask = draw_sample(rng, index, config)
                stem = f"{name}_{split}_{number:04d}"
                write_png(image_dir / f"{stem}.png", image)
                write_png(mask_dir / f"{stem}.png", mask * 255)
                relative = f"{split}/{name}/{stem}.png"
                records.append((relative, name, split, *mask_box(mask)))
                counts[split] += 1
    table = io.StringIO()
    writer = csv_writer(table, lineterminator="\n")
    writer.writerow(["image", "label", "x0", "y0", "x1", "y1", "split"])
    for relative, name, split, *box in records:
        writer.writerow([relative, name, *box, split])
    atomic_write_text(out / "annotations.csv", table.getvalue())
    _write_cub(out, names, records)
    return counts


def _write_cub(out: Path, names: list[str], records: list[tuple]) -> None:
    def write(name: str, lines: list[str]) -> None:
        atomic_write_text(out / name, "".join(line + "\n" for line in lines))

    class_id = {name: i + 1 for i, name in enumerate(names)}
    write("classes.txt", [f"{class_id[n]} {n}" for n in names])
    write("images.txt", [f"{i} {r[0]}" for i, r in enumerate(records, 1)])
    write("image_class_labels.txt", [f"{i} {class_id[r[1]]}" for i, r in enumerate(records, 1)])
    write("train_test_split.txt",
          [f"{i} {1 if r[2] == 'train' else 0}" for i, r in enumerate(records, 1)])
    write("bounding_boxes.txt", [
        f"{i} {r[3]:.1f} {r[4]:.1f} {r[5] - r[3]:.1f} {r[6] - r[4]:.1f}"
        for i, r in enumerate(records, 1)
    ])
