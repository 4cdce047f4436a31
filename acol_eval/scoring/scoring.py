"""The `score` job as a short pipeline of typed stages. Never imports torch.

    load_inputs        maps + annotations + sizes           -> ScoreInputs
    first_pass         every CAM threshold, all cores       -> FirstPass (curves, records)
    choose_thresholds  pure (metricdefs): the grid index of every metric -> ThresholdChoice
    write_report       per-image rows from the records      -> the report folder

The protocol (protocols/) does everything protocol-specific; this module holds the
config (ScoreConfig) and meets the stages with it: the map source and tables are
built in scoreinputs.py, the passes over the images run in passes.py.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.data.readers import Annotations, read_source
from acol_eval.maps.maps import centre_gaussian_map
from acol_eval.maps.reportfolder import (
    REPORT_FILES,
    ReportMeta,
    ReportStaging,
    ScoreReport,
    read_thresholds,
)
from acol_eval.maps.runfolder import LocalizeRun
from acol_eval.maps.thresholds import run_threshold
from acol_eval.metrics import metricdefs, reports
from acol_eval.metrics.regionmetrics import RegionOptions, region_names
from acol_eval.report import curveplot
from acol_eval.scoring.coverage import Coverage, Subset, check_coverage, wanted_images
from acol_eval.scoring.passes import FirstPass, PassSetup, first_pass, second_pass, with_region
from acol_eval.scoring.predictionfile import with_predictions
from acol_eval.scoring.protocols import Protocol, ScoringProtocol, get_protocol, parse_protocol
from acol_eval.scoring.scoreinputs import (
    MapChoice,
    MapKind,
    MapSource,
    ScoreInputs,
    annotations_digest,
    boxes_by_image,
    drop_unsized,
    image_sizes,
    masks_by_image,
    npy_table,
    store_table,
)
from acol_eval.util import safeio
from acol_eval.util.csvtext import frame_to_csv
from acol_eval.util.errors import AcolError
from acol_eval.util.runtime import check_bootstrap, library_versions, resolve_workers
from acol_eval.util.safeio import FolderLock, atomic_open

MIN_INTERVAL = 1e-4  # 10,000 thresholds: the grid, curves and records stay small
DEFAULT_FIXED_THRESHOLD = 0.2


def score_workers(workers: int | None) -> int:
    """--workers (runtime.resolve_workers) with score's default, all cores: scoring is
    pure CPU work with no model threads to leave a core to."""
    return resolve_workers(workers, default=os.cpu_count() or 1)


class Baseline(str, Enum):
    CENTRE = "centre"  # a centred Gaussian map for every image instead of RUN's maps


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
    region_metrics: tuple[str, ...] = ()  # opt-in region metrics ('all' for every one)
    pointing_tolerance: float = 0.0  # pointing game: frame pixels around the region
    top_k: int = 1000  # Top-K Intersection's k

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
        check_bootstrap(self.bootstrap)
        score_workers(self.workers)
        if self.mask_root and not Path(self.mask_root).is_dir():
            raise AcolError(f"--mask-root {self.mask_root} is not a folder")
        if self.images and not Path(self.images).is_dir():
            raise AcolError(f"--images {self.images} is not a folder")
        put(self, "region_metrics", _region_names(self.region_metrics))
        if not (np.isfinite(self.pointing_tolerance) and self.pointing_tolerance >= 0):
            raise AcolError(f"--pointing-tolerance {self.pointing_tolerance} must be a "
                            f"distance in pixels, 0 or more")
        if self.top_k < 1:
            raise AcolError(f"--top-k {self.top_k} must be at least 1")
        if self.strict and self.allow_missing:
            raise AcolError("--strict (refuse a partial score, the default) and "
                            "--allow-missing contradict each other; give one")


def _region_names(given) -> tuple[str, ...]:
    """--region-metrics as names in the registry's order: 'all', or names (a string of
    comma-separated names, or a sequence); unknown names are refused."""
    parts = given.split(",") if isinstance(given, str) else list(given)
    wanted = {p.strip() for p in parts if p.strip()}
    known = region_names()
    if "all" in wanted:
        wanted = (wanted - {"all"}) | set(known)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise AcolError(f"--region-metrics {','.join(unknown)}: use all or names among "
                        f"{', '.join(known)}")
    return tuple(n for n in known if n in wanted)


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
    region = region_options(config)
    setup = PassSetup(inputs.source, protocol, thresholds, config.iou,
                      with_region(protocol.record_dtype(len(thresholds)), region), region)
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


def region_options(config: ScoreConfig) -> RegionOptions | None:
    """The region metrics asked for and their parameters (None: none asked for)."""
    if not config.region_metrics:
        return None
    return RegionOptions(config.region_metrics, float(config.pointing_tolerance),
                         int(config.top_k))


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
    safeio.refuse_existing(out, REPORT_FILES, overwrite, lambda found: (
        f"--out {out} already holds a score report ({', '.join(found[:3])}"
        f"{', ...' if len(found) > 3 else ''}); add --overwrite to replace it, or choose "
        f"another --out"), label=f"--out {out}")


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


# --------------------------------------------------------------------------- inputs


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
        source, table = store_table(run, annotations, config.map_choice, issues)
    else:
        source, table = npy_table(run, known, issues)
        if config.predictions:
            table = with_predictions(table, annotations, known, config.predictions)
    images = image_sizes(annotations.images.set_index("image"), run, source)
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
    boxes = boxes_by_image(annotations.boxes)
    mapped = len(table)
    table = drop_unsized(table, boxes, protocol, issues)
    if not len(table):
        _nothing_to_score(annotations, source, run, issues)
    coverage = Coverage(int(annotations.images["image"].nunique()), len(wanted), mapped,
                        mapped - len(table), issues.get("map_without_annotation", 0),
                        config.image_list is not None or listed, config.allow_missing)
    check_coverage(coverage, config.split, everything.splits,
                   issues.get("label_not_a_model_class", 0))
    masks = masks_by_image(annotations, config.mask_root)
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


# --------------------------------------------------------------------------- reports


def write_report(config: ScoreConfig, inputs: ScoreInputs, setup: PassSetup,
                 passed: FirstPass, choice: reports.ThresholdChoice,
                 issues: dict[str, int]) -> tuple[pd.DataFrame, ReportMeta]:
    """The second pass (per-image rows from the records, streamed to per_image.csv) and
    every report file, staged and moved into --out together. Returns the summary and
    report.json's record."""
    label = protocol_label(config, setup.protocol)
    with ReportStaging(config.out) as staging:
        per_image = second_pass(inputs, setup, passed, choice, staging)
        meta = _meta(config, inputs, setup, choice, len(per_image))
        summary = reports.summary_table(reports.SummaryInputs(
            passed.curves, choice, label, bool(inputs.table["top1"].notna().any()),
            passed.hist, per_image, issues, config.bootstrap, config.seed,
            meta.map_scored, f"{meta.images} of {meta.annotated}"))
        with atomic_open(staging.path("summary.csv")) as handle:
            frame_to_csv(summary, handle, index=False, float_format="%.6g")
        per_class = reports.per_class_table(per_image, passed.curves, choice)
        if per_class is not None:
            with atomic_open(staging.path("per_class.csv")) as handle:
                frame_to_csv(per_class, handle, index=False, float_format="%.6g")
        curve = reports.curve_table(passed.curves)
        with atomic_open(staging.path("curve.csv")) as handle:
            frame_to_csv(curve, handle, index=False, float_format="%.6g")
        curveplot.plot_curve(staging.path("curve.png"), curve, label, summary)
        if passed.hist is not None:  # masks were scored
            with atomic_open(staging.path("pxap_curve.csv")) as handle:
                frame_to_csv(reports.pxap_curve_table(passed.hist, setup.thresholds),
                             handle, index=False, float_format="%.6g")
        meta.write(staging.folder)
        staging.commit()  # drops an older report.html: the page below is of these files
    from acol_eval.report.htmlreport import write_score_html

    # the annotations as this job read them (its --images root, its --label-rule)
    write_score_html(ScoreReport(Path(config.out)), inputs.annotations)
    return summary, meta


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
        map_scored=inputs.map_scored, version_info=library_versions(),
        region_metrics=region.record() if (region := region_options(config)) else None)
