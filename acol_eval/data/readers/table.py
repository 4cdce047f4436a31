"""The one table every reader produces, and the cleaning every reader shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.util.errors import AcolError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
IMAGE_COLUMNS = ["image", "label", "split", "width", "height"]
BOX_COLUMNS = ["image", "x0", "y0", "x1", "y1"]
MASK_COLUMNS = ["image", "mask", "ignore"]
VALIDATION_SPLITS = ("val", "validation", "test")
# The largest image an annotation may claim (and the largest mask read): the same
# 20k x 20k pixels as data.py's decoding guard, so a size of 1e300 or 60000 x 60000
# can never reach an allocation later (scoring at native size, mask rasters).
MAX_IMAGE_PIXELS = 20_000 * 20_000
# What marks a folder as acol-eval's own output (a localize run, a score report):
# readers and detection never take such a folder for annotations or a class.
OUTPUT_MARKERS = ("run.json", "maps.json", "report.json")
PARTIAL_FOLDER = ".partial"


@dataclass
class Annotations:
    """One annotation source as tables.

    `images`: image (path relative to `root`, `/` separators, or absolute as
    written in the source), label (class name), split, width, height (NaN when
    unknown). `boxes`: image, x0, y0, x1, y1 in original pixels of the image
    frame, x0/y0 inclusive, x1/y1 exclusive. `masks`: image, mask, ignore (paths
    relative to `mask_root`, default `root`). `issues`: counts of bad annotations
    that were repaired or dropped.
    """

    root: Path
    images: pd.DataFrame
    boxes: pd.DataFrame
    classes: list[str]
    issues: dict[str, int] = field(default_factory=dict)
    masks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=MASK_COLUMNS))
    mask_root: Path | None = None  # where mask paths resolve (default: root)

    def split(self, name: str) -> Annotations:
        keep = self.images["split"] == name
        images = self.images[keep].reset_index(drop=True)
        boxes = self.boxes[self.boxes["image"].isin(images["image"])].reset_index(drop=True)
        masks = self.masks[self.masks["image"].isin(images["image"])].reset_index(drop=True)
        return Annotations(self.root, images, boxes, self.classes, dict(self.issues), masks,
                           self.mask_root)

    @property
    def splits(self) -> list[str]:
        return sorted(self.images["split"].unique())


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_acol_output(folder: Path) -> bool:
    """Whether `folder` is an acol-eval run or report folder (finished or not)."""
    try:
        return (folder / PARTIAL_FOLDER).is_dir() or any(
            (folder / name).is_file() for name in OUTPUT_MARKERS)
    except OSError:
        return False


def outside_outputs(root: Path, files):
    """`files` under `root` except those inside an acol-eval output folder below `root`
    (each folder is looked at once, so a tree of a million images costs no more)."""
    inside: dict[Path, bool] = {Path(root): False}

    def within(folder: Path) -> bool:
        if folder not in inside:  # the filesystem root is its own parent: stop there
            above = folder.parent != folder and within(folder.parent)
            inside[folder] = above or is_acol_output(folder)
        return inside[folder]

    for file in files:
        if not within(file.parent):
            yield file


def count(issues: dict[str, int], name: str, amount: int = 1) -> None:
    if amount:
        issues[name] = issues.get(name, 0) + int(amount)


def describe(issues: dict[str, int]) -> str:
    """Issue counts in one line: 'unreadable_file: 2, empty_file: 1'."""
    return ", ".join(f"{name}: {amount}" for name, amount in sorted(issues.items())) or "none"


def default_root(candidates: list[Path], names, probe: int = 20) -> Path:
    """The first existing folder of `candidates` under which one of the first `probe`
    relative image names is a file; when none is, the first existing folder (or the
    last candidate). So a CSV naming 'images/a.jpg' beside an images/ folder still
    finds its images, and a CSV naming 'a.jpg' finds them in images/."""
    folders = [c for c in candidates if c.is_dir()] or candidates[-1:]
    relative = [n for n in list(names)[:probe] if n and not Path(n).is_absolute()]
    for folder in folders:
        try:
            if any((folder / name).is_file() for name in relative):
                return folder
        except (OSError, ValueError):  # a name with a NUL byte or too long
            continue
    return folders[0]


def split_of(relative: str) -> str:
    first = relative.split("/", 1)[0]
    return first if "/" in relative and first in ("train", *VALIDATION_SPLITS) else "all"


# --------------------------------------------------------------------------- text files


def read_text(path: Path, issues: dict[str, int]) -> str:
    """A text file decoded as UTF-8; undecodable bytes are replaced and counted.

    A path that is missing, a folder, a FIFO or unreadable is an unusable source.
    """
    if not path.is_file():
        if path.exists():
            raise AcolError(f"annotation file {path} is not a regular file")
        raise AcolError(f"missing annotation file {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AcolError(f"cannot read annotation file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        count(issues, "non_utf8_line", sum("\ufffd" in line for line in text.splitlines()))
    if not text.strip():
        count(issues, "empty_file")
    return text


def read_member(path: Path, issues: dict[str, int]) -> str | None:
    """One file of a many-file format (VOC, labelme): None, counted as
    `unreadable_file`, when it cannot be read; the other files go on."""
    try:
        return read_text(path, issues)
    except AcolError:
        count(issues, "unreadable_file")
        return None


def read_table(path: Path, names: list[str], issues: dict[str, int], sep: str | None = None,
               numeric: tuple[str, ...] = (), optional: bool = False) -> pd.DataFrame:
    """Rows of `len(names)` fields (whitespace- or `sep`-separated); other rows are
    counted (`wrong_column_count`). Columns in `numeric` become floats cell by cell
    (NaN where a cell is not a number); the others stay text. An `optional` file may
    be absent or blank: no rows, nothing counted."""
    found: dict[str, int] = {}
    text = "" if optional and not path.exists() else read_text(path, found)
    if optional and not text.strip():
        found.pop("empty_file", None)
    for name, amount in found.items():
        count(issues, name, amount)
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.strip().split(sep) if sep else line.split(maxsplit=len(names) - 1)
        if len(fields) != len(names):
            count(issues, "wrong_column_count")
            continue
        rows.append([f.strip() for f in fields])
    table = pd.DataFrame(rows, columns=names, dtype=object)
    for name in names:
        table[name] = (pd.to_numeric(table[name], errors="coerce").astype(float)
                       if name in numeric else table[name].astype(str))
    return table


def integers(values: pd.Series) -> pd.Series:
    """Whole numbers written in ASCII digits as floats; NaN for anything else ('²' passes
    str.isdigit() but is no number here, nor '1.5', 'nan' or more than 15 digits)."""
    text = values.astype(str).str.strip()
    whole = text.str.fullmatch(r"[+-]?[0-9]{1,15}").fillna(False).astype(bool)
    return pd.to_numeric(text.where(whole), errors="coerce").astype(float)


# --------------------------------------------------------------------------- cleaning


def image_size(path: Path) -> tuple[float, float]:
    """(width, height) from the image header; NaN when the file is missing, not a
    regular file (a FIFO would block) or unreadable; infinite when Pillow refuses it
    as a decompression bomb."""
    import warnings

    from PIL import Image

    try:
        if not path.is_file():
            return np.nan, np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return float(image.size[0]), float(image.size[1])
    except Image.DecompressionBombError:
        return np.inf, np.inf
    except Exception:  # noqa: BLE001 - a broken image is reported by whoever needs its pixels
        return np.nan, np.nan


def _checked_sizes(images: pd.DataFrame, issues: dict[str, int]) -> pd.DataFrame:
    """Sizes as floats; a size given but not a positive finite number, or over
    MAX_IMAGE_PIXELS, is counted (`bad_size`) and becomes unknown (never clamped:
    a wrong size would silently move every clipped box)."""
    given = pd.Series(False, index=images.index)
    for column in ("width", "height"):
        raw = images[column]
        given |= raw.notna() & (raw.astype(str).str.strip() != "")
        images[column] = pd.to_numeric(raw, errors="coerce").astype(float)
    width, height = images["width"].to_numpy(), images["height"].to_numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        good = (np.isfinite(width) & np.isfinite(height) & (width > 0) & (height > 0)
                & (width * height <= MAX_IMAGE_PIXELS))
    bad = given.to_numpy() & ~good
    count(issues, "bad_size", int(bad.sum()))
    images.loc[~good, ["width", "height"]] = np.nan
    return images


def _read_missing_sizes(root: Path, images: pd.DataFrame, issues: dict[str, int]) -> None:
    missing = images["width"].isna() | images["height"].isna()
    for index in np.flatnonzero(missing.to_numpy()):
        width, height = image_size(root / images.at[index, "image"])
        if not np.isnan(width) and width * height > MAX_IMAGE_PIXELS:
            count(issues, "bad_size")
            width = height = np.nan
        images.at[index, "width"], images.at[index, "height"] = width, height


def _clean_boxes(boxes: pd.DataFrame, images: pd.DataFrame,
                 issues: dict[str, int]) -> pd.DataFrame:
    boxes = boxes.copy() if len(boxes) else pd.DataFrame(columns=BOX_COLUMNS)
    boxes = boxes[BOX_COLUMNS]
    boxes["image"] = boxes["image"].astype(str)
    for column in BOX_COLUMNS[1:]:
        boxes[column] = pd.to_numeric(boxes[column], errors="coerce").astype(float)
    bad = ~np.isfinite(boxes[BOX_COLUMNS[1:]].to_numpy(dtype=float)).all(axis=1)
    count(issues, "bad_box", int(bad.sum()))
    boxes = boxes[~bad]
    orphan = ~boxes["image"].isin(images["image"])
    count(issues, "box_without_image", int(orphan.sum()))
    boxes = boxes[~orphan]
    duplicate = boxes.duplicated()
    count(issues, "duplicate_box", int(duplicate.sum()))
    boxes = boxes[~duplicate]
    inverted = (boxes["x1"] < boxes["x0"]) | (boxes["y1"] < boxes["y0"])
    count(issues, "inverted_box", int(inverted.sum()))
    boxes = boxes[~inverted]
    sizes = images.set_index("image")[["width", "height"]]
    width = boxes["image"].map(sizes["width"]).to_numpy(dtype=float)
    height = boxes["image"].map(sizes["height"]).to_numpy(dtype=float)
    upper = np.stack([np.where(np.isnan(width), np.inf, width),
                      np.where(np.isnan(height), np.inf, height)], axis=1)
    values = boxes[BOX_COLUMNS[1:]].to_numpy(dtype=float)
    lower = np.zeros_like(upper)  # negative coordinates are past the edge whatever the size
    clipped = np.clip(values, np.tile(lower, 2), np.tile(upper, 2))
    count(issues, "clipped_box", int((clipped != values).any(axis=1).sum()))
    boxes = boxes.assign(x0=clipped[:, 0], y0=clipped[:, 1], x1=clipped[:, 2], y1=clipped[:, 3])
    empty = (boxes["x1"] <= boxes["x0"]) | (boxes["y1"] <= boxes["y0"])
    count(issues, "empty_box", int(empty.sum()))
    return boxes[~empty].reset_index(drop=True)


def finish(root: Path, images: pd.DataFrame, boxes: pd.DataFrame, classes: list[str],
           issues: dict[str, int], masks: pd.DataFrame | None = None,
           read_sizes: bool = True) -> Annotations:
    """Clean a reader's raw tables into an :class:`Annotations`, counting every repair.

    Boxes come as (x0, y0, x1, y1) in original pixels, x1/y1 exclusive. Duplicate
    image rows keep the first (`duplicate_row`); bad sizes become unknown (`bad_size`);
    duplicate boxes are dropped (`duplicate_box`); boxes with non-numbers or infinities
    (`bad_box`), inverted (`inverted_box`) or empty (`empty_box`) are dropped; boxes
    past the image edge are clipped (`clipped_box`); boxes or masks of images with no
    image row are dropped (`box_without_image`, `mask_without_image`). Unknown sizes
    are read from the image files under `root` when `read_sizes`.
    """
    images = images.copy()
    for column in IMAGE_COLUMNS:
        if column not in images:
            images[column] = np.nan if column in ("width", "height") else ""
    images = images[IMAGE_COLUMNS]
    images["image"] = images["image"].astype(str)
    images["label"] = images["label"].fillna("").astype(str)
    count(issues, "duplicate_row", int(images.duplicated("image").sum()))
    images = _checked_sizes(images.drop_duplicates("image").reset_index(drop=True), issues)
    if read_sizes:
        _read_missing_sizes(root, images, issues)
    boxes = _clean_boxes(boxes, images, issues)
    if masks is None or not len(masks):
        masks = pd.DataFrame(columns=MASK_COLUMNS)
    orphan = ~masks["image"].isin(images["image"])
    count(issues, "mask_without_image", int(orphan.sum()))
    masks = masks[~orphan].reset_index(drop=True)
    if classes:
        unknown = (images["label"] != "") & ~images["label"].isin(classes)
        count(issues, "unknown_class", int(unknown.sum()))
    else:
        classes = sorted(c for c in images["label"].unique() if c)
    return Annotations(root, images, boxes, list(classes), issues, masks)
