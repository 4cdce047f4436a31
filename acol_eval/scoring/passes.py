"""The two passes of `score` over the scored images, in chunks of CHUNK, as typed
records between the worker processes. The first pass (`first_pass`): every CAM
threshold of every map through the protocol's compiled sweep (sweep.py) on all
cores, summed into the curves, and one record per image kept on disk. The second
pass (`second_pass`): per-image rows (`image_row`) and outcome bits from those
records, streamed into per_image.csv and outcomes.npz. Takes typed stages, never the
ScoreConfig: scoring.py runs them. Never imports torch."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from acol_eval.maps.reportfolder import Outcomes, ReportStaging
from acol_eval.metrics import metricdefs, reports
from acol_eval.metrics.metrics import error_type
from acol_eval.metrics.regionmetrics import RegionOptions, boxes_region, mask_region, measure
from acol_eval.metrics.regionmetrics.kernels import compile_now
from acol_eval.metrics.sweep import load_compiled
from acol_eval.scoring.protocols import ScoringProtocol
from acol_eval.scoring.scoreinputs import NO_BOXES, MapSource, ScoreInputs
from acol_eval.util.csvtext import frame_to_csv
from acol_eval.util.progress import Progress
from acol_eval.util.runtime import ordered_map
from acol_eval.util.safeio import atomic_open

CHUNK = 64


# --------------------------------------------------------------------------- the worker side


@dataclass(frozen=True)
class ImageTask:
    """One image as the workers see it: gt (g, 4) float64 boxes in original pixels,
    x1/y1 exclusive; width/height NaN when unknown; top1/top5 None without predictions."""

    image: str
    key: str
    gt: np.ndarray
    width: float
    height: float
    label: str
    top1: bool | None
    top5: bool | None
    masks: tuple[str, ...] = ()
    ignore: str = ""
    map_name: str = ""  # which class's map: 'label' or 'top1' ('' for .npy maps)


@dataclass(frozen=True)
class PassSetup:
    """What every chunk of a pass shares."""

    source: MapSource
    protocol: ScoringProtocol
    thresholds: np.ndarray
    iou: tuple[int, ...]
    dtype: np.dtype
    region: RegionOptions | None = None  # the opt-in region metrics asked for

    @property
    def edges(self) -> np.ndarray:  # PxAP bins [t0, t1), ..., [t_last, 1), [1, 2), [2, 3)
        return np.append(self.thresholds, [1.0, 2.0, 3.0])


@dataclass(frozen=True)
class ChunkTask:
    setup: PassSetup
    images: list[ImageTask]


@dataclass
class Counts:
    """Correct-counts per threshold (summed over images), PxAP histograms, problems."""

    v2: np.ndarray
    v1: np.ndarray
    top1: np.ndarray
    top5: np.ndarray
    hist: np.ndarray
    problems: Counter = field(default_factory=Counter)

    @classmethod
    def zeros(cls, n_iou: int, n_thresholds: int) -> Counts:
        v1 = np.zeros(n_thresholds, np.int64)
        return cls(np.zeros((n_iou, n_thresholds), np.int64), v1, v1.copy(), v1.copy(),
                   np.zeros((2, n_thresholds + 2)))

    def add(self, other: Counts) -> None:
        self.v2 += other.v2
        self.v1 += other.v1
        self.top1 += other.top1
        self.top5 += other.top5
        self.hist += other.hist
        self.problems.update(other.problems)


@dataclass(frozen=True)
class ChunkResult:
    counts: Counts
    records: bytes  # the chunk's first-pass records (setup.dtype), in image order


def _first_pass_chunk(task: ChunkTask) -> ChunkResult:
    """Sweep a chunk of maps once: the chunk's counts and one record per image, which
    the second pass reads instead of the map (wsoleval)."""
    setup = task.setup
    counts = Counts.zeros(len(setup.iou), len(setup.thresholds))
    records = np.zeros(len(task.images), setup.dtype)
    for record, item in zip(records, task.images):
        values, problem = setup.source.load(item.key)
        if problem:
            counts.problems[problem] += 1
        if values is None:
            continue
        record["ok"] = 1
        _first_pass_image(setup, item, values, record, counts)
    return ChunkResult(counts, records.tobytes())


def _first_pass_image(setup: PassSetup, item: ImageTask, values: np.ndarray, record,
                      counts: Counts) -> None:
    protocol = setup.protocol
    mask = None
    if item.masks:
        mask = protocol.read_mask(list(item.masks), item.ignore)
        if mask is None:
            counts.problems["mask_unreadable"] += 1
        else:
            scores = protocol.pxap_scores(values, mask.shape)
            counts.hist[0] += np.histogram(scores[mask == 1], bins=setup.edges)[0]
            counts.hist[1] += np.histogram(scores[mask == 0], bins=setup.edges)[0]
    prepared = _measure_region(setup, item, values, mask, record) if setup.region else None
    protocol.image_record(values, item.gt, item.width, item.height, setup.thresholds, record,
                          prepared)
    outcomes = _box_outcomes(setup, item, record)
    if outcomes is None:
        return
    correct, any_box = outcomes
    counts.v2 += any_box
    counts.v1 += correct
    if item.top1 is True:
        counts.top1 += correct
    if item.top5 is True:
        counts.top5 += correct


def _measure_region(setup: PassSetup, item: ImageTask, values: np.ndarray,
                    mask: np.ndarray | None, record) -> np.ndarray | None:
    """The region metrics of one map into record["region"] (NaN without a region),
    measured on the map as the box sweep sees it; returns that map. An image of unknown
    size (a mask, no boxes) is taken at its mask's size, as PxAP takes it."""
    record["region"] = np.nan
    protocol = setup.protocol
    if mask is None and not len(item.gt):
        return None
    width, height = item.width, item.height
    if not np.isfinite(width * height):
        if mask is None:
            return None
        height, width = mask.shape
    prepared = protocol.prepare(values, width, height)
    region = (mask_region(mask, prepared.shape) if mask is not None else boxes_region(
        protocol.scale_gt(item.gt, item.width, item.height), prepared.shape,
        protocol.inclusive))
    record["region"] = measure(prepared, region, setup.region)
    return prepared


def with_region(dtype: np.dtype, region: RegionOptions | None) -> np.dtype:
    """A protocol's record dtype with a field for the region metrics asked for."""
    if region is None or not region.names:
        return dtype
    fields = [(name, dtype.fields[name][0]) for name in dtype.names]
    return np.dtype([*fields, ("region", np.float64, (len(region.names),))])


def _box_outcomes(setup: PassSetup, item: ImageTask, record
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """At every threshold: the largest box reaches IoU 0.5 ((T,), GT-known Loc and
    MaxBoxAcc) and any box reaches each IoU of MaxBoxAccV2 ((J, T)); None without boxes."""
    if not len(item.gt):
        return None
    all_ious, largest = setup.protocol.threshold_ious(record, setup.thresholds)
    return largest >= 0.5, all_ious >= np.asarray(setup.iou)[:, None] / 100


# --------------------------------------------------------------------------- the first pass


@dataclass(frozen=True)
class FirstPass:
    curves: reports.Curves
    hist: np.ndarray | None  # PxAP histograms when some image had a mask
    problems: dict[str, int]
    records: object  # a temporary file of records, in ScoreInputs.table order


def _tasks(inputs: ScoreInputs) -> Iterator[tuple[int, list[ImageTask]]]:
    """The image tasks in chunks of CHUNK, in table order."""
    table = inputs.table
    for start in range(0, len(table), CHUNK):
        chunk = table.iloc[start:start + CHUNK]
        yield start, [ImageTask(
            image=row.image, key=row.key, gt=inputs.boxes.get(row.image, NO_BOXES),
            width=row.width, height=row.height, label=row.label,
            top1=None if pd.isna(row.top1) else bool(row.top1),
            top5=None if pd.isna(row.top5) else bool(row.top5),
            masks=inputs.masks.get(row.image, ((), ""))[0],
            ignore=inputs.masks.get(row.image, ((), ""))[1], map_name=row.map)
            for row in chunk.itertuples()]


def first_pass(inputs: ScoreInputs, setup: PassSetup, workers: int) -> FirstPass:
    """Every image at every threshold, on `workers` processes, records kept on disk."""
    # compile or load the protocol's sweep once, before the workers fork
    load_compiled(native=setup.protocol.name == "native")
    if setup.region:
        compile_now()
    total = Counts.zeros(len(setup.iou), len(setup.thresholds))
    records = tempfile.TemporaryFile()
    tasks = (ChunkTask(setup, images) for _, images in _tasks(inputs))
    with Progress(len(inputs.table), "score", "images") as progress:
        for part in ordered_map(_first_pass_chunk, tasks, workers):
            total.add(part.counts)
            records.write(part.records)
            progress.update(len(part.records) // setup.dtype.itemsize)
    boxed = int(sum(len(inputs.boxes.get(i, ())) > 0 for i in inputs.table["image"]))
    curves = reports.Curves(setup.thresholds, total.v1, total.top1, total.top5, total.v2,
                            setup.iou, boxed, inputs.agnostic)
    return FirstPass(curves, total.hist if total.hist[0].sum() > 0 else None,
                     dict(total.problems), records)


def image_row(setup: PassSetup, item: ImageTask, record,
              choice: reports.ThresholdChoice) -> dict:
    """Per image at the best GT-known threshold: box (in the protocol's frame and in
    original pixels), IoU, correctness (0/1), error type, and the outcome columns the
    summary's bootstrap resamples (_gt_fixed, _gt_best, _v2_<k>)."""
    protocol, thresholds = setup.protocol, setup.thresholds
    has_gt = len(item.gt) > 0

    def prepared() -> np.ndarray:
        return protocol.prepare(setup.source.load(item.key)[0], item.width, item.height)

    gt_frame = protocol.scale_gt(item.gt, item.width, item.height) if has_gt else NO_BOXES
    box = protocol.box_at(record, thresholds, choice.best_gt, prepared) if has_gt else \
        np.zeros((0, 4), np.int64)
    ious = protocol.iou(box, gt_frame) if len(box) and len(gt_frame) else np.zeros((1, 1))
    best = float(ious.max()) if ious.size else 0.0
    original = protocol.to_original(box, item.width, item.height) if len(box) else None
    row = {"image": item.image, "label": item.label, "map": item.map_name,
           "frame": protocol.frame, "threshold": float(thresholds[choice.best_gt]),
           "threshold_source": choice.best_source, "iou": round(best, 6) if has_gt else np.nan}
    for n, name in enumerate(("x0", "y0", "x1", "y1")):
        row[name] = box[0, n] if len(box) else ""
    for n, name in enumerate(("orig_x0", "orig_y0", "orig_x1", "orig_y1")):
        row[name] = round(float(original[0, n]), 2) if original is not None else ""
    row.update({
        "correct": float(best >= 0.5) if has_gt else np.nan,
        "top1_correct": np.nan if item.top1 is None else float(item.top1),
        "top5_correct": np.nan if item.top5 is None else float(item.top5),
        "error": error_type(box[0] if len(box) else None, gt_frame, best, item.top1,
                            protocol.inclusive) if has_gt else "",
        "has_gt": float(has_gt)})
    all_ious, largest = protocol.threshold_ious(record, thresholds)
    measured = (dict(zip(setup.region.names, record["region"].tolist()))
                if setup.region and setup.region.names else {})

    def at(index: int) -> metricdefs.ImageView:
        return metricdefs.ImageView(
            item.image, item.label, thresholds, index, largest, all_ious, gt_frame,
            item.top1, item.top5, lambda: protocol.box_at(record, thresholds, index, prepared),
            measured)

    for metric in metricdefs.per_image_metrics():  # registered ones: their own column
        if not metric.opt_in or metric.name in measured:
            row[metric.name] = metric.value(at(choice.fixed))
    row["_iou_fixed"] = float(largest[choice.fixed]) if has_gt else np.nan
    row["_gt_fixed"] = metricdefs.localised(at(choice.fixed))
    row["_gt_best"] = metricdefs.localised(at(choice.best_gt))
    for k, index in choice.v2.items():
        row[f"_v2_{k}"] = metricdefs.any_box_reaches(k)(at(index))
    return row


# --------------------------------------------------------------------------- the second pass

PER_IMAGE_INTS = ("correct", "top1_correct", "top5_correct", "has_gt")


def second_pass(inputs: ScoreInputs, setup: PassSetup, passed: FirstPass,
                choice: reports.ThresholdChoice, staging: ReportStaging) -> pd.DataFrame:
    """per_image.csv rows (the native box needs its map again; wsoleval reads the
    record) and outcomes.npz, the per-threshold correctness of every scored image."""
    passed.records.seek(0)
    frames, scored, v1_bits, v2_bits = [], [], [], []
    with atomic_open(staging.path("per_image.csv"), newline="") as handle, \
            Progress(len(inputs.table), "score (per-image rows)", "images") as progress:
        for start, images in _tasks(inputs):
            records = np.fromfile(passed.records, dtype=setup.dtype, count=len(images))
            kept = [(item, record) for item, record in zip(images, records) if record["ok"]]
            rows = [image_row(setup, item, record, choice) for item, record in kept]
            frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else per_image_columns(setup))
            shown = frame[[c for c in frame.columns if not c.startswith("_")]].copy()
            for column in PER_IMAGE_INTS:
                shown[column] = shown[column].astype("Int64")
            frame_to_csv(shown, handle, index=False, header=start == 0)
            frames.append(frame.drop(columns=["x0", "y0", "x1", "y1", "orig_x0", "orig_y0",
                                              "orig_x1", "orig_y1", "error",
                                              "threshold_source"]))
            bits = _outcome_bits(setup, kept)
            v1_bits.append(bits[0])
            v2_bits.append(bits[1])
            scored += [item for item, _ in kept]
            progress.update(len(images))
    Outcomes.write_packed(
        staging.folder, [i.image for i in scored], setup.thresholds, setup.iou,
        np.concatenate(v2_bits, axis=1), np.concatenate(v1_bits),
        [-1 if i.top1 is None else int(i.top1) for i in scored],
        [-1 if i.top5 is None else int(i.top5) for i in scored],
        [len(i.gt) > 0 for i in scored])
    return pd.concat(frames, ignore_index=True)


def _outcome_bits(setup: PassSetup, kept: list) -> tuple[np.ndarray, np.ndarray]:
    """Per image and threshold, packed along thresholds: the largest box reaches IoU 0.5
    (v1, (n, bytes)), any box reaches each IoU (v2, (J, n, bytes)); all 0 without boxes."""
    n_t = len(setup.thresholds)
    v1 = np.zeros((len(kept), n_t), bool)
    v2 = np.zeros((len(setup.iou), len(kept), n_t), bool)
    for n, (item, record) in enumerate(kept):
        if (outcomes := _box_outcomes(setup, item, record)) is not None:
            v1[n], v2[:, n] = outcomes
    return np.packbits(v1, axis=-1), np.packbits(v2, axis=-1)


PER_IMAGE_COLUMNS = list(metricdefs.PER_IMAGE_FIXED_COLUMNS)


def per_image_columns(setup: PassSetup | None = None) -> list[str]:
    """per_image.csv's columns: the fixed ones, then one per registered per-image metric
    (the opt-in ones where setup asks for them)."""
    chosen = setup.region.names if setup is not None and setup.region else ()
    return PER_IMAGE_COLUMNS + [m.name for m in metricdefs.per_image_metrics()
                                if not m.opt_in or m.name in chosen]
