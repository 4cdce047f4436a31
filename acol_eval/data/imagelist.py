"""Which images `localize` sweeps, relative to which root, with their labels.

IMAGES is read the same way every time:
- `FORMAT:PATH` (cub:, wsol:, labelme:, ...): an annotation source, labels known;
- a folder holding CUB's or wsolevaluation's marker files: that annotation source
  (those file pairs cannot be there by accident);
- any other folder: images, searched recursively. A `.json` or `.xml` beside the
  images does not turn the folder into labelme or VOC annotations (name the format
  for that), and the run's own output folders inside it are skipped;
- a regular file: a list of image paths, one a line (relative to the list's folder,
  or absolute).
Reading the list never decodes an image; decoding happens in `SweepImages`, which
refuses what is not a regular file (a FIFO would block the sweep forever) and names
that cannot be written to a UTF-8 CSV.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.data.datasets import ImagesForModel, check_regular, decode_for_model
from acol_eval.data.readers import READERS, is_image_file, read_source
from acol_eval.data.readers.textfiles import check_split_folders
from acol_eval.util.errors import AcolError
from acol_eval.util.safeio import LOCK_NAME

LIST_FILE_LIMIT = 1 << 30  # a list file of a gigabyte is a mistake, not a list


@dataclass(frozen=True)
class ImageList:
    """`images`: names relative to `root` ('/' separators; absolute when a list file
    gave them so), sorted, unique; `labels`: class names or None, one per image;
    `boxes`: image name -> (g, 4) float64 ground-truth boxes x0, y0, x1, y1 in original
    pixels, x1/y1 exclusive, for images of an annotation source that has them (the
    overlays draw them; nothing else reads them)."""

    root: Path
    images: list[str]
    labels: list[str | None]
    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    source: str | None = None  # the annotation source the names come from, if any


def printable(name: str) -> str:
    """`name` as text a UTF-8 file can hold: undecodable bytes shown as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --------------------------------------------------------------------------- sources


def _annotation_folder(path: Path) -> bool:
    """A bare folder that is CUB or wsolevaluation metadata (both marker files present)."""
    return ((path / "images.txt").is_file() and (path / "image_class_labels.txt").is_file()) or \
        ((path / "image_ids.txt").is_file() and (path / "class_labels.txt").is_file())


def _scan_folder(root: Path, skip: list[Path]) -> list[str]:
    """Image files under `root` (regular files only), leaving out the folders in `skip`
    and every folder an acol-eval command writes (it holds safeio's lock file): a run
    folder or an overlay folder inside the image folder is output, not input."""
    skipped = {os.path.realpath(folder) for folder in skip}
    names = []
    for folder, dirs, files in os.walk(root):
        if folder != str(root) and LOCK_NAME in files:
            dirs.clear()
            continue
        dirs[:] = sorted(d for d in dirs
                         if os.path.realpath(os.path.join(folder, d)) not in skipped)
        for name in files:
            path = Path(folder, name)
            if is_image_file(path) and path.is_file():
                names.append(path.relative_to(root).as_posix())
    return sorted(names)


def _read_list_file(path: Path) -> list[str]:
    """The names of a list file: one a line, blank lines and '#' comments ignored. Bytes
    that are not UTF-8 survive as surrogates (the image is then reported, not crashed on)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(LIST_FILE_LIMIT + 1)
    except OSError as exc:
        raise AcolError(f"cannot read the list file {path}: {exc.strerror}") from None
    if len(data) > LIST_FILE_LIMIT:
        raise AcolError(f"the list file {path} is over {LIST_FILE_LIMIT >> 20} MB")
    if b"\0" in data:
        raise AcolError(f"{path} is not a text list of image paths (it holds NUL bytes)")
    lines = [line.strip() for line in data.decode("utf-8", "surrogateescape").splitlines()]
    return sorted({line for line in lines if line and not line.startswith("#")})


def _from_annotations(source: str, split: str | None, image_root: str | None) -> ImageList:
    annotations = read_source(source, image_root=image_root)
    root = annotations.root
    if split is not None:
        if split not in annotations.splits:
            raise AcolError(
                f"{source} has no split {split!r} (found: {', '.join(annotations.splits)})"
            )
        annotations = annotations.split(split)
    table = annotations.images.drop_duplicates("image").sort_values("image")
    if table.empty:
        raise AcolError(f"{source} lists no images")
    return ImageList(root, [str(v) for v in table["image"]], table["label"].tolist(),
                     _boxes_by_image(annotations.boxes), source)


def _boxes_by_image(boxes: pd.DataFrame) -> dict[str, np.ndarray]:
    """image -> (g, 4) float64 boxes (x0, y0, x1, y1; original pixels, x1/y1 exclusive);
    one sort instead of a pandas group per image (a million boxes in a second)."""
    if not len(boxes):
        return {}
    codes, names = pd.factorize(boxes["image"].astype(str))
    order = np.argsort(codes, kind="stable")
    coords = boxes[["x0", "y0", "x1", "y1"]].to_numpy(dtype=np.float64)[order]
    cuts = np.flatnonzero(np.diff(codes[order])) + 1
    return dict(zip(names, np.split(coords, cuts)))


def _labels_for(names: list[str], labels_source: str | None) -> list[str | None]:
    """Labels of a folder's or list's images from another annotation source, matched by
    relative path, or by file name when file names are unambiguous there."""
    if not labels_source:
        return [None] * len(names)
    table = read_source(labels_source).images
    by_path = dict(zip(table["image"], table["label"]))
    by_name = {Path(k).name: v for k, v in by_path.items()}
    if len(by_name) != len(by_path):
        by_name = {}  # basenames are ambiguous: match full relative paths only
    return [by_path.get(n, by_name.get(Path(n).name)) for n in names]


def list_images(images: str, split: str | None = None, image_root: str | None = None,
                labels: str | None = None, skip: tuple[Path, ...] = ()) -> ImageList:
    """Which images to sweep (see the module docstring); `skip` are folders to leave out
    of a folder scan (the run's own output folders)."""
    fmt, sep, _ = images.partition(":")
    path = Path(images)
    if sep and fmt in READERS and not path.exists():
        return _from_annotations(images, split, image_root)
    if not path.exists():
        raise AcolError(f"{images} does not exist")
    if path.is_dir() and _annotation_folder(path):
        return _from_annotations(images, split, image_root)
    if path.is_dir():
        names, root = _scan_folder(path, list(skip)), path
    elif path.is_file():
        # one image file is a list of one (a photo is no text list of paths)
        names, root = (([path.name], path.parent) if is_image_file(path)
                       else (_read_list_file(path), path.parent))
    else:
        raise AcolError(f"{images} is neither a folder nor a list file")
    if not names:
        if path.is_dir():
            check_split_folders(path)  # wsolevaluation metadata one level too high
        raise AcolError(f"no images found in {images} (jpg, jpeg, png, bmp, webp, tif)")
    return ImageList(root, names, _labels_for(names, labels))


def source_boxes(images: str, split: str | None = None, image_root: str | None = None
                 ) -> dict[str, np.ndarray]:
    """The ground-truth boxes of IMAGES (see ImageList.boxes) when it names an annotation
    source, else {}: what `boxes --overlays` draws for a run localised from one."""
    fmt, sep, _ = images.partition(":")
    path = Path(images)
    if (sep and fmt in READERS and not path.exists()) or (
            path.is_dir() and _annotation_folder(path)):
        return _from_annotations(images, split, image_root).boxes
    return {}


def missing_images(listing: ImageList) -> list[str]:
    """The listed names with no file under the listing's root (absolute names as they
    are), in listing order: a stat per image, no decoding."""
    missing = []
    for name in listing.images:
        try:
            found = os.path.isfile(listing.root / name)
        except (OSError, ValueError):  # a name the file system cannot even look up
            found = False
        if not found:
            missing.append(name)
    return missing


def label_indices(labels: list[str | None], classes: list[str]) -> tuple[list[int], int]:
    """Class index of every label (-1 when absent or unknown) and the unknown count."""
    index = {name: i for i, name in enumerate(classes)}
    out, unknown = [], 0
    for label in labels:
        if label is None or label == "" or (isinstance(label, float) and np.isnan(label)):
            out.append(-1)
            continue
        text = str(label)
        if text in index:
            out.append(index[text])
        elif text.isascii() and text.isdigit() and int(text) < len(classes):
            out.append(int(text))  # integer class ids (wsolevaluation's class_labels.txt)
        else:
            out.append(-1)
            unknown += 1
    return out, unknown


def fingerprint(listing: ImageList) -> str:
    """SHA-256 over every listed image's name, size and modification time: a resumed run
    must see the very files the interrupted one saw. Missing files count as size -1."""
    digest = hashlib.sha256(os.fsencode(str(listing.root)))
    for name in listing.images:
        try:
            info = os.stat(listing.root / name)
            size, mtime = info.st_size, info.st_mtime_ns
        except (OSError, ValueError):
            size, mtime = -1, 0
        encoded = name.encode("utf-8", "surrogateescape")
        digest.update(b"\0" + encoded + f"\0{size}\0{mtime}".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- decoding


class SweepImages(ImagesForModel):
    """`ImagesForModel` for names from untrusted lists: a name that is not UTF-8 or a file
    that is not regular becomes an error row instead of a crash or a hang."""

    def __init__(self, root: Path, names: list[str], input_size: int, mean, std) -> None:
        super().__init__([root / name for name in names], input_size, mean, std)
        self.names = names

    def __getitem__(self, position: int):
        if not is_utf8(self.names[position]):
            return position, None, 0, 0, "UnicodeError: the file name is not valid UTF-8"
        try:
            check_regular(self.paths[position])
            image, width, height = decode_for_model(self.paths[position], self.input_size)
            return position, self.transform(image), width, height, ""
        except Exception as exc:  # noqa: BLE001 - reported in errors.csv, the run goes on
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            return position, None, 0, 0, f"{type(exc).__name__}: {reason}"
