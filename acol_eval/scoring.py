"""The `score` job (SPEC 7): read maps and annotations, stream images through the pure
metric functions on all cores, write the reports. Never imports torch.

Two passes over the maps: the first sums correct-counts at every CAM threshold (the
curves, hence the best thresholds); the second, one threshold per image, gives the
per-image boxes, error types and the per-image correctness that the bootstrap resamples.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .boxes import (
    native_boxes,
    normalise_map,
    upsample_map,
    wsoleval_levels,
    wsoleval_uint8,
)
from .errors import AcolError
from .maps import centre_gaussian_map
from .metrics import (
    error_type,
    iou_exclusive,
    iou_inclusive,
    native_image_ious,
    scale_boxes_wsoleval,
    wsoleval_level_results,
)
from .readers import Annotations, read_source
from .sweep import load_compiled

CHUNK = 64


@dataclass
class ScoreConfig:
    run: str
    annotations: str
    out: str
    split: str | None = None
    protocol: str = "wsoleval"
    iou: list[int] = field(default_factory=lambda: [30, 50, 70])
    interval: float = 0.001
    threshold: float | None = None
    threshold_from: str | None = None
    bootstrap: int = 0
    workers: int = 0
    seed: int = 0
    baseline: str | None = None  # "centre": a centred Gaussian map instead of RUN's maps
    label_rule: str | None = None  # coco: which category labels an image
    mask_root: str | None = None  # where mask paths of the annotations resolve


# --------------------------------------------------------------------------- inputs


@dataclass
class MapSource:
    """Where each image's map comes from: a localize map store or a folder of .npy files."""

    kind: str  # "store", "npy" or "centre" (the baseline: the same map for every image)
    path: str
    shape: tuple[int, int, int] = (0, 0, 0)

    def load(self, key) -> np.ndarray:
        if self.kind == "centre":
            return centre_gaussian_map(self.shape[1], self.shape[2], sigma=0.25).astype(
                np.float64)
        if self.kind == "store":
            store = np.memmap(Path(self.path) / "maps.f16", dtype="<f2", mode="r", shape=self.shape)
            return np.asarray(store[int(key)], dtype=np.float64)
        values = np.load(Path(self.path) / f"{key}.npy", allow_pickle=False)
        return np.asarray(values, dtype=np.float64).squeeze()


def _strip_ext(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name


def _load_inputs(run: Path, annotations: Annotations, issues: dict[str, int]
                 ) -> tuple[MapSource, pd.DataFrame, str]:
    """One row per scored image: image, map key, top1/top5 correctness (NaN: no predictions)."""
    if (run / "maps.json").is_file():
        meta = json.loads((run / "maps.json").read_text())
        if meta.get("format") != "acol-eval-maps":
            raise AcolError(f"{run}/maps.json is not an acol-eval map store")
        shape = (int(meta["count"]), int(meta["height"]), int(meta["width"]))
        expected = 2 * shape[0] * shape[1] * shape[2]
        if not (run / "maps.f16").is_file() or (run / "maps.f16").stat().st_size < expected:
            raise AcolError(f"{run}/maps.f16 is missing or shorter than maps.json says")
        index = pd.read_csv(run / "maps_index.csv", dtype={"image": str})
        predictions = pd.read_csv(run / "predictions.csv", dtype={"image": str, "label": str},
                                  keep_default_na=False)
        label_rows = index[index["is_label"] == 1].drop_duplicates("image")
        table = predictions.merge(label_rows[["image", "row"]], on="image", how="left")
        pred_cols = sorted((c for c in table if c.startswith("pred_")),
                           key=lambda c: int(c.split("_")[1]))
        labels = table["image"].map(annotations.images.set_index("image")["label"])
        labels = labels.fillna("").astype(str)
        classes = meta.get("classes", [])
        if len(labels) and not labels.isin(classes).any() and labels.str.isdigit().all():
            # wsolevaluation class ids: indices into the model's classes
            labels = labels.map(lambda v: classes[int(v)] if int(v) < len(classes) else v)
        preds = table[pred_cols].astype(str).to_numpy() if pred_cols else np.zeros((len(table), 0))
        table = pd.DataFrame({
            "image": table["image"],
            "key": table["row"],
            "top1": preds[:, 0] == labels.to_numpy() if preds.shape[1] else np.nan,
            "top5": (preds[:, :5] == labels.to_numpy()[:, None]).any(axis=1)
            if preds.shape[1] else np.nan,
        })
        no_label_map = table["key"].isna() & table["image"].isin(annotations.images["image"])
        if no_label_map.any():
            issues["label_not_a_model_class"] = int(no_label_map.sum())
        table = table[table["key"].notna()]
        return MapSource("store", str(run), shape), table, "store"
    if not run.is_dir():
        raise AcolError(f"{run} is neither a localize run folder nor a folder of .npy maps")
    keys = sorted(p.relative_to(run).with_suffix("").as_posix() for p in run.rglob("*.npy"))
    if not keys:
        raise AcolError(f"{run} has no maps.json and no .npy score maps")
    by_stem = dict(zip(annotations.images["image"].map(_strip_ext), annotations.images["image"]))
    images = [by_stem.get(k) for k in keys]
    table = pd.DataFrame({"image": images, "key": keys, "top1": np.nan, "top5": np.nan})
    orphans = table["image"].isna()
    if orphans.any():
        issues["map_without_annotation"] = int(orphans.sum())
    return MapSource("npy", str(run)), table[~orphans], "npy"


# --------------------------------------------------------------------------- workers


def _pxap_hist(values: np.ndarray, mask: np.ndarray, edges: np.ndarray, protocol: str,
               width: float, height: float) -> np.ndarray:
    """(2, bins) histograms of map scores on foreground (1) and background (0) mask pixels."""
    size = (224, 224) if protocol == "wsoleval" else (int(width), int(height))
    score = normalise_map(upsample_map(values, *size))
    mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    true_hist, _ = np.histogram(score[mask == 1], bins=edges)
    false_hist, _ = np.histogram(score[mask == 0], bins=edges)
    return np.stack([true_hist, false_hist]).astype(np.float64)


def _load_mask(files: list[str], ignore: str) -> np.ndarray | None:
    """1 foreground, 0 background, 255 ignored (ignore region minus foreground)."""
    parts = [cv2.imread(f, cv2.IMREAD_GRAYSCALE) for f in files]
    if not parts or any(p is None for p in parts):
        return None
    foreground = np.any([p > 127 if p.max() > 1 else p > 0 for p in parts], axis=0)
    mask = foreground.astype(np.uint8)
    if ignore:
        region = cv2.imread(ignore, cv2.IMREAD_GRAYSCALE)
        if region is not None and region.shape == mask.shape:
            mask[(region > 127) & ~foreground] = 255
    return mask


def _record_dtype(protocol: str, n_thresholds: int) -> np.dtype:
    """One image's first-pass results, kept on disk between the passes: per slot (uint8
    level for wsoleval, threshold index for native) the best IoU of all boxes and of the
    largest box, and (wsoleval) that box; the map's uint8 max turns thresholds into levels."""
    slots = 256 if protocol == "wsoleval" else n_thresholds
    fields = [("ok", np.int8), ("map_max", np.int32), ("all", np.float64, (slots,)),
              ("largest", np.float64, (slots,))]
    if protocol == "wsoleval":
        fields.append(("box", np.int16, (slots, 4)))
    return np.dtype(fields)


def _slots(record, thresholds: np.ndarray, protocol: str) -> np.ndarray:
    """Where each CAM threshold reads an image's record."""
    if protocol == "wsoleval":
        return wsoleval_levels(thresholds, int(record["map_max"]))
    return np.arange(len(thresholds))


def _first_pass(task: dict) -> dict:
    """Sweep a chunk of maps once: per-threshold counts of the chunk, and one record per
    image (as bytes) for the second pass, which then needs no map (wsoleval)."""
    thresholds = task["thresholds"]
    ious = task["iou"]
    protocol = task["protocol"]
    n = len(thresholds)
    v2 = np.zeros((len(ious), n), np.int64)
    v1 = np.zeros(n, np.int64)
    top1 = np.zeros(n, np.int64)
    top5 = np.zeros(n, np.int64)
    hist = np.zeros((2, n + 2))
    failed = 0
    records = np.zeros(len(task["items"]), task["dtype"])
    for record, item in zip(records, task["items"]):
        try:
            values = task["source"].load(item["key"])
        except Exception:
            failed += 1
            continue
        record["ok"] = 1
        if item["masks"]:
            mask = _load_mask(item["masks"], item["ignore"])
            if mask is not None:
                hist += _pxap_hist(values, mask, task["edges"], protocol,
                                   item["width"], item["height"])
        gt = item["gt"]
        if protocol == "wsoleval":
            u8 = wsoleval_uint8(values)
            record["map_max"] = int(u8.max())
            frame = scale_boxes_wsoleval(gt, item["width"], item["height"])
            record["all"], record["largest"], record["box"] = wsoleval_level_results(u8, frame)
        elif len(gt):
            record["all"], record["largest"] = native_image_ious(
                upsample_map(values, int(item["width"]), int(item["height"])), gt, thresholds)
        if not len(gt):
            continue
        slots = _slots(record, thresholds, protocol)
        all_ious, largest = record["all"][slots], record["largest"][slots]
        for k, iou in enumerate(ious):
            v2[k] += all_ious >= iou / 100
        correct = largest >= 0.5
        v1 += correct
        if item["top1"] is True:
            top1 += correct
        if item["top5"] is True:
            top5 += correct
    return {"v2": v2, "v1": v1, "top1": top1, "top5": top5, "hist": hist, "failed": failed,
            "records": records.tobytes()}


def _image_row(item: dict, record, task: dict) -> dict:
    """Per image at the chosen thresholds: box, IoU, correctness, error type."""
    width, height, gt = item["width"], item["height"], item["gt"]
    thresholds = task["thresholds"]
    slots = _slots(record, thresholds, task["protocol"])
    best_index = task["best_index"]
    if task["protocol"] == "wsoleval":
        gt_frame = scale_boxes_wsoleval(gt, width, height)
        box = record["box"][slots[best_index]].astype(np.int64)[None]
        inclusive = True
    else:
        gt_frame = gt
        box = native_boxes(upsample_map(task["source"].load(item["key"]), int(width),
                                        int(height)), float(thresholds[best_index]), False)
        inclusive = False
    iou = iou_inclusive if inclusive else iou_exclusive
    ious = iou(box, gt_frame) if len(box) and len(gt_frame) else np.zeros((1, 1))
    best = float(ious.max()) if ious.size else 0.0
    row = {"image": item["image"], "label": item["label"],
           "threshold": float(thresholds[best_index]), "iou": round(best, 6),
           "x0": box[0, 0] if len(box) else "", "y0": box[0, 1] if len(box) else "",
           "x1": box[0, 2] if len(box) else "", "y1": box[0, 3] if len(box) else "",
           "correct": int(best >= 0.5), "top1_correct": item["top1"],
           "top5_correct": item["top5"],
           "error": error_type(box[0] if len(box) else None, gt_frame, best, item["top1"],
                               inclusive)}
    has_gt = len(gt_frame) > 0
    for name, index in task["fixed"].items():
        row[f"_gt_{name}"] = bool(has_gt and record["largest"][slots[index]] >= 0.5)
    for k, index in task["v2_index"].items():
        row[f"_v2_{k}"] = bool(has_gt and record["all"][slots[index]] >= k / 100)
    return row


# --------------------------------------------------------------------------- the job


def _map(function, tasks, workers: int, window: int):
    """Run tasks on all cores (fork: the compiled sweep is inherited), in order, with at
    most `window` tasks in flight: memory stays flat however many images there are."""
    if workers <= 1:
        yield from map(function, tasks)
        return
    pending: deque = deque()
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        for task in tasks:
            pending.append(pool.submit(function, task))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _threshold_index(thresholds: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(thresholds - value)))


def _read_other_thresholds(path: str) -> dict[str, float]:
    file = Path(path) / "summary.csv" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise AcolError(f"--threshold-from: no summary.csv at {path}")
    table = pd.read_csv(file)
    if not {"metric", "threshold"} <= set(table.columns):
        raise AcolError(f"--threshold-from: {file} is not an acol-eval summary.csv")
    return {m: float(t) for m, t in zip(table["metric"], table["threshold"]) if pd.notna(t)}


def score(config: ScoreConfig) -> dict:
    """Run the whole score job; returns {'summary': DataFrame, 'issues': dict, 'failed': int}."""
    from . import reports

    if config.protocol not in ("wsoleval", "native"):
        raise AcolError(f"unknown protocol {config.protocol!r}; use wsoleval or native")
    if not 0 < config.interval < 1:
        raise AcolError("--cam-curve-interval must be between 0 and 1")
    if not config.iou or any(not 0 < k <= 100 for k in config.iou):
        raise AcolError("--iou takes percentages in (0, 100], e.g. 30,50,70")
    annotations = read_source(config.annotations, label_rule=config.label_rule)
    if config.mask_root and not Path(config.mask_root).is_dir():
        raise AcolError(f"--mask-root {config.mask_root} is not a folder")
    if config.split:
        if config.split not in annotations.splits:
            raise AcolError(f"split {config.split!r} not in the annotations "
                            f"(splits: {', '.join(annotations.splits)})")
        annotations = annotations.split(config.split)
    issues = dict(annotations.issues)
    if config.baseline not in (None, "centre"):
        raise AcolError(f"unknown baseline {config.baseline!r}; use centre")
    source, table, kind = _load_inputs(Path(config.run), annotations, issues)
    if config.baseline == "centre":
        # RUN's images, predictions and map resolution; a centred Gaussian as every map
        side = (source.shape[1], source.shape[2]) if kind == "store" else (28, 28)
        source = MapSource("centre", source.path, (0, *side))
    images = annotations.images.set_index("image")
    missing_map = ~images.index.isin(table["image"])
    if missing_map.any():
        issues["annotation_without_map"] = int(missing_map.sum())
    unannotated = ~table["image"].isin(images.index)
    if unannotated.any():
        issues["map_without_annotation"] = issues.get("map_without_annotation", 0) + int(
            unannotated.sum())
    table = table[~unannotated].reset_index(drop=True)
    if (run_predictions := Path(config.run) / "predictions.csv").is_file() and kind == "store":
        sizes = pd.read_csv(run_predictions, usecols=["image", "width", "height"],
                            dtype={"image": str}).set_index("image")
        images = images.copy()
        for column in ("width", "height"):
            images[column] = images[column].fillna(sizes[column].reindex(images.index))
    no_size = table["image"].map(images["width"]).isna() | table["image"].map(
        images["height"]).isna()
    if no_size.any():
        issues["image_without_size"] = int(no_size.sum())
        table = table[~no_size].reset_index(drop=True)
    if not len(table):
        raise AcolError("no image has both a map and an annotation; check --split and the "
                        "image names")
    if config.threshold_from:
        other = _read_other_thresholds(config.threshold_from)
    else:
        other = {}
    for name, amount in sorted(issues.items()):
        print(f"acol-eval: warning: {amount} {name.replace('_', ' ')}", file=sys.stderr)

    thresholds = np.arange(0, 1, config.interval)
    edges = np.append(thresholds, [1.0, 2.0, 3.0])
    boxes_by_image = _boxes_by_image(annotations.boxes)
    mask_root = Path(config.mask_root or annotations.mask_root or annotations.root)
    masks_by_image = {k: g for k, g in annotations.masks.groupby("image")}
    no_boxes = np.zeros((0, 4))
    widths = table["image"].map(images["width"]).to_numpy(dtype=np.float64)
    heights = table["image"].map(images["height"]).to_numpy(dtype=np.float64)
    labels = table["image"].map(images["label"]).to_numpy()

    def items(chunk: pd.DataFrame, start: int) -> list[dict]:
        found = []
        for i, row in enumerate(chunk.itertuples(), start):
            mask_rows = masks_by_image.get(row.image)
            mask_files, ignore = [], ""
            if mask_rows is not None:
                mask_files = [str(mask_root / m) for m in mask_rows["mask"]]
                ignore = next((str(mask_root / v) for v in mask_rows["ignore"]
                               if isinstance(v, str) and v), "")
            found.append({"image": row.image, "key": row.key,
                          "gt": boxes_by_image.get(row.image, no_boxes),
                          "width": widths[i], "height": heights[i], "label": labels[i],
                          "top1": None if pd.isna(row.top1) else bool(row.top1),
                          "top5": None if pd.isna(row.top5) else bool(row.top5),
                          "masks": mask_files, "ignore": ignore})
        return found

    def chunks():
        for start in range(0, len(table), CHUNK):
            yield start, table.iloc[start:start + CHUNK]

    workers = config.workers or os.cpu_count() or 1
    dtype = _record_dtype(config.protocol, len(thresholds))
    base = {"source": source, "thresholds": thresholds, "iou": list(config.iou),
            "protocol": config.protocol, "edges": edges, "dtype": dtype}
    _warm_up()  # compile or load the sweep once, before the workers fork

    v2 = np.zeros((len(config.iou), len(thresholds)), np.int64)
    v1 = np.zeros(len(thresholds), np.int64)
    top1 = np.zeros_like(v1)
    top5 = np.zeros_like(v1)
    hist = np.zeros((2, len(thresholds) + 2))
    failed = 0
    records = tempfile.TemporaryFile()
    tasks = ({**base, "items": items(chunk, start)} for start, chunk in chunks())
    for part in _map(_first_pass, tasks, workers, window=2 * workers + 1):
        v2 += part["v2"]
        v1 += part["v1"]
        top1 += part["top1"]
        top5 += part["top5"]
        hist += part["hist"]
        failed += part["failed"]
        records.write(part["records"])
    boxed = int(sum(len(boxes_by_image.get(i, ())) > 0 for i in table["image"]))
    has_predictions = table["top1"].notna().any()
    curves = {"thresholds": thresholds, "gt_known": v1, "top1": top1, "top5": top5, "v2": v2,
              "count": boxed}

    def pick(metric: str, curve: np.ndarray) -> int:
        if metric in other:
            return _threshold_index(thresholds, other[metric])
        return int(np.argmax(curve))

    best_gt = pick("best_gt_known_loc", v1)
    fixed = config.threshold
    if fixed is None:
        fixed = other.get("gt_known_loc", 0.2)
    fixed_index = _threshold_index(thresholds, fixed)
    v2_index = {k: pick(f"max_box_acc_v2@{k}", v2[j]) for j, k in enumerate(config.iou)}

    # second pass: per image rows from the records (no maps but the native box), streamed
    # to per_image.csv; only the per-image outcomes the summary needs stay in memory
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    task = {**base, "best_index": best_gt, "fixed": {"fixed": fixed_index, "best": best_gt},
            "v2_index": v2_index}
    records.seek(0)
    outcomes = []
    with open(out / "per_image.csv", "w", newline="") as handle:
        for start, chunk in chunks():
            chunk_records = np.fromfile(records, dtype=dtype, count=len(chunk))
            rows = [_image_row(item, record, task)
                    for item, record in zip(items(chunk, start), chunk_records)
                    if record["ok"]]
            frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else PER_IMAGE_COLUMNS)
            frame[[c for c in frame.columns if not c.startswith("_")]].to_csv(
                handle, index=False, header=start == 0)
            outcomes.append(frame.drop(columns=["image", "threshold", "x0", "y0", "x1", "y1",
                                                "error"], errors="ignore"))
    records.close()
    per_image = pd.concat(outcomes, ignore_index=True)
    summary = reports.summary_table(curves, config, has_predictions, best_gt, fixed_index,
                                    v2_index, hist if hist[0].sum() > 0 else None,
                                    per_image, issues, failed)
    reports.write_reports(out, summary, per_image, curves, config)
    if failed:
        issues["unreadable_map"] = failed
    return {"summary": summary, "issues": issues, "failed": failed}


PER_IMAGE_COLUMNS = ["image", "label", "threshold", "iou", "x0", "y0", "x1", "y1", "correct",
                     "top1_correct", "top5_correct", "error"]


def _boxes_by_image(boxes: pd.DataFrame) -> dict[str, np.ndarray]:
    """image -> (g, 4) float64 boxes; one sort, no per-group pandas (that took seconds)."""
    if not len(boxes):
        return {}
    codes, names = pd.factorize(boxes["image"])
    order = np.argsort(codes, kind="stable")
    coords = boxes[["x0", "y0", "x1", "y1"]].to_numpy(dtype=np.float64)[order]
    cuts = np.flatnonzero(np.diff(codes[order])) + 1
    return dict(zip(names, np.split(coords, cuts)))


def _warm_up() -> None:
    load_compiled()
