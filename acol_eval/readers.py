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
MASK_COLUMNS = ["image", "mask", "ignore"]
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


def _read_text(path: Path, issues: dict[str, int]) -> str:
    """A text file decoded as UTF-8; undecodable bytes are replaced and counted."""
    if not path.is_file():
        raise AcolError(f"missing annotation file {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        _count(issues, "non_utf8_line", sum("\ufffd" in line for line in text.splitlines()))
    if not text.strip():
        _count(issues, "empty_file")
    return text


def _read_table(path: Path, names: list[str], issues: dict[str, int] | None = None,
                sep: str | None = None) -> pd.DataFrame:
    """Rows of `len(names)` fields (whitespace- or `sep`-separated); other rows are counted."""
    issues = {} if issues is None else issues
    rows = []
    for line in _read_text(path, issues).splitlines():
        if not line.strip():
            continue
        fields = line.strip().split(sep) if sep else line.split(maxsplit=len(names) - 1)
        if len(fields) != len(names):
            _count(issues, "wrong_column_count")
            continue
        rows.append([f.strip() for f in fields])
    table = pd.DataFrame(rows, columns=names)
    for name in names:
        numeric = pd.to_numeric(table[name], errors="coerce")
        if name != "image" and numeric.notna().all() and len(table):
            table[name] = numeric
    return table


def _count(issues: dict[str, int], name: str, amount: int = 1) -> None:
    if amount:
        issues[name] = issues.get(name, 0) + int(amount)


def read_cub(path: str | Path) -> Annotations:
    """A CUB-200-2011 root: images.txt, image_class_labels.txt, bounding_boxes.txt, ..."""
    root = Path(path)
    if not root.is_dir():
        raise AcolError(f"CUB folder {root} does not exist")
    issues: dict[str, int] = {}
    files = _read_table(root / "images.txt", ["id", "image"], issues)
    _count(issues, "duplicate_row", int(files.duplicated("id").sum()))
    files = files.drop_duplicates("id")
    labels = _read_table(root / "image_class_labels.txt", ["id", "class_id"], issues)
    split = _read_table(root / "train_test_split.txt", ["id", "is_train"], issues)
    classes_table = _read_table(root / "classes.txt", ["class_id", "name"], issues)
    names = dict(zip(classes_table["class_id"], classes_table["name"]))
    table = files.merge(labels.drop_duplicates("id"), on="id").merge(
        split.drop_duplicates("id"), on="id")
    unknown = ~table["class_id"].isin(names)
    if unknown.any():
        _count(issues, "unknown_class", int(unknown.sum()))
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
        raw = _read_table(root / "bounding_boxes.txt", ["id", "x", "y", "w", "h"], issues)
        raw = raw.merge(table[["id", "image"]], on="id")
        boxes = pd.DataFrame({
            "image": raw["image"].astype(str),
            "x0": raw["x"], "y0": raw["y"],
            "x1": raw["x"] + raw["w"], "y1": raw["y"] + raw["h"],
        })
    classes = [names[k] for k in sorted(names)]
    return finish(root / "images", images, boxes, classes, issues)




def _split_of(relative: str) -> str:
    first = relative.split("/", 1)[0]
    return first if "/" in relative and first in ("train", *VALIDATION_SPLITS) else "all"


def _image_size(path: Path) -> tuple[float, float]:
    """(width, height) from the image header; NaN when the file is missing or unreadable."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            return float(image.size[0]), float(image.size[1])
    except Exception:  # a missing or broken image is reported by whoever needs its pixels
        return np.nan, np.nan


def finish(root: Path, images: pd.DataFrame, boxes: pd.DataFrame, classes: list[str],
           issues: dict[str, int], masks: pd.DataFrame | None = None,
           read_sizes: bool = True) -> Annotations:
    """Clean a reader's raw tables into an :class:`Annotations` (SPEC 6), counting every repair.

    Duplicate image rows keep the first (`duplicate_row`); duplicate boxes are dropped
    (`duplicate_box`); boxes with non-numbers (`bad_box`), inverted (`inverted_box`) or
    empty (`empty_box`) are dropped; boxes past the image edge are clipped
    (`clipped_box`); boxes of images with no image row are dropped (`box_without_image`).
    Missing sizes are read from the image files when `read_sizes`.
    """
    images = images.copy()
    for column in IMAGE_COLUMNS:
        if column not in images:
            images[column] = np.nan if column in ("width", "height") else ""
    images = images[IMAGE_COLUMNS]
    images["image"] = images["image"].astype(str)
    images["label"] = images["label"].fillna("").astype(str)
    _count(issues, "duplicate_row", int(images.duplicated("image").sum()))
    images = images.drop_duplicates("image").reset_index(drop=True)
    images["width"] = pd.to_numeric(images["width"], errors="coerce").astype(float)
    images["height"] = pd.to_numeric(images["height"], errors="coerce").astype(float)
    if read_sizes:
        missing = images["width"].isna() | images["height"].isna()
        for index in np.flatnonzero(missing.to_numpy()):
            width, height = _image_size(root / images.at[index, "image"])
            images.at[index, "width"], images.at[index, "height"] = width, height
    boxes = boxes.copy() if len(boxes) else pd.DataFrame(columns=BOX_COLUMNS)
    boxes = boxes[BOX_COLUMNS]
    boxes["image"] = boxes["image"].astype(str)
    for column in BOX_COLUMNS[1:]:
        boxes[column] = pd.to_numeric(boxes[column], errors="coerce").astype(float)
    bad = boxes[BOX_COLUMNS[1:]].isna().any(axis=1) | ~np.isfinite(
        boxes[BOX_COLUMNS[1:]].fillna(0)).all(axis=1)
    _count(issues, "bad_box", int(bad.sum()))
    boxes = boxes[~bad]
    orphan = ~boxes["image"].isin(images["image"])
    _count(issues, "box_without_image", int(orphan.sum()))
    boxes = boxes[~orphan]
    duplicate = boxes.duplicated()
    _count(issues, "duplicate_box", int(duplicate.sum()))
    boxes = boxes[~duplicate]
    inverted = (boxes["x1"] < boxes["x0"]) | (boxes["y1"] < boxes["y0"])
    _count(issues, "inverted_box", int(inverted.sum()))
    boxes = boxes[~inverted]
    sizes = images.set_index("image")[["width", "height"]]
    width = boxes["image"].map(sizes["width"]).to_numpy(dtype=float)
    height = boxes["image"].map(sizes["height"]).to_numpy(dtype=float)
    limits = np.stack([np.zeros_like(width), np.zeros_like(width), width, height], axis=1)
    values = boxes[BOX_COLUMNS[1:]].to_numpy(dtype=float)
    lower = np.where(np.isnan(limits[:, :2]), -np.inf, 0.0)
    upper = np.where(np.isnan(limits[:, 2:]), np.inf, limits[:, 2:])
    clipped = np.clip(values, np.tile(lower, 2), np.tile(upper, 2))
    changed = (clipped != values).any(axis=1)
    _count(issues, "clipped_box", int(changed.sum()))
    boxes = boxes.assign(x0=clipped[:, 0], y0=clipped[:, 1], x1=clipped[:, 2], y1=clipped[:, 3])
    empty = (boxes["x1"] <= boxes["x0"]) | (boxes["y1"] <= boxes["y0"])
    _count(issues, "empty_box", int(empty.sum()))
    boxes = boxes[~empty].reset_index(drop=True)
    if masks is None or not len(masks):
        masks = pd.DataFrame(columns=MASK_COLUMNS)
    masks = masks[masks["image"].isin(images["image"])].reset_index(drop=True)
    if classes:
        unknown = (images["label"] != "") & ~images["label"].isin(classes)
        _count(issues, "unknown_class", int(unknown.sum()))
    else:
        classes = sorted(c for c in images["label"].unique() if c)
    return Annotations(root, images, boxes, list(classes), issues, masks)


def read_wsol(path: str | Path) -> Annotations:
    """A wsolevaluation metadata folder: image_ids, class_labels, image_sizes, localization."""
    root = Path(path)
    issues: dict[str, int] = {}
    ids = _read_table(root / "image_ids.txt", ["image"], issues, sep=",")
    labels = _read_table(root / "class_labels.txt", ["image", "label"], issues, sep=",")
    split = root.name if root.name in ("train", *VALIDATION_SPLITS) else "all"
    images = ids.merge(labels.drop_duplicates("image"), on="image", how="left")
    images["label"] = images["label"].astype("string").fillna("")
    if (root / "image_sizes.txt").is_file():
        sizes = _read_table(root / "image_sizes.txt", ["image", "width", "height"], issues, ",")
        images = images.merge(sizes.drop_duplicates("image"), on="image", how="left")
    images["split"] = split
    boxes = pd.DataFrame(columns=BOX_COLUMNS)
    masks = pd.DataFrame(columns=MASK_COLUMNS)
    localization = root / "localization.txt"
    if localization.is_file():
        text = _read_text(localization, {})
        first = next((line for line in text.splitlines() if line.strip()), "")
        if len(first.split(",")) == 3:  # OpenImages: path,mask,ignore
            masks = _read_table(localization, MASK_COLUMNS, issues, sep=",")
        else:
            boxes = _read_table(localization, BOX_COLUMNS, issues, sep=",")
    classes = sorted({c for c in images["label"] if c}, key=lambda c: (len(c), c))
    # wsolevaluation masks live beside the metadata in OpenImages-style mask roots
    return finish(root, images, boxes, classes, issues, masks, read_sizes=False)


def read_voc(path: str | Path) -> Annotations:
    """Pascal VOC XML files (PATH or PATH/annotations); images in PATH/images or beside.

    A `classes.txt` (`id name` lines) in PATH maps object names (e.g. ImageNet synsets)
    to class names. The image label is the name with the largest total box area.
    """
    import xml.etree.ElementTree as ElementTree

    folder = Path(path)
    xml_dir = folder / "annotations" if (folder / "annotations").is_dir() else folder
    root = folder / "images" if (folder / "images").is_dir() else folder
    issues: dict[str, int] = {}
    mapping: dict[str, str] = {}
    if (folder / "classes.txt").is_file():
        table = _read_table(folder / "classes.txt", ["id", "name"], issues)
        mapping = dict(zip(table["id"].astype(str), table["name"].astype(str)))
    image_rows, box_rows = [], []
    files = sorted(xml_dir.rglob("*.xml"))
    if not files:
        raise AcolError(f"no VOC XML files in {xml_dir}")
    for file in files:
        try:
            tree = ElementTree.fromstring(_read_text(file, issues))
        except ElementTree.ParseError:
            _count(issues, "unreadable_file")
            continue
        name = tree.findtext("filename") or file.with_suffix(".jpg").name
        relative = (file.parent.relative_to(xml_dir) / name).as_posix()
        width = tree.findtext("size/width")
        height = tree.findtext("size/height")
        areas: dict[str, float] = {}
        for obj in tree.iter("object"):
            label = (obj.findtext("name") or "").strip()
            label = mapping.get(label, label)
            values = [obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
            box_rows.append([relative, *values])
            try:
                area = (float(values[2]) - float(values[0])) * (float(values[3]) - float(values[1]))
            except (TypeError, ValueError):
                area = 0.0
            areas[label] = areas.get(label, 0.0) + max(area, 0.0)
        label = max(areas, key=areas.get) if areas else ""
        image_rows.append([relative, label, _split_of(relative), width, height])
    images = pd.DataFrame(image_rows, columns=IMAGE_COLUMNS)
    images.loc[images["width"].astype(float) <= 0, ["width", "height"]] = np.nan
    boxes = pd.DataFrame(box_rows, columns=BOX_COLUMNS)
    classes = sorted(set(mapping.values())) if mapping else []
    return finish(root, images, boxes, classes, issues)


def read_coco(path: str | Path, label_rule: str = "largest-area") -> Annotations:
    """A COCO instances JSON (bbox x y w h); label: category of largest total area, or
    with `label_rule='most-boxes'` the category with most boxes."""
    import json

    file = Path(path)
    issues: dict[str, int] = {}
    try:
        data = json.loads(_read_text(file, issues) or "{}")
    except json.JSONDecodeError as exc:
        raise AcolError(f"{file} is not JSON: {exc.msg} at line {exc.lineno}") from None
    categories = {c.get("id"): str(c.get("name")) for c in data.get("categories", [])}
    images = {i.get("id"): i for i in data.get("images", [])}
    box_rows, weights = [], {}
    for ann in data.get("annotations", []):
        image = images.get(ann.get("image_id"))
        bbox = ann.get("bbox") or []
        if image is None:
            _count(issues, "box_without_image")
            continue
        if ann.get("category_id") not in categories:
            _count(issues, "unknown_class")
            continue
        if len(bbox) != 4:
            _count(issues, "bad_box")
            continue
        x, y, w, h = bbox
        name = str(image.get("file_name"))
        box_rows.append([name, x, y, _plus(x, w), _plus(y, h)])
        label = categories[ann["category_id"]]
        score = 1.0 if label_rule == "most-boxes" else max(_plus(0, w) * _plus(0, h), 0.0)
        per_image = weights.setdefault(name, {})
        per_image[label] = per_image.get(label, 0.0) + score
    image_rows = []
    for image in images.values():
        name = str(image.get("file_name"))
        labels = weights.get(name, {})
        label = max(labels, key=labels.get) if labels else ""
        image_rows.append([name, label, _split_of(name), image.get("width"), image.get("height")])
    return finish(file.parent, pd.DataFrame(image_rows, columns=IMAGE_COLUMNS),
                  pd.DataFrame(box_rows, columns=BOX_COLUMNS),
                  sorted(categories.values()), issues)


def _plus(a, b) -> float:
    try:
        return float(a) + float(b)
    except (TypeError, ValueError):
        return np.nan


def read_labelme(path: str | Path) -> Annotations:
    """labelme JSON files beside the images (rectangle shapes); label = largest total area."""
    import json

    root = Path(path)
    issues: dict[str, int] = {}
    image_rows, box_rows = [], []
    files = sorted(root.rglob("*.json"))
    if not files:
        raise AcolError(f"no labelme JSON files in {root}")
    for file in files:
        try:
            data = json.loads(_read_text(file, issues) or "{}")
        except json.JSONDecodeError:
            _count(issues, "unreadable_file")
            continue
        name = data.get("imagePath") or file.with_suffix(".jpg").name
        relative = (file.parent.relative_to(root) / Path(name).name).as_posix()
        areas: dict[str, float] = {}
        for shape in data.get("shapes", []):
            points = shape.get("points") or []
            if shape.get("shape_type", "rectangle") != "rectangle" or len(points) != 2:
                _count(issues, "not_a_rectangle")
                continue
            (xa, ya), (xb, yb) = points
            # labelme keeps the two corners in drawing order: sort them
            box_rows.append([relative, min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)])
            label = str(shape.get("label", ""))
            areas[label] = areas.get(label, 0.0) + abs((xb - xa) * (yb - ya))
        label = max(areas, key=areas.get) if areas else ""
        image_rows.append([relative, label, _split_of(relative),
                           data.get("imageWidth"), data.get("imageHeight")])
    return finish(root, pd.DataFrame(image_rows, columns=IMAGE_COLUMNS),
                  pd.DataFrame(box_rows, columns=BOX_COLUMNS), [], issues)


def read_csv(path: str | Path) -> Annotations:
    """`image,label,x0,y0,x1,y1[,split]` with a header; more rows for more boxes.

    Images resolve against the file's folder, or its `images/` folder when present.
    """
    import csv as csv_module

    file = Path(path)
    issues: dict[str, int] = {}
    lines = _read_text(file, issues).splitlines()
    rows = list(csv_module.reader(lines))
    if not rows:
        return finish(file.parent, pd.DataFrame(columns=IMAGE_COLUMNS),
                      pd.DataFrame(columns=BOX_COLUMNS), [], issues)
    header = [h.strip().lower() for h in rows[0]]
    if header[:6] != ["image", "label", "x0", "y0", "x1", "y1"]:
        raise AcolError(f"{file}: the first line must be image,label,x0,y0,x1,y1[,split]")
    image_rows, box_rows = [], []
    for fields in rows[1:]:
        if not fields or not "".join(fields).strip():
            continue
        if len(fields) != len(header):
            _count(issues, "wrong_column_count")
            continue
        record = dict(zip(header, (f.strip() for f in fields)))
        split = record.get("split") or _split_of(record["image"])
        image_rows.append([record["image"], record["label"], split, np.nan, np.nan])
        if any(record[k] for k in ("x0", "y0", "x1", "y1")):
            box_rows.append([record["image"], *(record[k] for k in ("x0", "y0", "x1", "y1"))])
    images = pd.DataFrame(image_rows, columns=IMAGE_COLUMNS)
    # several rows of one image are its boxes, not duplicates
    images = images.drop_duplicates("image") if len(images) else images
    root = file.parent / "images" if (file.parent / "images").is_dir() else file.parent
    boxes = pd.DataFrame(box_rows, columns=BOX_COLUMNS)
    return finish(root, images, boxes, [], issues)


def read_masks(path: str | Path) -> Annotations:
    """Binary mask images matched to images by relative path without extension.

    PATH holds an image folder and a folder whose name contains `mask` (e.g.
    `horse_test/` and `mask_test/`, or synth's `images/` and `masks/`). The box of an
    image is the tight rectangle of its mask; the label is the class folder, or
    PATH's name when images are not in class folders.
    """
    import cv2

    root_dir = Path(path)
    if not root_dir.is_dir():
        raise AcolError(f"mask folder {root_dir} does not exist")
    subdirs = [d for d in sorted(root_dir.iterdir()) if d.is_dir()]
    mask_dirs = [d for d in subdirs if "mask" in d.name.lower()]
    image_dirs = [d for d in subdirs if "mask" not in d.name.lower()]
    if not mask_dirs or not image_dirs:
        raise AcolError(f"{root_dir} needs an image folder and a mask folder (name with 'mask')")
    mask_dir, image_dir = mask_dirs[0], image_dirs[0]
    issues: dict[str, int] = {}
    masks_by_stem = {p.relative_to(mask_dir).with_suffix("").as_posix(): p
                     for p in mask_dir.rglob("*") if p.is_file() and is_image_file(p)}
    image_rows, box_rows, mask_rows = [], [], []
    for file in sorted(p for p in image_dir.rglob("*") if p.is_file() and is_image_file(p)):
        relative = file.relative_to(image_dir).as_posix()
        stem = file.relative_to(image_dir).with_suffix("").as_posix()
        parts = relative.split("/")
        label = parts[-2] if len(parts) >= 2 and parts[-2] not in ("train", *VALIDATION_SPLITS) \
            else root_dir.name
        mask_file = masks_by_stem.pop(stem, None)
        if mask_file is None:
            _count(issues, "image_without_mask")
            continue
        mask = cv2.imread(str(mask_file), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            _count(issues, "unreadable_file")
            continue
        height, width = mask.shape
        image_rows.append([relative, label, _split_of(relative), width, height])
        mask_rows.append([relative, mask_file.relative_to(root_dir).as_posix(), ""])
        ys, xs = np.nonzero(mask > 0)
        if len(xs):
            box_rows.append([relative, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    _count(issues, "mask_without_image", len(masks_by_stem))
    result = finish(image_dir, pd.DataFrame(image_rows, columns=IMAGE_COLUMNS),
                    pd.DataFrame(box_rows, columns=BOX_COLUMNS), [], issues,
                    pd.DataFrame(mask_rows, columns=MASK_COLUMNS), read_sizes=False)
    result.mask_root = root_dir
    return result


READERS: dict[str, Callable[[str], Annotations]] = {
    "folder": read_folder,
    "cub": read_cub,
    "wsol": read_wsol,
    "voc": read_voc,
    "coco": read_coco,
    "labelme": read_labelme,
    "csv": read_csv,
    "masks": read_masks,
}


def detect_format(path: Path) -> str:
    """The format of a bare annotation path, from the files it holds."""
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        if path.suffix.lower() == ".json":
            return "coco"
        raise AcolError(f"cannot tell the annotation format of {path}; name it as FORMAT:PATH")
    if (path / "images.txt").is_file() and (path / "image_class_labels.txt").is_file():
        return "cub"
    if (path / "image_ids.txt").is_file() and (path / "class_labels.txt").is_file():
        return "wsol"
    if path.is_dir():
        if any((path / "annotations").glob("*.xml")) or any(path.glob("*.xml")):
            return "voc"
        subdirs = [d.name.lower() for d in path.iterdir() if d.is_dir()]
        if any("mask" in d for d in subdirs) and any("mask" not in d for d in subdirs):
            return "masks"
        if next(path.rglob("*.json"), None) is not None:
            return "labelme"
        return "folder"
    raise AcolError(f"cannot tell the annotation format of {path}; name it as FORMAT:PATH")


COCO_LABEL_RULES = ("largest-area", "most-boxes")


def read_source(source: str, label_rule: str | None = None) -> Annotations:
    """Read `FORMAT:PATH` or a bare PATH whose format is detected. `label_rule` picks a
    coco image's label (largest-area, the default, or most-boxes); other formats ignore it."""
    if label_rule is not None and label_rule not in COCO_LABEL_RULES:
        raise AcolError(f"unknown label rule {label_rule!r}; use {' or '.join(COCO_LABEL_RULES)}")
    fmt, sep, rest = source.partition(":")
    if sep and fmt in READERS:
        if not Path(rest).exists():
            raise AcolError(f"annotation source {rest} does not exist")
        return _read(fmt, rest, label_rule)
    if sep and len(fmt) > 1 and not Path(source).exists():
        raise AcolError(f"unknown annotation format {fmt!r}; known: {', '.join(READERS)}")
    path = Path(source)
    if not path.exists():
        raise AcolError(f"data source {source} does not exist")
    return _read(detect_format(path), str(path), label_rule)


def _read(fmt: str, path: str, label_rule: str | None) -> Annotations:
    if fmt == "coco" and label_rule is not None:
        return READERS[fmt](path, label_rule=label_rule)
    return READERS[fmt](path)
