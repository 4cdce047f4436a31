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
    wsoleval_contour_boxes,
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
    wsoleval_image_ious,
)
from .readers import Annotations, read_source

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


def _image_curves(values: np.ndarray, gt: np.ndarray, width: float, height: float,
                  protocol: str, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if protocol == "wsoleval":
        return wsoleval_image_ious(wsoleval_uint8(values), scale_boxes_wsoleval(gt, width, height),
                                   thresholds)
    return native_image_ious(upsample_map(values, int(width), int(height)), gt, thresholds)


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


def _first_pass(task: dict) -> dict:
    thresholds = task["thresholds"]
    ious = task["iou"]
    n = len(thresholds)
    v2 = np.zeros((len(ious), n), np.int64)
    v1 = np.zeros(n, np.int64)
    top1 = np.zeros(n, np.int64)
    top5 = np.zeros(n, np.int64)
    hist = np.zeros((2, n + 2))
    failed = 0
    for item in task["items"]:
        try:
            values = task["source"].load(item["key"])
        except Exception:
            failed += 1
            continue
        if item["masks"]:
            mask = _load_mask(item["masks"], item["ignore"])
            if mask is not None:
                hist += _pxap_hist(values, mask, task["edges"], task["protocol"],
                                   item["width"], item["height"])
        if not len(item["gt"]):
            continue
        all_ious, largest = _image_curves(values, item["gt"], item["width"], item["height"],
                                          task["protocol"], thresholds)
        for k, iou in enumerate(ious):
            v2[k] += all_ious >= iou / 100
        correct = largest >= 0.5
        v1 += correct
        if item["top1"] is True:
            top1 += correct
        if item["top5"] is True:
            top5 += correct
    return {"v2": v2, "v1": v1, "top1": top1, "top5": top5, "hist": hist, "failed": failed}


def _second_pass(task: dict) -> list[dict]:
    """Per image at the chosen thresholds: box, IoU, correctness, error type."""
    rows = []
    for item in task["items"]:
        try:
            values = task["source"].load(item["key"])
        except Exception:
            continue
        width, height, gt = item["width"], item["height"], item["gt"]
        row = {"image": item["image"], "label": item["label"]}
        if task["protocol"] == "wsoleval":
            u8 = wsoleval_uint8(values)
            gt_frame = scale_boxes_wsoleval(gt, width, height)

            def boxes_at(t: float, all_boxes: bool, u8=u8) -> np.ndarray:
                level = int(wsoleval_levels(np.array([t]), int(u8.max()))[0])
                return wsoleval_contour_boxes(u8, level, all_boxes)

            iou = iou_inclusive
        else:
            upsampled = upsample_map(values, int(width), int(height))
            gt_frame = gt

            def boxes_at(t: float, all_boxes: bool, upsampled=upsampled) -> np.ndarray:
                return native_boxes(upsampled, t, all_boxes)

            iou = iou_exclusive
        box = boxes_at(task["best"], False)
        ious = iou(box, gt_frame) if len(box) and len(gt_frame) else np.zeros((1, 1))
        best = float(ious.max()) if ious.size else 0.0
        correct = best >= 0.5
        row.update({"threshold": task["best"], "iou": round(best, 6),
                    "x0": box[0, 0] if len(box) else "", "y0": box[0, 1] if len(box) else "",
                    "x1": box[0, 2] if len(box) else "", "y1": box[0, 3] if len(box) else "",
                    "correct": int(correct), "top1_correct": item["top1"],
                    "top5_correct": item["top5"],
                    "error": error_type(box[0] if len(box) else None, gt_frame, best,
                                        item["top1"], task["protocol"] == "wsoleval")})
        for name, t in task["fixed"].items():
            b = boxes_at(t, False)
            row[f"_gt_{name}"] = bool(len(b) and len(gt_frame) and iou(b, gt_frame).max() >= 0.5)
        for k, t in task["v2_thresholds"].items():
            b = boxes_at(t, True)
            row[f"_v2_{k}"] = bool(len(b) and len(gt_frame) and iou(b, gt_frame).max() >= k / 100)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the job


def _map(function, tasks: list[dict], workers: int):
    """Run tasks on all cores (fork: the compiled sweep is inherited), in order."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(function, tasks)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        yield from pool.map(function, tasks, chunksize=1)


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
    annotations = read_source(config.annotations)
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
    boxes_by_image = {k: g[["x0", "y0", "x1", "y1"]].to_numpy(dtype=np.float64)
                      for k, g in annotations.boxes.groupby("image")}
    mask_root = Path(annotations.mask_root or annotations.root)
    masks_by_image = {k: g for k, g in annotations.masks.groupby("image")}

    def item(row) -> dict:
        gt = boxes_by_image.get(row.image, np.zeros((0, 4)))
        mask_rows = masks_by_image.get(row.image)
        mask_files = [str(mask_root / m) for m in mask_rows["mask"]] if mask_rows is not None \
            else []
        ignore = next((str(mask_root / i) for i in (mask_rows["ignore"] if mask_rows is not None
                                                     else []) if isinstance(i, str) and i), "")
        return {"image": row.image, "key": row.key, "gt": gt,
                "width": float(images.at[row.image, "width"]),
                "height": float(images.at[row.image, "height"]),
                "label": images.at[row.image, "label"],
                "top1": None if pd.isna(row.top1) else bool(row.top1),
                "top5": None if pd.isna(row.top5) else bool(row.top5),
                "masks": mask_files, "ignore": ignore}

    workers = config.workers or os.cpu_count() or 1
    chunks = [table.iloc[i:i + CHUNK] for i in range(0, len(table), CHUNK)]
    base = {"source": source, "thresholds": thresholds, "iou": list(config.iou),
            "protocol": config.protocol, "edges": edges}

    def tasks(extra: dict):
        for chunk in chunks:
            yield {**base, **extra, "items": [item(r) for r in chunk.itertuples()]}

    v2 = np.zeros((len(config.iou), len(thresholds)), np.int64)
    v1 = np.zeros(len(thresholds), np.int64)
    top1 = np.zeros_like(v1)
    top5 = np.zeros_like(v1)
    hist = np.zeros((2, len(thresholds) + 2))
    failed = 0
    for part in _map(_first_pass, list(tasks({})), workers):
        v2 += part["v2"]
        v1 += part["v1"]
        top1 += part["top1"]
        top5 += part["top5"]
        hist += part["hist"]
        failed += part["failed"]
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
    rows = list(_map(_second_pass, list(tasks({
        "best": float(thresholds[best_gt]),
        "fixed": {"fixed": float(thresholds[fixed_index]), "best": float(thresholds[best_gt])},
        "v2_thresholds": {k: float(thresholds[i]) for k, i in v2_index.items()},
    })), workers))
    per_image = pd.DataFrame([r for part in rows for r in part])
    summary = reports.summary_table(curves, config, has_predictions, best_gt, fixed_index,
                                    v2_index, hist if hist[0].sum() > 0 else None,
                                    per_image, issues, failed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    reports.write_reports(out, summary, per_image, curves, config)
    if failed:
        issues["unreadable_map"] = failed
    return {"summary": summary, "issues": issues, "failed": failed}
