"""Folder formats: an ImageFolder tree, and images with binary masks beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.data.readers.table import (
    BOX_COLUMNS,
    IMAGE_COLUMNS,
    IMAGE_EXTENSIONS,
    MASK_COLUMNS,
    MAX_IMAGE_PIXELS,
    VALIDATION_SPLITS,
    Annotations,
    count,
    finish,
    image_size,
    is_acol_output,
    is_image_file,
    outside_outputs,
    split_of,
)
from acol_eval.util.errors import AcolError

# Detection compares this many mask files with the image folders' names.
DETECTION_FILES = 32


def _subfolders(folder: Path) -> list[Path]:
    """Sub-folders that can hold data: not hidden (.ipynb_checkpoints, .git) and not
    acol-eval run or report folders."""
    return [d for d in sorted(folder.iterdir())
            if d.is_dir() and not d.name.startswith(".") and not is_acol_output(d)]


def _image_files(folder: Path) -> list[Path]:
    return sorted(outside_outputs(folder, (p for p in folder.rglob("*")
                                           if p.is_file() and is_image_file(p))))


def read_folder(path: str | Path, image_root: Path | None = None) -> Annotations:
    """An ImageFolder tree: ROOT/<split>/<class>/image, or ROOT/<class>/image (split 'all').

    Hidden folders and acol-eval run or report folders are not classes. Images
    resolve under `image_root` when given (the same relative names), else ROOT.
    """
    root = Path(path)
    if not root.is_dir():
        raise AcolError(f"image folder {root} does not exist")
    split_dirs = [d for d in _subfolders(root) if d.name in ("train", *VALIDATION_SPLITS)]
    layout = [(d.name, d) for d in split_dirs] if split_dirs else [("all", root)]
    rows = []
    for split, split_dir in layout:
        for class_dir in _subfolders(split_dir):
            files = _image_files(class_dir)
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
    return Annotations(image_root or root, images, pd.DataFrame(columns=BOX_COLUMNS), classes)


# --------------------------------------------------------------------------- masks


def read_mask(path: Path) -> np.ndarray | None:
    """A binary mask file as a boolean array (True = object), None when unreadable or
    over MAX_IMAGE_PIXELS (checked from the header, before decoding).

    Object pixels are non-zero: palette index for `P` images, value for grey, 16-bit,
    32-bit and float images (NaN is background), any colour channel for RGB(A)
    (alpha ignored); other modes through greyscale.
    """
    import warnings

    from PIL import Image

    try:
        if not path.is_file():
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
                return None
            if image.mode in ("RGB", "RGBA", "LA"):
                channels = 1 if image.mode == "LA" else 3
                values = np.asarray(image)[..., :channels]
                return (values > 0).any(axis=-1)
            if image.mode not in ("1", "L", "P", "I", "F") and not image.mode.startswith("I;"):
                image = image.convert("L")
            values = np.asarray(image)
    except Exception:  # noqa: BLE001 - any undecodable file is one counted issue
        return None
    with np.errstate(invalid="ignore"):
        return np.asarray(values > 0).reshape(values.shape[:2])


def _mask_folders(root: Path) -> tuple[list[Path], list[Path]]:
    subdirs = _subfolders(root)
    return ([d for d in subdirs if "mask" in d.name.lower()],
            [d for d in subdirs if "mask" not in d.name.lower()])


def holds_masks(folder: Path) -> bool:
    """Whether FOLDER has a mask folder (name with 'mask') and an image folder in
    which one of the first mask files has an image of the same relative name."""
    mask_dirs, image_dirs = _mask_folders(folder)
    if not mask_dirs or not image_dirs:
        return False
    masks = (p for p in mask_dirs[0].rglob("*") if p.is_file() and is_image_file(p))
    for seen, mask in enumerate(masks):
        if seen >= DETECTION_FILES:
            break
        stem = mask.relative_to(mask_dirs[0]).with_suffix("").as_posix()
        if any((d / (stem + ext)).is_file() for d in image_dirs
               for ext in (*IMAGE_EXTENSIONS, *(e.upper() for e in IMAGE_EXTENSIONS))):
            return True
    return False


def _mask_row(file: Path, mask_file: Path, relative: str, issues: dict[str, int]):
    """(width, height, box or None) of one image from its mask, or None (counted).

    The size is the image's (from its header; the mask's when the image cannot be
    read). A mask of another size is counted (`mask_size_mismatch`) and its tight
    rectangle scaled into the image frame. An all-background mask has no box
    (`empty_mask`). Box: x0, y0 inclusive, x1, y1 exclusive, image pixels.
    """
    mask = read_mask(mask_file)
    if mask is None:
        count(issues, "unreadable_file")
        return None
    mask_height, mask_width = mask.shape
    width, height = image_size(file)
    if not np.isfinite(width) or width * height > MAX_IMAGE_PIXELS:
        width, height = float(mask_width), float(mask_height)
    elif (width, height) != (mask_width, mask_height):
        count(issues, "mask_size_mismatch")
    ys, xs = np.nonzero(mask)
    if not len(xs):
        count(issues, "empty_mask")
        return width, height, None
    sx, sy = width / mask_width, height / mask_height
    box = [xs.min() * sx, ys.min() * sy, (xs.max() + 1) * sx, (ys.max() + 1) * sy]
    return width, height, [relative, *box]


def _masks_by_name(mask_dir: Path, issues: dict[str, int]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(p for p in mask_dir.rglob("*") if p.is_file() and is_image_file(p)):
        stem = path.relative_to(mask_dir).with_suffix("").as_posix()
        if stem in found:
            count(issues, "duplicate_row")
        else:
            found[stem] = path
    return found


def read_masks(path: str | Path, image_root: Path | None = None) -> Annotations:
    """Binary mask images matched to images by relative path without extension.

    PATH holds an image folder and a folder whose name contains `mask` (e.g.
    `horse_test/` and `mask_test/`, or synth's `images/` and `masks/`). The box of an
    image is the tight rectangle of its mask; the label is the class folder, or
    PATH's name when images are not in class folders. Images resolve under
    `image_root` when given, else the image folder; masks under PATH (`mask_root`).
    """
    root_dir = Path(path)
    if not root_dir.is_dir():
        raise AcolError(f"mask folder {root_dir} does not exist")
    mask_dirs, image_dirs = _mask_folders(root_dir)
    if not mask_dirs or not image_dirs:
        raise AcolError(f"{root_dir} needs an image folder and a mask folder (name with 'mask')")
    mask_dir, image_dir = mask_dirs[0], image_dirs[0]
    issues: dict[str, int] = {}
    masks_by_stem = _masks_by_name(mask_dir, issues)
    image_rows, box_rows, mask_rows = [], [], []
    for file in _image_files(image_dir):
        relative = file.relative_to(image_dir).as_posix()
        parts = relative.split("/")
        label = parts[-2] if len(parts) >= 2 and parts[-2] not in ("train", *VALIDATION_SPLITS) \
            else root_dir.name
        mask_file = masks_by_stem.pop(file.relative_to(image_dir).with_suffix("").as_posix(),
                                      None)
        if mask_file is None:
            count(issues, "image_without_mask")
            continue
        found = _mask_row(file, mask_file, relative, issues)
        if found is None:
            continue
        image_rows.append([relative, label, split_of(relative), found[0], found[1]])
        mask_rows.append([relative, mask_file.relative_to(root_dir).as_posix(), ""])
        if found[2] is not None:
            box_rows.append(found[2])
    count(issues, "mask_without_image", len(masks_by_stem))
    result = finish(image_root or image_dir, pd.DataFrame(image_rows, columns=IMAGE_COLUMNS),
                    pd.DataFrame(box_rows, columns=BOX_COLUMNS), [], issues,
                    pd.DataFrame(mask_rows, columns=MASK_COLUMNS), read_sizes=False)
    result.mask_root = root_dir
    return result
