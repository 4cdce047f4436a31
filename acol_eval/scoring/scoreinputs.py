"""What `score` scores, built from plain arguments (no ScoreConfig): where each
image's map comes from (`MapSource`: a localize run's map store, a folder of .npy
maps, the centre baseline; `check_map`, what is wrong with a map), which class's map
is read (`MapChoice`), and the tables `ScoreInputs` holds: a run's or a folder's
maps matched to the annotations, image sizes, boxes and masks by image, the
annotations' digest. scoring.load_inputs assembles them from the config; the passes
(passes.py) read them. Never imports torch."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.data.readers import Annotations
from acol_eval.maps.runfolder import LocalizeRun
from acol_eval.scoring.coverage import Coverage
from acol_eval.scoring.predictionfile import class_correctness as _class_correctness
from acol_eval.scoring.protocols import ScoringProtocol
from acol_eval.util.errors import AcolError


class MapChoice(str, Enum):
    LABEL = "label"  # the annotated class's map
    TOP1 = "top1"    # the top-1 predicted class's map (class-agnostic localisation)
    AUTO = "auto"    # the label's map where the label is a model class, else top-1


_STORES: dict[str, np.ndarray] = {}  # run folder -> its memmap, one per process


class MapKind(str, Enum):
    STORE = "store"    # a localize run's map store
    NPY = "npy"        # a folder of .npy maps named by image id
    CENTRE = "centre"  # the centre baseline: one map for every image


@dataclass(frozen=True)
class MapSource:
    """Where each image's map comes from. shape: the store's (count, h, w)."""

    kind: MapKind
    path: str
    shape: tuple[int, int, int] = (0, 0, 0)
    constant: np.ndarray | None = None

    @classmethod
    def centre(cls, side: tuple[int, int], values: np.ndarray) -> MapSource:
        return cls(MapKind.CENTRE, "", (0, *side), np.asarray(values, np.float64))

    def load(self, key: str) -> tuple[np.ndarray | None, str | None]:
        """(float64 2-D map or None, problem name or None): see check_map."""
        if self.kind is MapKind.CENTRE:
            return self.constant, None
        if self.kind is MapKind.STORE:
            maps = _STORES.get(self.path)
            if maps is None:
                maps = _STORES[self.path] = LocalizeRun(Path(self.path)).maps().maps
            return check_map(np.asarray(maps[int(float(key))], dtype=np.float64), False)
        try:
            values = np.load(Path(self.path) / f"{key}.npy", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None, "unreadable_map"
        return check_map(values, True)


def check_map(values: np.ndarray, from_other_tool: bool) -> tuple[np.ndarray | None, str | None]:
    """A raw map as score can use it, and what is wrong with it (an issue name).

    Unusable (None): complex, not numbers, empty, not 2-D after dropping axes of length 1.
    Scored as the wsoleval protocol scores them (wsolevaluation's normalisation turns them
    into an all-zero map) but counted: NaN or inf anywhere (map_not_finite), constant
    (constant_map). Maps from other tools outside [0, 1] are counted
    (map_not_normalised: wsolevaluation's evaluator expects normalised maps) and scored
    after the protocol's own min-max normalisation."""
    values = np.asarray(values)
    if np.iscomplexobj(values):
        return None, "complex_map"
    if values.dtype.kind not in "biuf":
        return None, "unreadable_map"
    values = values.squeeze()
    if values.size == 0:
        return None, "empty_map"
    if values.ndim != 2:
        return None, "map_not_2d"
    values = values.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        return values, "map_not_finite"
    low, high = values.min(), values.max()
    if low == high:
        return values, "constant_map"
    if from_other_tool and (low < 0 or high > 1):
        return values, "map_not_normalised"
    return values, None


@dataclass(frozen=True)
class ScoreInputs:
    """What is scored. table: one row per image (image, key, map, top1, top5, width,
    height, label); boxes: image -> (g, 4) float64, original pixels, x1/y1 exclusive;
    masks: image -> (mask files, ignore file); issues: counts for the report;
    coverage: which annotated images have maps (coverage.py)."""

    source: MapSource
    table: pd.DataFrame
    boxes: dict[str, np.ndarray]
    masks: dict[str, tuple[tuple[str, ...], str]]
    issues: dict[str, int]
    digest: str
    coverage: Coverage | None = None
    annotations: Annotations | None = None  # the scored split's, as read (for the page)

    def with_source(self, source: MapSource) -> ScoreInputs:
        return replace(self, source=source)

    @property
    def agnostic(self) -> bool:
        """Some image is scored with the top-1 predicted class's map, not its label's
        (class-agnostic: its figures get their own names). Not for the centre baseline,
        whose one map stands in for every class's."""
        return self.source.kind is MapKind.STORE and bool((self.table["map"] == "top1").any())

    @property
    def map_scored(self) -> str:
        """Which maps were scored (summary.csv's `map`, report.json's map_scored): label,
        top1, label+top1 (--map auto where some label is not a model class), npy (maps
        from files, taken as the label's), centre (the centre baseline)."""
        if self.source.kind is not MapKind.STORE:
            return self.source.kind.value
        used = set(self.table["map"])
        return "label+top1" if used == {"label", "top1"} else "".join(used) or "label"


NO_BOXES = np.zeros((0, 4))


def store_table(run: LocalizeRun, annotations: Annotations, choice: MapChoice,
                issues: dict[str, int]) -> tuple[MapSource, pd.DataFrame]:
    """A localize run: per predicted image its map row (by --map), top-1/5 correctness
    against the annotation label."""
    store = run.maps()
    _STORES[str(run.folder)] = store.maps  # opened once: workers fork with it
    index = store.index
    predictions = run.predictions()
    if "image" not in predictions:
        raise AcolError(f"{run.folder / 'predictions.csv'} has no image column")
    labels = predictions["image"].map(annotations.images.set_index("image")["label"])
    labels = _class_names(labels.fillna("").astype(str), store.classes)
    pred_cols = sorted((c for c in predictions if c.startswith("pred_")),
                       key=lambda c: int(c.split("_")[1]))
    preds = predictions[pred_cols].astype(str).to_numpy()
    table = pd.DataFrame({"image": predictions["image"],
                          **_class_correctness(preds, labels, store.classes)})
    label_row = _row_of(index, index["is_label"].astype(str) == "1", table["image"])
    top_row = _row_of(index, index["pred_rank"].astype(str) == "1", table["image"])
    if choice is MapChoice.TOP1:
        key, used = top_row, pd.Series("top1", index=table.index)
    else:
        key = label_row if choice is MapChoice.LABEL else label_row.fillna(top_row)
        used = pd.Series(np.where(label_row.notna(), "label", "top1"), index=table.index)
        no_label_map = label_row.isna() & table["image"].isin(annotations.images["image"])
        if no_label_map.any():
            name = ("label_not_a_model_class" if choice is MapChoice.LABEL
                    else "scored_with_top1_map")
            issues[name] = int(no_label_map.sum())
    table["key"], table["map"] = key, used
    table = table[table["key"].notna()].reset_index(drop=True)
    table["key"] = table["key"].astype(np.int64).astype(str)
    return MapSource(MapKind.STORE, str(run.folder), tuple(store.maps.shape)), table


def _row_of(index: pd.DataFrame, wanted: pd.Series, images: pd.Series) -> pd.Series:
    rows = index[wanted].drop_duplicates("image").set_index("image")["row"]
    return images.map(pd.to_numeric(rows, errors="coerce"))


def _class_names(labels: pd.Series, classes: list[str]) -> pd.Series:
    """wsolevaluation class ids (indices into the model's classes) as class names."""
    if len(labels) and not labels.isin(classes).any() and labels.str.fullmatch(
            "[0-9]+").all():
        return labels.map(lambda v: classes[int(v)] if int(v) < len(classes) else v)
    return labels


def npy_table(folder: LocalizeRun, names: pd.Series, issues: dict[str, int]
              ) -> tuple[MapSource, pd.DataFrame]:
    """A folder of .npy maps named <image id>.npy, with the image's extension (the way
    wsolevaluation's inference saves them) or without it; `names`: every image name of
    the annotation source (a map matching none is counted as map_without_annotation)."""
    run = folder.folder
    if not run.is_dir():
        raise AcolError(f"{run} is neither a localize run folder nor a folder of .npy maps")
    folder.check_finished()
    keys = sorted(p.relative_to(run).as_posix()[:-4] for p in run.rglob("*.npy"))
    if not keys:
        raise AcolError(f"{run} has no maps.json and no .npy score maps")
    by_name = dict(zip(names, names))
    by_stem = dict(zip(names.map(_strip_ext), names))
    images = [by_name.get(k) or by_stem.get(k) for k in keys]
    table = pd.DataFrame({"image": images, "key": keys, "top1": np.nan, "top5": np.nan,
                          "map": ""})
    orphans = table["image"].isna()
    if orphans.any():
        issues["map_without_annotation"] = int(orphans.sum())
    table = table[~orphans]
    twice = table[table["image"].duplicated(keep=False)]
    if len(twice):
        first = twice.iloc[0]
        other = twice[twice["image"] == first["image"]].iloc[1]
        raise AcolError(f"image {first['image']} has two maps: {first['key']}.npy and "
                        f"{other['key']}.npy; keep one naming")
    return MapSource(MapKind.NPY, str(run)), table.reset_index(drop=True)


def _strip_ext(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name


def image_sizes(images: pd.DataFrame, run: LocalizeRun, source: MapSource
                ) -> pd.DataFrame:
    """Annotation sizes, completed from a localize run's predictions.csv."""
    if source.kind is not MapKind.STORE:
        return images
    sizes = run.predictions(usecols=["image", "width", "height"])
    sizes = sizes.drop_duplicates("image").set_index("image")
    images = images.copy()
    for column in ("width", "height"):
        known = pd.to_numeric(sizes[column], errors="coerce").reindex(images.index)
        images[column] = pd.to_numeric(images[column], errors="coerce").fillna(known)
    return images


def drop_unsized(table: pd.DataFrame, boxes: dict[str, np.ndarray],
                 protocol: ScoringProtocol, issues: dict[str, int]) -> pd.DataFrame:
    """Images with boxes need their size (to scale the boxes); masks and classification
    do not. The protocol refuses sizes it cannot allocate (native: counted)."""
    widths = pd.to_numeric(table["width"], errors="coerce").to_numpy(dtype=np.float64)
    heights = pd.to_numeric(table["height"], errors="coerce").to_numpy(dtype=np.float64)
    table["width"], table["height"] = widths, heights
    boxed = table["image"].map(lambda i: len(boxes.get(i, ())) > 0).to_numpy(dtype=bool)
    unsized = boxed & ~(np.isfinite(widths) & np.isfinite(heights) & (widths > 0)
                        & (heights > 0))
    if unsized.any():
        issues["image_without_size"] = int(unsized.sum())
    refused = [protocol.check_size(w, h) if b and not u else None
               for w, h, b, u in zip(widths, heights, boxed, unsized)]
    for name, amount in Counter(r for r in refused if r).items():
        issues[name] = amount
    keep = ~unsized & np.array([r is None for r in refused], dtype=bool)
    return table[keep].reset_index(drop=True)


def boxes_by_image(boxes: pd.DataFrame) -> dict[str, np.ndarray]:
    """image -> (g, 4) float64 boxes; one sort, no per-group pandas (that took seconds)."""
    if not len(boxes):
        return {}
    codes, names = pd.factorize(boxes["image"])
    order = np.argsort(codes, kind="stable")
    coords = boxes[["x0", "y0", "x1", "y1"]].to_numpy(dtype=np.float64)[order]
    cuts = np.flatnonzero(np.diff(codes[order])) + 1
    return dict(zip(names, np.split(coords, cuts)))


def masks_by_image(annotations: Annotations, mask_root: str | None
                   ) -> dict[str, tuple[tuple[str, ...], str]]:
    root = Path(mask_root or annotations.mask_root or annotations.root)
    found = {}
    for image, rows in annotations.masks.groupby("image"):
        ignore = next((str(root / v) for v in rows["ignore"] if isinstance(v, str) and v), "")
        found[image] = (tuple(str(root / m) for m in rows["mask"]), ignore)
    return found


def annotations_digest(table: pd.DataFrame, boxes: dict[str, np.ndarray]) -> str:
    """sha256 over the scored images' names, labels and boxes, sorted by name: two
    reports are of the same annotations only when their digests are equal."""
    import hashlib

    digest = hashlib.sha256()
    for image, label in sorted(zip(table["image"], table["label"].astype(str))):
        digest.update(f"{image}\t{label}\t".encode())
        digest.update(np.asarray(boxes.get(image, NO_BOXES), "<f8").tobytes())
        digest.update(b"\n")
    return digest.hexdigest()
