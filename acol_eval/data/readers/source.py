"""Which reader reads a source: `FORMAT:PATH`, or a bare PATH whose format is detected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from acol_eval.data.boxformats import BoxFormat
from acol_eval.data.readers.folders import holds_masks, read_folder, read_masks
from acol_eval.data.readers.jsonfiles import (
    COCO_BOXES,
    COCO_LABEL_RULES,
    LABELME_BOXES,
    holds_labelme,
    read_coco,
    read_labelme,
)
from acol_eval.data.readers.table import Annotations
from acol_eval.data.readers.textfiles import (
    CSV_BOXES,
    CUB_BOXES,
    WSOL_BOXES,
    check_split_folders,
    read_csv,
    read_cub,
    read_wsol,
    wsol_split_folders,
)
from acol_eval.data.readers.voc import VOC_BOXES, holds_voc, read_voc
from acol_eval.util.errors import AcolError


@dataclass(frozen=True)
class Reader:
    """One annotation format: its reader `read(PATH, image_root=None) -> Annotations`
    (coco also takes label_rule), what a source of it is (one line), and how its
    boxes are written (None: it has none, or they are made from masks)."""

    read: Callable[..., Annotations]
    summary: str
    box_format: BoxFormat | None = None

    @property
    def description(self) -> str:
        """The summary and, when the format has boxes, how they are written."""
        return self.summary + (f"; boxes: {self.box_format.text}" if self.box_format else "")


# The annotation formats, by the name a source gives as FORMAT:PATH: the CLI's help
# and acol_eval.list_formats() read this table.
READERS: dict[str, Reader] = {
    "folder": Reader(read_folder, "an ImageFolder tree ROOT/[split/]class/image, labels only"),
    "cub": Reader(read_cub, "a CUB-200-2011 root (images.txt, bounding_boxes.txt, ...)",
                  CUB_BOXES),
    "wsol": Reader(read_wsol, "a wsolevaluation metadata folder (image_ids.txt, "
                              "localization.txt, ...)", WSOL_BOXES),
    "voc": Reader(read_voc, "Pascal VOC XML files, one per image (ImageNet's boxes)",
                  VOC_BOXES),
    "coco": Reader(read_coco, "a COCO instances JSON file", COCO_BOXES),
    "labelme": Reader(read_labelme, "labelme JSON files beside the images (rectangles)",
                      LABELME_BOXES),
    "csv": Reader(read_csv, "a CSV file image,label,x0,y0,x1,y1[,split]", CSV_BOXES),
    "masks": Reader(read_masks, "binary mask images beside an image folder (boxes: "
                                "each mask's tight rectangle)"),
}


def format_descriptions() -> dict[str, str]:
    """Every annotation format's name and one line describing it, in READERS' order."""
    return {name: reader.description for name, reader in READERS.items()}


def detect_format(path: Path) -> str:
    """The format of a bare annotation path, from the files it holds.

    A `.csv` file is csv, a `.json` file coco. A folder is cub (images.txt and
    image_class_labels.txt), wsol (image_ids.txt and class_labels.txt), voc (an XML
    file with an `<annotation>` root in it or in annotations/), masks (a folder named
    with 'mask' whose files share names with an image folder beside it), labelme
    only when one of its first JSON files is a labelme file (an object with a
    `shapes` list and an `imagePath`; acol-eval run and report folders inside are
    ignored, so a stray JSON file or a run folder leaves a plain image folder a
    folder), and otherwise folder.
    """
    path = Path(path)
    try:
        if path.is_file():
            if path.suffix.lower() == ".csv":
                return "csv"
            if path.suffix.lower() == ".json":
                return "coco"
        elif path.is_dir():
            return _folder_format(path)
    except (OSError, RecursionError) as exc:  # RecursionError: folders nested too deep
        raise AcolError(f"cannot read {shown(str(path))}: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
    raise AcolError(f"cannot tell the annotation format of {path}; name it as FORMAT:PATH")


def _folder_format(path: Path) -> str:
    if (path / "images.txt").is_file() and (path / "image_class_labels.txt").is_file():
        return "cub"
    if (path / "image_ids.txt").is_file() and (path / "class_labels.txt").is_file():
        return "wsol"
    if wsol_split_folders(path):  # wsolevaluation's metadata/DATASET, one level too high
        check_split_folders(path)
    if holds_voc(path):
        return "voc"
    if holds_masks(path):
        return "masks"
    if holds_labelme(path):
        return "labelme"
    return "folder"


def shown(text: str) -> str:
    """A name for a one-line message: as it is when printable, else quoted with escapes
    (a newline or a NUL byte in a path must not break the line)."""
    return text if text.isprintable() else repr(text)


def _locate(source: str) -> tuple[str, str]:
    """(format, path) of a source string; a one-line error for anything unusable."""
    if not source.strip():
        raise AcolError("the annotation source is empty")
    fmt, sep, rest = source.partition(":")
    try:
        if sep and fmt in READERS:
            if not rest.strip():
                raise AcolError(f"{fmt}: needs a path, e.g. {fmt}:PATH")
            if not Path(rest).exists():
                raise AcolError(f"annotation source {shown(rest)} does not exist")
            return fmt, rest
        if sep and len(fmt) > 1 and not Path(source).exists():
            raise AcolError(f"unknown annotation format {fmt!r}; known: {', '.join(READERS)}")
        path = Path(source)
        if not path.exists():
            raise AcolError(f"data source {shown(source)} does not exist")
        return detect_format(path), str(path)
    except (OSError, ValueError) as exc:  # e.g. an over-long name in the path
        raise AcolError(f"cannot use annotation source {shown(source)}: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None


def read_source(source: str | Path, label_rule: str | None = None,
                image_root: str | Path | None = None) -> Annotations:
    """Read `FORMAT:PATH` or a bare PATH whose format is detected.

    `label_rule` picks a coco image's label (largest-area, the default, or
    most-boxes); other formats ignore it. `image_root` is where the source's relative
    image paths resolve (`Annotations.root`, and where unknown sizes are read from);
    without it each format has its own default (see each reader).
    """
    source = str(source)
    if label_rule is not None and label_rule not in COCO_LABEL_RULES:
        raise AcolError(f"unknown label rule {label_rule!r}; use {' or '.join(COCO_LABEL_RULES)}")
    root = None
    if image_root is not None:
        root = Path(image_root)
        if not str(image_root).strip() or not root.is_dir():
            raise AcolError(f"image folder {shown(str(image_root))} does not exist or is not "
                            "a folder")
    fmt, path = _locate(source)
    options: dict = {"image_root": root}
    if fmt == "coco" and label_rule is not None:
        options["label_rule"] = label_rule
    try:
        return READERS[fmt].read(path, **options)
    except (OSError, RecursionError) as exc:  # a folder that cannot be listed, or too deep
        raise AcolError(f"cannot read annotation source {shown(source)}: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
