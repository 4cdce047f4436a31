"""Pascal VOC XML files (one per image, several objects each), e.g. ImageNet's boxes."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.data.boxformats import BoxFormat
from acol_eval.data.readers.table import (
    BOX_COLUMNS,
    IMAGE_COLUMNS,
    IMAGE_EXTENSIONS,
    Annotations,
    count,
    default_root,
    describe,
    finish,
    is_image_file,
    read_member,
    read_table,
    split_of,
)
from acol_eval.util.errors import AcolError

# bndbox xmin..ymax are taken as written, as x0 y0 x1 y1 with x1/y1 exclusive, as
# wsolevaluation's ImageNet metadata takes them, not as BoxFormat.VOC (1-based
# inclusive) would read them: that would move every box by a pixel and every number
# scored on VOC annotations with it.
VOC_BOXES = BoxFormat.XYXY
# Detection looks at this many XML files for a VOC <annotation> root.
DETECTION_FILES = 8


def _xml_folder(folder: Path) -> Path:
    return folder / "annotations" if (folder / "annotations").is_dir() else folder


def holds_voc(folder: Path) -> bool:
    """Whether one of the first XML files in FOLDER/annotations (else FOLDER) has the
    VOC root element `<annotation>` (a stray XML beside images does not count)."""
    files = (f for f in sorted(_xml_folder(folder).glob("*.xml")) if f.is_file())
    for seen, file in enumerate(files):
        if seen >= DETECTION_FILES:
            break
        try:
            for _, element in ElementTree.iterparse(file, events=("start",)):
                if element.tag == "annotation":
                    return True
                break
        except (OSError, ElementTree.ParseError):
            continue
    return False


def _size(tree: ElementTree.Element) -> tuple[str | None, str | None]:
    """<size> as written; a width or height of 0 or less (VOC tools write 0 when
    they do not know) means unknown, not bad."""
    width, height = tree.findtext("size/width"), tree.findtext("size/height")
    try:
        if float(width) <= 0 or float(height) <= 0:
            return None, None
    except (TypeError, ValueError):  # not numbers: finish counts them as bad_size
        pass
    return width, height


def _area(values: list[str | None]) -> float:
    try:
        area = (float(values[2]) - float(values[0])) * (float(values[3]) - float(values[1]))
    except (TypeError, ValueError):
        return 0.0
    return area if np.isfinite(area) and area > 0 else 0.0


def _voc_file(file: Path, xml_dir: Path, mapping: dict[str, str], issues: dict[str, int]):
    """(image row, box rows) of one XML file, or None (counted as `unreadable_file`)."""
    text = read_member(file, issues)
    if text is None:
        return None
    try:
        tree = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        count(issues, "unreadable_file")
        return None
    name = (tree.findtext("filename") or "").strip() or file.with_suffix(".jpg").name
    relative = (file.parent.relative_to(xml_dir) / name).as_posix()
    areas: dict[str, float] = {}
    boxes = []
    for obj in tree.iter("object"):
        label = (obj.findtext("name") or "").strip()
        label = mapping.get(label, label)
        values = [obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        boxes.append([relative, *values])
        areas[label] = areas.get(label, 0.0) + _area(values)
    label = max(areas, key=areas.get) if areas else ""
    return [relative, label, split_of(relative), *_size(tree)], boxes


def _with_extensions(root: Path, names: pd.Series) -> dict[str, str]:
    """Each name as it is, or, when it lacks an image extension (ImageNet writes
    `<filename>ILSVRC2012_val_00000001</filename>`), with the extension of the image
    file beside it under `root` ('.JPEG' first); as it is when there is none."""
    endings = (".JPEG", *IMAGE_EXTENSIONS, *(e.upper() for e in IMAGE_EXTENSIONS))
    named = {}
    for name in names:
        named[name] = name
        if not is_image_file(Path(name)):
            named[name] = next((name + e for e in endings if _is_file(root / (name + e))), name)
    return named


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def read_voc(path: str | Path, image_root: Path | None = None) -> Annotations:
    """Pascal VOC XML files (PATH or PATH/annotations); images resolve under
    `image_root`, else PATH/images or PATH, whichever holds the first images named
    (PATH/images when neither does); a filename without an image extension gets the
    extension of the image file found for it. Boxes: bndbox xmin..ymax in pixels (VOC_BOXES).

    A `classes.txt` (`id name` lines) in PATH maps object names (e.g. ImageNet synsets)
    to class names. The image label is the name with the largest total box area.
    Malformed XML is counted (`unreadable_file`), and no readable file at all is an
    unusable source; missing or non-numeric bndbox fields are bad boxes.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise AcolError(f"VOC folder {folder} does not exist")
    xml_dir = _xml_folder(folder)
    issues: dict[str, int] = {}
    mapping: dict[str, str] = {}
    if (folder / "classes.txt").exists():
        table = read_table(folder / "classes.txt", ["id", "name"], issues)
        mapping = dict(zip(table["id"], table["name"]))
    files = sorted(f for f in xml_dir.rglob("*.xml") if not f.is_dir())
    if not files:
        raise AcolError(f"no VOC XML files in {xml_dir}")
    image_rows, box_rows = [], []
    for file in files:
        found = _voc_file(file, xml_dir, mapping, issues)
        if found is not None:
            image_rows.append(found[0])
            box_rows += found[1]
    if not image_rows:
        raise AcolError(f"no usable VOC files in {xml_dir} ({describe(issues)})")
    images = pd.DataFrame(image_rows, columns=IMAGE_COLUMNS)
    root = image_root or default_root([folder / "images", folder], images["image"])
    boxes = pd.DataFrame(box_rows, columns=BOX_COLUMNS)
    named = _with_extensions(root, images["image"])
    images["image"], boxes["image"] = images["image"].map(named), boxes["image"].map(named)
    classes = sorted(set(mapping.values())) if mapping else []
    return finish(root, images, boxes, classes, issues)
