"""The `score` job as a short pipeline of typed stages. Never imports torch.

    load_inputs        maps + annotations + sizes           -> ScoreInputs
    first_pass         every CAM threshold, all cores       -> FirstPass (curves, records)
    choose_thresholds  pure (metricdefs): the grid index of every metric -> ThresholdChoice
    write_report       per-image rows from the records      -> the report folder

The protocol (protocols/) does everything protocol-specific; this module only moves
typed records between the stages and the worker processes.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from . import metricdefs, reports
from .coverage import Coverage, Subset, check_coverage, wanted_images
from .errors import AcolError
from .maps import centre_gaussian_map
from .metrics import error_type
from .predictionfile import class_correctness as _class_correctness
from .predictionfile import with_predictions
from .progress import Progress
from .protocols import Protocol, ScoringProtocol, get_protocol, parse_protocol
from .readers import Annotations, read_source
from .reportfolder import (
    REPORT_FILES,
    Outcomes,
    ReportMeta,
    ReportStaging,
    ScoreReport,
    read_thresholds,
)
from .runfolder import LocalizeRun
from .runtime import MAX_BOOTSTRAP, library_versions, ordered_map, resolve_workers
from .safeio import FolderLock, atomic_open
from .sweep import load_compiled
from .thresholds import run_threshold

CHUNK = 64
MIN_INTERVAL = 1e-4  # 10,000 thresholds: the grid, curves and records stay small
DEFAULT_FIXED_THRESHOLD = 0.2


def score_workers(workers: int | None) -> int:
    """--workers (runtime.resolve_workers) with score's default, all cores: scoring is
    pure CPU work with no model threads to leave a core to."""
    return resolve_workers(workers, default=os.cpu_count() or 1)


class Baseline(str, Enum):
    CENTRE = "centre"  # a centred Gaussian map for every image instead of RUN's maps


class MapChoice(str, Enum):
    LABEL = "label"  # the annotated class's map
    TOP1 = "top1"    # the top-1 predicted class's map (class-agnostic localisation)
    AUTO = "auto"    # the label's map where the label is a model class, else top-1


def _enum(kind: type[Enum], value, flag: str):
    try:
        return kind(value)
    except ValueError:
        raise AcolError(f"{flag} {value!r}: use {' or '.join(m.value for m in kind)}") from None


@dataclass(frozen=True)
class ScoreConfig:
    """One `score` run; every field is a CLI option (run, --annotations, --out, ...)."""

    run: str
    annotations: str
    out: str
    split: str | None = None
    protocol: Protocol = Protocol.WSOLEVAL
    iou: tuple[int, ...] = (30, 50, 70)
    interval: float = 0.001
    threshold: float | None = None  # None: --threshold-from's, else 0.2
    threshold_from: str | None = None
    bootstrap: int = 0
    workers: int | None = None  # None: all cores; 0: the main process
    seed: int = 0
    baseline: Baseline | None = None
    label_rule: str | None = None  # coco: which category labels an image
    mask_root: str | None = None  # where mask paths of the annotations resolve
    images: str | None = None  # where the annotations' relative image paths resolve
    strict: bool = False  # the default now (a partial score is refused); kept for scripts
    map_choice: MapChoice = MapChoice.AUTO
    overwrite: bool = False  # replace a report already in --out
    allow_missing: bool = False  # score the annotated images that have a map (coverage.py)
    image_list: str | None = None  # a file naming the intended images, one a line
    predictions: str | None = None  # classification for .npy maps (predictionfile.py)

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "protocol", parse_protocol(self.protocol))
        put(self, "map_choice", _enum(MapChoice, self.map_choice, "--map"))
        if self.baseline is not None:
            put(self, "baseline", _enum(Baseline, self.baseline, "--baseline"))
        try:
            given = tuple(float(k) for k in self.iou)
        except (TypeError, ValueError):
            given = ()
        # whole percentages only: 0.5 is not read as 50 (nor 50.5 cut to 50), and each
        # IoU once (a repeated one would weigh twice in MaxBoxAccV2's mean)
        if not given or any(not (0 < k <= 100 and k == int(k)) for k in given):
            shown = ",".join(f"{k:g}" for k in given) or repr(self.iou)
            raise AcolError(f"--iou {shown}: give whole percentages in (0, 100], e.g. 30,50,70")
        iou = tuple(int(k) for k in given)
        if len(set(iou)) != len(iou):
            raise AcolError(f"--iou {','.join(map(str, iou))} lists an IoU twice")
        put(self, "iou", iou)
        if not (np.isfinite(self.interval) and MIN_INTERVAL <= self.interval < 1):
            raise AcolError(f"--cam-curve-interval {self.interval} must be at least "
                            f"{MIN_INTERVAL:g} and below 1")
        if self.threshold is not None and not 0 <= self.threshold <= 1:  # NaN fails too
            raise AcolError(f"--threshold {self.threshold} must be a CAM threshold in [0, 1]")
        if not 0 <= self.bootstrap <= MAX_BOOTSTRAP:
            raise AcolError(f"--bootstrap {self.bootstrap} must be between 0 and "
                            f"{MAX_BOOTSTRAP}")
        score_workers(self.workers)
        if self.mask_root and not Path(self.mask_root).is_dir():
            raise AcolError(f"--mask-root {self.mask_root} is not a folder")
        if self.images and not Path(self.images).is_dir():
            raise AcolError(f"--images {self.images} is not a folder")
        if self.strict and self.allow_missing:
            raise AcolError("--strict (refuse a partial score, the default) and "
                            "--allow-missing contradict each other; give one")


@dataclass(frozen=True)
class ScoreResult:
    summary: pd.DataFrame
    issues: dict[str, int]
    failed: int  # maps that could not be read or used
    missing: int  # annotated images without a map (scored anyway: --allow-missing)
    exit_code: int  # 1 when some maps could not be used
    out: str
    meta: ReportMeta | None = None  # report.json: coverage, map scored, thresholds
    report: ScoreReport | None = None  # the report folder written



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
    if item.masks:
        mask = protocol.read_mask(list(item.masks), item.ignore)
        if mask is None:
            counts.problems["mask_unreadable"] += 1
        else:
            scores = protocol.pxap_scores(values, mask.shape)
            counts.hist[0] += np.histogram(scores[mask == 1], bins=setup.edges)[0]
            counts.hist[1] += np.histogram(scores[mask == 0], bins=setup.edges)[0]
    protocol.image_record(values, item.gt, item.width, item.height, setup.thresholds, record)
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


def _box_outcomes(setup: PassSetup, item: ImageTask, record
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """At every threshold: the largest box reaches IoU 0.5 ((T,), GT-known Loc and
    MaxBoxAcc) and any box reaches each IoU of MaxBoxAccV2 ((J, T)); None without boxes."""
    if not len(item.gt):
        return None
    all_ious, largest = setup.protocol.threshold_ious(record, setup.thresholds)
    return largest >= 0.5, all_ious >= np.asarray(setup.iou)[:, None] / 100


# --------------------------------------------------------------------------- stages


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
            image=row.image, key=row.key, gt=inputs.boxes.get(row.image, _NO_BOXES),
            width=row.width, height=row.height, label=row.label,
            top1=None if pd.isna(row.top1) else bool(row.top1),
            top5=None if pd.isna(row.top5) else bool(row.top5),
            masks=inputs.masks.get(row.image, ((), ""))[0],
            ignore=inputs.masks.get(row.image, ((), ""))[1], map_name=row.map)
            for row in chunk.itertuples()]


_NO_BOXES = np.zeros((0, 4))


def first_pass(inputs: ScoreInputs, setup: PassSetup, workers: int) -> FirstPass:
    """Every image at every threshold, on `workers` processes, records kept on disk."""
    # compile or load the protocol's sweep once, before the workers fork
    load_compiled(native=setup.protocol.name == "native")
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


def score(config: ScoreConfig, given: GivenInputs | None = None) -> ScoreResult:
    """The whole job: inputs, first pass, thresholds, report folder. `given`: annotations
    (and the images meant) a caller already holds in memory, instead of reading
    config.annotations (and config.image_list)."""
    protocol = get_protocol(config.protocol)
    check_report_folder(config.out, config.overwrite)
    other = (read_thresholds(config.threshold_from, protocol_label(config, protocol))
             if config.threshold_from else {})
    fixed, fixed_source = _fixed_threshold(config)
    inputs = load_inputs(config, protocol, given)  # all checks before --out is touched
    if config.baseline is Baseline.CENTRE:
        inputs = inputs.with_source(_centre_source(inputs.source))
    _warn(inputs.issues)
    thresholds = np.arange(0, 1, config.interval)
    setup = PassSetup(inputs.source, protocol, thresholds, config.iou,
                      protocol.record_dtype(len(thresholds)))
    with FolderLock(config.out, "score"):
        check_report_folder(config.out, config.overwrite)  # again, now no one else writes
        passed = first_pass(inputs, setup, score_workers(config.workers))
        _warn(passed.problems)
        choice = metricdefs.choose_thresholds(passed.curves, fixed, other,
                                              config.threshold_from or "", fixed_source,
                                              default=DEFAULT_FIXED_THRESHOLD)
        issues = {**inputs.issues, **passed.problems}
        summary, meta = write_report(config, inputs, setup, passed, choice, issues)
    failed = sum(v for k, v in passed.problems.items() if k in UNUSABLE_MAP)
    missing = inputs.issues.get("annotation_without_map", 0)
    return ScoreResult(summary, issues, failed, missing, 1 if failed else 0, config.out, meta,
                       ScoreReport(Path(config.out)))


def _fixed_threshold(config: ScoreConfig) -> tuple[float | None, str]:
    """The fixed rows' threshold and source: --threshold; else (without --threshold-from,
    which brings its own) the threshold a localize or boxes run boxed with, when it was
    not the uncalibrated default (a baseline's maps are not the run's: not carried);
    else None (the 0.2 default)."""
    if config.threshold is not None:
        return config.threshold, "fixed"
    if config.threshold_from or config.baseline is not None:
        return None, "fixed"
    carried = run_threshold(config.run)
    return carried if carried else (None, "fixed")


def protocol_label(config: ScoreConfig, protocol: ScoringProtocol) -> str:
    """summary.csv's protocol field for this run: the registry protocol's name, plus the
    baseline ('wsoleval (baseline: centre)')."""
    return reports.protocol_label(protocol.name,
                                  config.baseline.value if config.baseline else None)


def check_report_folder(out: str | Path, overwrite: bool) -> None:
    """Refuse to replace a report without --overwrite (reads only). A folder a killed
    score left (its staging folder, no report files) is not a report: a rerun finishes it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AcolError(f"--out {out} exists and is not a folder")
    found = [name for name in REPORT_FILES if (out / name).exists()]
    if found and not overwrite:
        raise AcolError(f"--out {out} already holds a score report ({', '.join(found[:3])}"
                        f"{', ...' if len(found) > 3 else ''}); add --overwrite to replace "
                        f"it, or choose another --out")


def _warn(issues: dict[str, int]) -> None:
    for name, amount in sorted(issues.items()):
        print(f"acol-eval: warning: {reports.issue_text(name, amount)}", file=sys.stderr)


# problems that leave an image unscored (exit status 1); the others are reported only
UNUSABLE_MAP = ("unreadable_map", "map_not_2d", "empty_map", "complex_map")


def _centre_source(source: MapSource) -> MapSource:
    """RUN's images, predictions and map resolution (28x28 for .npy folders); a centred
    Gaussian as every map."""
    side = (source.shape[1], source.shape[2]) if source.shape[0] else (28, 28)
    return MapSource.centre(side, centre_gaussian_map(*side, sigma=0.25))


def image_row(setup: PassSetup, item: ImageTask, record,
              choice: reports.ThresholdChoice) -> dict:
    """Per image at the best GT-known threshold: box (in the protocol's frame and in
    original pixels), IoU, correctness (0/1), error type, and the outcome columns the
    summary's bootstrap resamples (_gt_fixed, _gt_best, _v2_<k>)."""
    protocol, thresholds = setup.protocol, setup.thresholds
    has_gt = len(item.gt) > 0

    def prepared() -> np.ndarray:
        return protocol.prepare(setup.source.load(item.key)[0], item.width, item.height)

    gt_frame = protocol.scale_gt(item.gt, item.width, item.height) if has_gt else _NO_BOXES
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

    def at(index: int) -> metricdefs.ImageView:
        return metricdefs.ImageView(
            item.image, item.label, thresholds, index, largest, all_ious, gt_frame,
            item.top1, item.top5, lambda: protocol.box_at(record, thresholds, index, prepared))

    for metric in metricdefs.per_image_metrics():  # registered ones: their own column
        row[metric.name] = metric.value(at(choice.fixed))
    row["_iou_fixed"] = float(largest[choice.fixed]) if has_gt else np.nan
    row["_gt_fixed"] = metricdefs.localised(at(choice.fixed))
    row["_gt_best"] = metricdefs.localised(at(choice.best_gt))
    for k, index in choice.v2.items():
        row[f"_v2_{k}"] = metricdefs.any_box_reaches(k)(at(index))
    return row


# --------------------------------------------------------------------------- processes


# --------------------------------------------------------------------------- maps

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


# --------------------------------------------------------------------------- inputs


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


@dataclass(frozen=True)
class GivenInputs:
    """What a caller already holds in memory (calibration): `annotations`, the source
    as read (config.annotations then only names it in report.json); `images`, the
    images meant to be scored, as an --image-list names them (None: every annotated)."""

    annotations: Annotations
    images: tuple[str, ...] | None = None


def load_inputs(config: ScoreConfig, protocol: ScoringProtocol,
                given: GivenInputs | None = None) -> ScoreInputs:
    """Annotations and maps matched by image name; sizes from the annotations or the
    run's predictions.csv; what cannot be scored counted in issues."""
    annotations, everything = _read_annotations(config, given)
    known = everything.images["image"]  # every image of the source, all splits
    issues = dict(annotations.issues)
    run = LocalizeRun(Path(config.run))
    if run.has_maps:
        if config.predictions:
            raise AcolError(f"--predictions is for folders of .npy maps; {run.folder} is a "
                            f"localize run with its own predictions.csv")
        source, table = _store_table(run, annotations, config.map_choice, issues)
    else:
        source, table = _npy_table(run, known, issues)
        if config.predictions:
            table = with_predictions(table, annotations, known, config.predictions)
    images = _image_sizes(annotations.images.set_index("image"), run, source)
    unknown = ~table["image"].isin(known)  # other splits' maps are not counted
    if unknown.any():
        issues["map_without_annotation"] = issues.get("map_without_annotation", 0) + int(
            unknown.sum())
    listed = given is not None and given.images is not None
    wanted = (_given_images(annotations, given.images) if listed else
              wanted_images(annotations.images["image"], config.image_list))
    table = table[table["image"].isin(wanted)].reset_index(drop=True)
    missing_map = ~wanted.isin(table["image"])
    if missing_map.any():
        issues["annotation_without_map"] = int(missing_map.sum())
    for column in ("width", "height", "label"):
        table[column] = table["image"].map(images[column]).to_numpy()
    boxes = _boxes_by_image(annotations.boxes)
    mapped = len(table)
    table = _drop_unsized(table, boxes, protocol, issues)
    if not len(table):
        _nothing_to_score(annotations, source, run, issues)
    coverage = Coverage(int(annotations.images["image"].nunique()), len(wanted), mapped,
                        mapped - len(table), issues.get("map_without_annotation", 0),
                        config.image_list is not None or listed, config.allow_missing)
    check_coverage(coverage, config.split, everything.splits,
                   issues.get("label_not_a_model_class", 0))
    masks = _masks_by_image(annotations, config.mask_root)
    return ScoreInputs(source, table, boxes, masks, issues,
                       annotations_digest(table, boxes), coverage, annotations)


def _given_images(annotations: Annotations, images: tuple[str, ...]) -> pd.Index:
    """The images a caller means to score, as wanted_images reads an --image-list."""
    listed = pd.Index(sorted(set(images)))
    stray = listed[~listed.isin(annotations.images["image"])]
    if len(stray):
        raise AcolError(f"{len(stray)} of the {len(listed)} images to score are not "
                        f"annotated (e.g. {stray[0]!r})")
    return listed


def _read_annotations(config: ScoreConfig, given: GivenInputs | None = None
                      ) -> tuple[Annotations, Annotations]:
    """(the scored split's annotations, the whole source's): read, or as given."""
    extra = {"image_root": config.images} if config.images else {}
    everything = (given.annotations if given is not None else
                  read_source(config.annotations, label_rule=config.label_rule, **extra))
    annotations = everything
    if config.split:
        if config.split not in everything.splits:
            raise AcolError(f"split {config.split!r} not in the annotations "
                            f"(splits: {', '.join(everything.splits)})")
        annotations = everything.split(config.split)
    return annotations, everything


def _store_table(run: LocalizeRun, annotations: Annotations, choice: MapChoice,
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


def _npy_table(folder: LocalizeRun, names: pd.Series, issues: dict[str, int]
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


def _image_sizes(images: pd.DataFrame, run: LocalizeRun, source: MapSource
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


def _drop_unsized(table: pd.DataFrame, boxes: dict[str, np.ndarray],
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


def _nothing_to_score(annotations: Annotations, source: MapSource, run: LocalizeRun,
                      issues: dict[str, int]) -> None:
    """Say why no image can be scored: the issue counts first, then the cause."""
    _warn(issues)
    if issues.get("image_without_size"):
        cause = ("the images with maps have boxes but no image size (image_sizes.txt or "
                 "the images themselves)")
    elif issues.get("label_not_a_model_class"):
        cause = "the annotation labels are not classes of the model (try --map top1)"
    else:
        names = annotations.images["image"]
        ours = _map_names(source, run)
        cause = ("no map name matches an annotated image: maps are named like "
                 f"{ours!r}, annotations like {names.iloc[0] if len(names) else None!r}")
    raise AcolError(f"nothing to score: {cause}; check --split and the image names")


def _map_names(source: MapSource, run: LocalizeRun) -> str | None:
    if source.kind is MapKind.STORE:
        rows = run.predictions(usecols=["image"])
        return rows["image"].iloc[0] if len(rows) else None
    first = next(iter(sorted(run.folder.rglob("*.npy"))), None)
    return first.relative_to(run.folder).as_posix() if first else None


def _boxes_by_image(boxes: pd.DataFrame) -> dict[str, np.ndarray]:
    """image -> (g, 4) float64 boxes; one sort, no per-group pandas (that took seconds)."""
    if not len(boxes):
        return {}
    codes, names = pd.factorize(boxes["image"])
    order = np.argsort(codes, kind="stable")
    coords = boxes[["x0", "y0", "x1", "y1"]].to_numpy(dtype=np.float64)[order]
    cuts = np.flatnonzero(np.diff(codes[order])) + 1
    return dict(zip(names, np.split(coords, cuts)))


def _masks_by_image(annotations: Annotations, mask_root: str | None
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
        digest.update(np.asarray(boxes.get(image, _NO_BOXES), "<f8").tobytes())
        digest.update(b"\n")
    return digest.hexdigest()


# --------------------------------------------------------------------------- reports

PER_IMAGE_INTS = ("correct", "top1_correct", "top5_correct", "has_gt")


def write_report(config: ScoreConfig, inputs: ScoreInputs, setup: PassSetup,
                 passed: FirstPass, choice: reports.ThresholdChoice,
                 issues: dict[str, int]) -> tuple[pd.DataFrame, ReportMeta]:
    """The second pass (per-image rows from the records, streamed to per_image.csv) and
    every report file, staged and moved into --out together. Returns the summary and
    report.json's record."""
    label = protocol_label(config, setup.protocol)
    with ReportStaging(config.out) as staging:
        per_image = _second_pass(inputs, setup, passed, choice, staging)
        meta = _meta(config, inputs, setup, choice, len(per_image))
        summary = reports.summary_table(reports.SummaryInputs(
            passed.curves, choice, label, bool(inputs.table["top1"].notna().any()),
            passed.hist, per_image, issues, config.bootstrap, config.seed,
            meta.map_scored, f"{meta.images} of {meta.annotated}"))
        with atomic_open(staging.path("summary.csv")) as handle:
            summary.to_csv(handle, index=False, float_format="%.6g")
        per_class = reports.per_class_table(per_image, passed.curves, choice)
        if per_class is not None:
            with atomic_open(staging.path("per_class.csv")) as handle:
                per_class.to_csv(handle, index=False, float_format="%.6g")
        curve = reports.curve_table(passed.curves)
        with atomic_open(staging.path("curve.csv")) as handle:
            curve.to_csv(handle, index=False, float_format="%.6g")
        reports.plot_curve(staging.path("curve.png"), curve, label, summary)
        if passed.hist is not None:  # masks were scored
            with atomic_open(staging.path("pxap_curve.csv")) as handle:
                reports.pxap_curve_table(passed.hist, setup.thresholds).to_csv(
                    handle, index=False, float_format="%.6g")
        meta.write(staging.folder)
        staging.commit()  # drops an older report.html: the page below is of these files
    from .htmlreport import write_score_html

    # the annotations as this job read them (its --images root, its --label-rule)
    write_score_html(ScoreReport(Path(config.out)), inputs.annotations)
    return summary, meta


def _second_pass(inputs: ScoreInputs, setup: PassSetup, passed: FirstPass,
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
            frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else per_image_columns())
            shown = frame[[c for c in frame.columns if not c.startswith("_")]].copy()
            for column in PER_IMAGE_INTS:
                shown[column] = shown[column].astype("Int64")
            shown.to_csv(handle, index=False, header=start == 0)
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


PER_IMAGE_COLUMNS = ["image", "label", "map", "frame", "threshold", "threshold_source", "iou",
                     "x0", "y0", "x1", "y1", "orig_x0", "orig_y0", "orig_x1", "orig_y1",
                     "correct", "top1_correct", "top5_correct", "error", "has_gt"]


def per_image_columns() -> list[str]:
    """per_image.csv's columns: the fixed ones, then one per registered per-image metric."""
    return PER_IMAGE_COLUMNS + [m.name for m in metricdefs.per_image_metrics()]


def _meta(config: ScoreConfig, inputs: ScoreInputs, setup: PassSetup,
          choice: reports.ThresholdChoice, scored: int) -> ReportMeta:
    """report.json. images: the images scored (a map that could not be used leaves its
    image out); annotated: the scored split's annotated images; subset: why fewer were
    accepted, when they were."""
    sources = {choice.best_source, *choice.v2_source.values()}
    coverage = inputs.coverage
    annotated = coverage.annotated if coverage else scored
    subset = coverage.subset if coverage and scored < annotated else None
    if subset is None and scored < annotated and coverage and coverage.allow_missing:
        subset = Subset.ALLOW_MISSING  # a map that could not be used, scored without
    return ReportMeta(
        protocol=setup.protocol.name, annotations=config.annotations,
        annotations_digest=inputs.digest, run=str(Path(config.run).resolve()),
        split=config.split, baseline=config.baseline.value if config.baseline else None,
        images_root=str(Path(config.images).resolve()) if config.images else None,
        label_rule=config.label_rule,
        map_choice=config.map_choice.value, interval=float(config.interval),
        n_thresholds=len(setup.thresholds), iou=list(config.iou),
        threshold_source=sources.pop() if len(sources) == 1 else "mixed",
        images=scored, annotated=annotated, subset=subset.value if subset else None,
        map_scored=inputs.map_scored, version_info=library_versions())
