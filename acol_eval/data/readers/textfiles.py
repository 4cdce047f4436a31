"""Line-based formats: CUB-200-2011, wsolevaluation metadata, the simple CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.data.boxformats import BoxFormat, convert
from acol_eval.data.readers.table import (
    BOX_COLUMNS,
    IMAGE_COLUMNS,
    MASK_COLUMNS,
    VALIDATION_SPLITS,
    Annotations,
    count,
    default_root,
    finish,
    integers,
    read_table,
    read_text,
    split_of,
)
from acol_eval.util.errors import AcolError

CUB_BOXES = BoxFormat.CUB_XYWH  # bounding_boxes.txt
WSOL_BOXES = BoxFormat.XYXY  # localization.txt: x0,y0,x1,y1 as wsolevaluation writes them
CSV_BOXES = BoxFormat.XYXY  # x0,y0,x1,y1 columns


def _keyed(table: pd.DataFrame, whole: list[str], key: str,
           issues: dict[str, int]) -> pd.DataFrame:
    """`whole` columns parsed as integers: rows where one is not an integer are
    dropped (`bad_row`), later rows of a repeated `key` too (`duplicate_row`)."""
    for column in whole:
        table[column] = integers(table[column])
    bad = table[whole].isna().any(axis=1)
    count(issues, "bad_row", int(bad.sum()))
    table = table[~bad]
    repeated = table.duplicated(key)
    count(issues, "duplicate_row", int(repeated.sum()))
    return table[~repeated]


def _cub_images(root: Path, issues: dict[str, int]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """images.txt (id, image) and its rows joined with their class and split (every
    image lost on the way is counted), and the class names by class id."""
    files = _keyed(read_table(root / "images.txt", ["id", "image"], issues), ["id"], "id", issues)
    labels = _keyed(read_table(root / "image_class_labels.txt", ["id", "class_id"], issues),
                    ["id", "class_id"], "id", issues)
    split = _keyed(read_table(root / "train_test_split.txt", ["id", "is_train"], issues),
                   ["id", "is_train"], "id", issues)
    odd_split = ~split["is_train"].isin([0, 1])
    count(issues, "bad_row", int(odd_split.sum()))
    split = split[~odd_split]
    classes_table = _keyed(read_table(root / "classes.txt", ["class_id", "name"], issues),
                           ["class_id"], "class_id", issues)
    names = dict(zip(classes_table["class_id"], classes_table["name"]))
    table = files.merge(labels, on="id", how="left").merge(split, on="id", how="left")
    for column, issue in (("class_id", "image_without_label"), ("is_train", "image_without_split")):
        lost = table[column].isna()
        count(issues, issue, int(lost.sum()))
        table = table[~lost]
    unknown = ~table["class_id"].isin(list(names))
    count(issues, "unknown_class", int(unknown.sum()))
    return files, table[~unknown], names


def _cub_boxes(root: Path, files: pd.DataFrame, kept: pd.DataFrame,
               issues: dict[str, int]) -> pd.DataFrame:
    """bounding_boxes.txt (id x y w h) as x0 y0 x1 y1; boxes of ids that images.txt
    lacks are counted, boxes of images dropped (and counted) before are dropped."""
    file = root / "bounding_boxes.txt"
    if not file.exists():
        return pd.DataFrame(columns=BOX_COLUMNS)
    raw = read_table(file, ["id", "x", "y", "w", "h"], issues, numeric=("x", "y", "w", "h"))
    raw["id"] = integers(raw["id"])
    count(issues, "box_without_image", int((~raw["id"].isin(files["id"])).sum()))
    raw = raw.merge(kept[["id", "image"]], on="id")
    xyxy = convert(raw[["x", "y", "w", "h"]].to_numpy(dtype=float), CUB_BOXES, BoxFormat.XYXY)
    return pd.DataFrame({"image": raw["image"].astype(str).to_numpy(), "x0": xyxy[:, 0],
                         "y0": xyxy[:, 1], "x1": xyxy[:, 2], "y1": xyxy[:, 3]},
                        columns=BOX_COLUMNS)


def read_cub(path: str | Path, image_root: Path | None = None) -> Annotations:
    """A CUB-200-2011 root: images.txt, image_class_labels.txt, train_test_split.txt,
    classes.txt and (optional) bounding_boxes.txt as x y w h in pixels. Images resolve
    under `image_root`, else ROOT/images. Ids must be whole numbers (`bad_row`)."""
    root = Path(path)
    if not root.is_dir():
        raise AcolError(f"CUB folder {root} does not exist")
    issues: dict[str, int] = {}
    files, table, names = _cub_images(root, issues)
    images = pd.DataFrame({
        "image": table["image"].astype(str),
        "label": table["class_id"].map(names),
        "split": np.where(table["is_train"] == 1, "train", "test"),
        "width": np.nan,
        "height": np.nan,
    })
    boxes = _cub_boxes(root, files, table, issues)
    classes = [names[k] for k in sorted(names)]
    return finish(image_root or root / "images", images, boxes, classes, issues)


def _wsol_labels(root: Path, issues: dict[str, int]) -> pd.DataFrame:
    """class_labels.txt: `path,class` with class a whole number (else `bad_label`,
    label left empty), written without leading zeros as wsolevaluation reads it."""
    labels = read_table(root / "class_labels.txt", ["image", "label"], issues, sep=",")
    number = integers(labels["label"])
    count(issues, "bad_label", int(number.isna().sum()))
    labels["label"] = [str(int(v)) if np.isfinite(v) else "" for v in number]
    repeated = labels.duplicated("image")
    count(issues, "duplicate_row", int(repeated.sum()))
    return labels[~repeated]


WSOL_MARKERS = ("image_ids.txt", "class_labels.txt")
# the split a hint suggests first: the one the benchmark's numbers are reported on
PREFERRED_SPLITS = ("test", "val", "validation", "train")


def wsol_split_folders(root: Path) -> list[str]:
    """Sub-folders of `root` that are wsolevaluation metadata folders, sorted: what
    wsolevaluation's metadata/DATASET folder holds (train/, val/, test/)."""
    try:
        children = sorted(child for child in root.iterdir() if child.is_dir())
    except OSError:
        return []
    return [child.name for child in children
            if all((child / marker).is_file() for marker in WSOL_MARKERS)]


def check_split_folders(root: Path) -> None:
    """A wsol: ROOT without image_ids.txt whose sub-folders are metadata folders is one
    level too high: name them and the folder meant, instead of the missing file."""
    splits = wsol_split_folders(root)
    if not splits:
        return
    best = next((s for s in PREFERRED_SPLITS if s in splits), splits[0])
    raise AcolError(f"wsol:{root} holds split folders ({', '.join(splits)}), not the "
                    f"metadata itself: did you mean wsol:{root / best}?")


def read_wsol(path: str | Path, image_root: Path | None = None) -> Annotations:
    """A wsolevaluation metadata folder: image_ids.txt, class_labels.txt, image_sizes.txt
    (optional; OpenImages ships it empty, which is not an issue), localization.txt
    (optional; `path,x0,y0,x1,y1` boxes or OpenImages `path,mask,ignore` lines).

    Images resolve under `image_root`, else the metadata folder; unknown sizes are
    read from the images only when `image_root` is given (PxAP needs none).
    """
    root = Path(path)
    if not root.is_dir():
        raise AcolError(f"wsol metadata folder {root} does not exist")
    if not (root / "image_ids.txt").exists():
        check_split_folders(root)
    issues: dict[str, int] = {}
    ids = read_table(root / "image_ids.txt", ["image"], issues, sep=",")
    images = ids.merge(_wsol_labels(root, issues), on="image", how="left")
    count(issues, "image_without_label", int(images["label"].isna().sum()))
    images["label"] = images["label"].fillna("")
    sizes = read_table(root / "image_sizes.txt", ["image", "width", "height"], issues, ",",
                       numeric=("width", "height"), optional=True)
    images = images.merge(sizes.drop_duplicates("image"), on="image", how="left")
    images["split"] = root.name if root.name in ("train", *VALIDATION_SPLITS) else "all"
    boxes = pd.DataFrame(columns=BOX_COLUMNS)
    masks = pd.DataFrame(columns=MASK_COLUMNS)
    localization = root / "localization.txt"
    if localization.exists():
        text = read_text(localization, {})
        first = next((line for line in text.splitlines() if line.strip()), "")
        if len(first.split(",")) == 3:  # OpenImages: path,mask,ignore
            masks = read_table(localization, MASK_COLUMNS, issues, sep=",")
            no_mask = masks["mask"] == ""
            count(issues, "bad_row", int(no_mask.sum()))
            masks = masks[~no_mask]
        else:
            boxes = read_table(localization, BOX_COLUMNS, issues, sep=",",
                               numeric=tuple(BOX_COLUMNS[1:]))
    classes = sorted({c for c in images["label"] if c}, key=lambda c: (len(c), c))
    return finish(image_root or root, images, boxes, classes, issues, masks,
                  read_sizes=image_root is not None)


def _csv_rows(lines: list[str], issues: dict[str, int]) -> list[list[str]]:
    """CSV records; a record the csv module refuses (e.g. a field past its size
    limit) is counted (`bad_row`) and the rest read on."""
    reader = csv.reader(lines)
    rows = []
    while True:
        try:
            rows.append(next(reader))
        except StopIteration:
            return rows
        except csv.Error:
            count(issues, "bad_row")


def read_csv(path: str | Path, image_root: Path | None = None) -> Annotations:
    """`image,label,x0,y0,x1,y1[,split][,...]` with a header; more rows for more boxes,
    empty box fields for an image without boxes.

    Images resolve under `image_root`, else the file's `images/` folder or the file's
    folder, whichever holds the first images named (`images/` when neither does);
    an absolute image path is kept as written.
    """
    file = Path(path)
    issues: dict[str, int] = {}
    rows = [r for r in _csv_rows(read_text(file, issues).splitlines(), issues)
            if "".join(r).strip()]  # blank lines are no records
    if not rows:
        return finish(image_root or default_root([file.parent / "images", file.parent], []),
                      pd.DataFrame(columns=IMAGE_COLUMNS), pd.DataFrame(columns=BOX_COLUMNS),
                      [], issues)
    header = [h.strip().lower() for h in rows[0]]
    if header[:6] != ["image", "label", "x0", "y0", "x1", "y1"]:
        raise AcolError(f"{file}: the first line must be image,label,x0,y0,x1,y1[,split]")
    image_rows, box_rows = [], []
    for fields in rows[1:]:
        if len(fields) != len(header):
            count(issues, "wrong_column_count")
            continue
        record = dict(zip(header, (f.strip() for f in fields)))
        if not record["image"]:
            count(issues, "bad_row")
            continue
        split = record.get("split") or split_of(record["image"])
        image_rows.append([record["image"], record["label"], split, np.nan, np.nan])
        if any(record[k] for k in ("x0", "y0", "x1", "y1")):
            box_rows.append([record["image"], *(record[k] for k in ("x0", "y0", "x1", "y1"))])
    images = pd.DataFrame(image_rows, columns=IMAGE_COLUMNS)
    # several rows of one image are its boxes, not duplicates
    images = images.drop_duplicates("image") if len(images) else images
    root = image_root or default_root([file.parent / "images", file.parent], images["image"])
    return finish(root, images, pd.DataFrame(box_rows, columns=BOX_COLUMNS), [], issues)
