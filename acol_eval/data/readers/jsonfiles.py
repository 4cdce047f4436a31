"""JSON formats: COCO instances files and labelme files beside the images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from acol_eval.data.boxformats import BoxFormat, convert
from acol_eval.data.readers.table import (
    BOX_COLUMNS,
    IMAGE_COLUMNS,
    Annotations,
    count,
    default_root,
    describe,
    finish,
    outside_outputs,
    read_member,
    read_text,
    split_of,
)
from acol_eval.util.errors import AcolError

COCO_LABEL_RULES = ("largest-area", "most-boxes")
COCO_BOXES = BoxFormat.COCO_XYWH  # bbox [x, y, w, h]
LABELME_BOXES = BoxFormat.XYXY  # a rectangle's two corners, sorted
# Detection reads at most this many JSON files, each at most this large, to tell
# a labelme folder from a folder of images with a stray JSON file in it.
DETECTION_FILES = 16
DETECTION_BYTES = 64 << 20


def parse_json(text: str) -> object:
    """JSON text as Python objects; ValueError for anything that is not JSON, including
    nesting too deep for the parser and integers too long to convert."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _number(value) -> float | None:
    """A JSON number (not a boolean) as a float; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf


def _key(value):
    """A JSON value usable as a dict key (ids); None for lists and objects."""
    return None if isinstance(value, (list, dict)) else value


def _records(data: dict, name: str, file: Path) -> list:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise AcolError(f"{file}: {name!r} must be a list, not {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- COCO


def _coco_document(file: Path, issues: dict[str, int]) -> dict:
    try:
        data = parse_json(read_text(file, issues) or "{}")
    except json.JSONDecodeError as exc:
        raise AcolError(f"{file} is not JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError as exc:
        raise AcolError(f"{file} is not usable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AcolError(f"{file} is not a COCO instances file: its top level is a "
                        f"{type(data).__name__}, not an object")
    return data


def _coco_tables(data: dict, file: Path, issues: dict[str, int]) -> tuple[dict, dict]:
    """Categories by id (name as text) and image records by id; records without a
    usable id, name or file_name are counted (`bad_row`), repeated ids keep the first
    (`duplicate_row`)."""
    categories: dict = {}
    for record in _records(data, "categories", file):
        key = _key(record.get("id")) if isinstance(record, dict) else None
        name = record.get("name") if isinstance(record, dict) else None
        if key is None or not isinstance(name, (str, int, float)) or isinstance(name, bool):
            count(issues, "bad_row")
            continue
        categories.setdefault(key, str(name))
    images: dict = {}
    for record in _records(data, "images", file):
        key = _key(record.get("id")) if isinstance(record, dict) else None
        name = record.get("file_name") if isinstance(record, dict) else None
        if key is None or not isinstance(name, str) or not name.strip():
            count(issues, "bad_row")
        elif key in images:
            count(issues, "duplicate_row")
        else:
            images[key] = record
    return categories, images


def _coco_box(ann, images: dict, categories: dict, issues: dict[str, int]):
    """(file name, category name, x, y, w, h) of one annotation, or None (counted)."""
    if not isinstance(ann, dict) or (image := images.get(_key(ann.get("image_id")))) is None:
        count(issues, "box_without_image")
        return None
    category = categories.get(_key(ann.get("category_id")))
    if category is None:
        count(issues, "unknown_class")
        return None
    bbox = ann.get("bbox")
    values = [_number(v) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 else []
    if len(values) != 4 or any(v is None for v in values):
        count(issues, "bad_box")
        return None
    return (image["file_name"], category, *values)


def read_coco(path: str | Path, label_rule: str = "largest-area",
              image_root: Path | None = None) -> Annotations:
    """A COCO instances JSON (bbox [x, y, w, h] in pixels, four JSON numbers; anything
    else is a `bad_box`). An image's label is the category of largest total box area,
    or with `label_rule='most-boxes'` the category with most boxes. Images resolve
    under `image_root`, else the file's folder or its images/ folder, whichever holds
    the first images named (the file's folder when neither does); an absolute
    file_name is kept."""
    file = Path(path)
    issues: dict[str, int] = {}
    data = _coco_document(file, issues)
    categories, images = _coco_tables(data, file, issues)
    names, bboxes, weights = [], [], {}
    with_area = label_rule != "most-boxes"
    for ann in _records(data, "annotations", file):
        found = _coco_box(ann, images, categories, issues)
        if found is None:
            continue
        name, label, x, y, w, h = found
        names.append(name)
        bboxes.append([x, y, w, h])
        score = max(w * h, 0.0) if with_area else 1.0
        per_image = weights.setdefault(name, {})
        per_image[label] = per_image.get(label, 0.0) + (score if score == score else 0.0)
    image_rows = []
    for image in images.values():
        name = image["file_name"]
        labels = weights.get(name, {})
        label = max(labels, key=labels.get) if labels else ""
        image_rows.append([name, label, split_of(name), image.get("width"), image.get("height")])
    root = image_root or default_root([file.parent, file.parent / "images"],
                                      (row[0] for row in image_rows))
    xyxy = convert(bboxes, COCO_BOXES, BoxFormat.XYXY)
    boxes = pd.DataFrame({"image": pd.Series(names, dtype=object), "x0": xyxy[:, 0],
                          "y0": xyxy[:, 1], "x1": xyxy[:, 2], "y1": xyxy[:, 3]},
                         columns=BOX_COLUMNS)
    return finish(root, pd.DataFrame(image_rows, columns=IMAGE_COLUMNS), boxes,
                  sorted(set(categories.values())), issues)


# --------------------------------------------------------------------------- labelme


def is_labelme_document(data: object) -> bool:
    """A labelme file is a JSON object with a `shapes` list and an `imagePath`."""
    return isinstance(data, dict) and isinstance(data.get("shapes"), list) \
        and "imagePath" in data


def holds_labelme(folder: Path) -> bool:
    """Whether one of the first JSON files under `folder` (outside acol-eval run and
    report folders, at most DETECTION_FILES of them) is a labelme file."""
    files = (f for f in folder.rglob("*.json") if f.is_file())
    for seen, file in enumerate(outside_outputs(folder, files)):
        if seen >= DETECTION_FILES:
            return False
        try:
            if file.stat().st_size <= DETECTION_BYTES and is_labelme_document(
                    parse_json(file.read_bytes().decode("utf-8-sig"))):
                return True
        except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
            continue
    return False


def _rectangle(shape, issues: dict[str, int]) -> tuple[str, list[float]] | None:
    """(label, [x0, y0, x1, y1]) of a rectangle shape, corners sorted; None (counted:
    `not_a_rectangle` for other shapes, `bad_box` for unusable points)."""
    if not isinstance(shape, dict):
        count(issues, "not_a_rectangle")
        return None
    points = shape.get("points") or []
    if shape.get("shape_type", "rectangle") != "rectangle" or \
            not isinstance(points, list) or len(points) != 2:
        count(issues, "not_a_rectangle")
        return None
    corners = [[_number(v) for v in p] if isinstance(p, list) and len(p) == 2 else [None]
               for p in points]
    if any(v is None for corner in corners for v in corner):
        count(issues, "bad_box")
        return None
    (xa, ya), (xb, yb) = corners
    label = shape.get("label")
    return ("" if label is None else str(label)), [min(xa, xb), min(ya, yb),
                                                     max(xa, xb), max(ya, yb)]


def _labelme_file(file: Path, root: Path, issues: dict[str, int]):
    """(image row, box rows) of one labelme file, or None (counted)."""
    text = read_member(file, issues)
    if text is None:
        return None
    try:
        data = parse_json(text or "{}")
    except ValueError:
        count(issues, "unreadable_file")
        return None
    if not is_labelme_document(data):
        count(issues, "not_labelme_file")
        return None
    name = data.get("imagePath")
    # labelme writes imagePath relative to the JSON file, with '\\' on Windows
    name = name.replace("\\", "/").rsplit("/", 1)[-1] if isinstance(name, str) else ""
    relative = (file.parent.relative_to(root) / (name or file.with_suffix(".jpg").name))
    relative = relative.as_posix()
    areas: dict[str, float] = {}
    boxes = []
    for shape in data["shapes"]:
        found = _rectangle(shape, issues)
        if found is None:
            continue
        label, box = found
        boxes.append([relative, *box])
        area = (box[2] - box[0]) * (box[3] - box[1])
        areas[label] = areas.get(label, 0.0) + (area if area == area else 0.0)
    label = max(areas, key=areas.get) if areas else ""
    row = [relative, label, split_of(relative), data.get("imageWidth"), data.get("imageHeight")]
    return row, boxes


def read_labelme(path: str | Path, image_root: Path | None = None) -> Annotations:
    """labelme JSON files beside the images (rectangle shapes); label = largest total
    area. JSON files that are not labelme files are counted (`not_labelme_file`);
    acol-eval run and report folders inside PATH are skipped; a folder without one
    usable labelme file is an unusable source."""
    root = Path(path)
    if not root.is_dir():
        raise AcolError(f"labelme folder {root} does not exist")
    issues: dict[str, int] = {}
    image_rows, box_rows = [], []
    files = sorted(outside_outputs(root, (f for f in root.rglob("*.json") if not f.is_dir())))
    if not files:
        raise AcolError(f"no labelme JSON files in {root}")
    for file in files:
        found = _labelme_file(file, root, issues)
        if found is not None:
            image_rows.append(found[0])
            box_rows += found[1]
    if not image_rows:
        raise AcolError(f"no usable labelme files in {root} ({describe(issues)})")
    return finish(image_root or root, pd.DataFrame(image_rows, columns=IMAGE_COLUMNS),
                  pd.DataFrame(box_rows, columns=BOX_COLUMNS), [], issues)
