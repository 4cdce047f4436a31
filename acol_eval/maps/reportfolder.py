"""The report folder of `score`: what is in it, written and read here only.

REPORT/
    summary.csv, per_class.csv, per_image.csv, curve.csv, curve.png
    pxap_curve.csv (threshold, precision, recall; when masks were scored)
    report.json     ReportMeta: what was scored, how, from where (this module)
    outcomes.npz    Outcomes: per image and CAM threshold, correct or not (this module)
    report.html     the page people look at

`score` writes it, `compare`, `boxes`, `localize --threshold-from` and
`score --threshold-from` read it. outcomes.npz is what lets `compare` re-pick each
method's best threshold inside every bootstrap resample without maps or images:
per image, per curve, one bit per threshold (numpy.packbits along the threshold
axis, compressed), a few MB for 50,000 images.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from acol_eval.util.csvtext import unescape_frame
from acol_eval.util.errors import AcolError
from acol_eval.util.safeio import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

REPORT_FORMAT = "acol-eval-report"
REPORT_VERSION = 1
META_FILE = "report.json"
OUTCOMES_FILE = "outcomes.npz"


@dataclass(frozen=True)
class ReportMeta:
    """report.json: enough to tell whether two reports may be compared, and where the
    maps and images of a report are (for galleries and re-boxing).

    protocol: the protocol's name ('wsoleval', 'native'); baseline: 'centre' or None.
    annotations: the source as given (FORMAT:PATH); annotations_digest: sha256 of the
    scored images' names, labels and boxes (two reports are of the same annotations
    only when their digests are equal). run: the scored run folder (absolute);
    images_root: where the run's images are, when known; label_rule: --label-rule as
    given (which category labels a COCO image), so the source reads back the same.
    map_choice: --map as given ('label', 'top1' or 'auto'); map_scored: the maps that
    were scored: 'label', 'top1', 'label+top1' (auto, where some labels are not model
    classes), 'npy' (maps from files, taken as the label's), 'centre' (the centre
    baseline); with top1 or label+top1 the largest-box figures are named agnostic_loc
    / best_agnostic_loc.
    thresholds: the CAM threshold grid's step (interval) and count.
    threshold_source: of the best-threshold rows: 'oracle', 'from:PATH' or 'mixed'.
    images: the images scored (N); annotated: the annotated images of the scored split
    (M), so a report of part of the benchmark says so ("N of M"); subset: why N < M was
    accepted ('allow-missing', 'image-list' for an --image-list file), None when N == M
    or when nobody accepted it (a map that could not be read: the score exited 1).
    region_metrics: the region metrics scored and their parameters (None: none).
    """

    protocol: str
    annotations: str
    annotations_digest: str
    run: str
    split: str | None = None
    baseline: str | None = None
    images_root: str | None = None
    label_rule: str | None = None
    map_choice: str = "auto"
    interval: float = 0.001
    n_thresholds: int = 1000
    iou: list[int] = field(default_factory=lambda: [30, 50, 70])
    threshold_source: str = "oracle"
    images: int = 0
    annotated: int = 0
    subset: str | None = None
    map_scored: str = ""
    version_info: dict[str, str] = field(default_factory=dict)
    region_metrics: dict | None = None  # score --region-metrics: names and parameters

    @property
    def partial(self) -> bool:
        """True when fewer images were scored than the split annotates."""
        return 0 < self.annotated and self.images < self.annotated

    @property
    def agnostic(self) -> bool:
        """The top-1 predicted class's map was scored for some image."""
        return self.map_scored in ("top1", "label+top1")

    @property
    def coverage(self) -> str:
        """'N of M annotated images', what every view of a report shows."""
        total = self.annotated or self.images
        return f"{self.images} of {total} annotated image{'s' if total != 1 else ''}"

    def write(self, folder: str | Path) -> None:
        record = {"format": REPORT_FORMAT, "version": REPORT_VERSION, **asdict(self)}
        atomic_write_text(Path(folder) / META_FILE, json.dumps(record, indent=1) + "\n")

    @classmethod
    def read(cls, folder: str | Path) -> ReportMeta:
        path = Path(folder) / META_FILE
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise AcolError(f"{folder} is not an acol-eval report ({META_FILE}: "
                            f"{getattr(exc, 'strerror', None) or exc})") from None
        if not isinstance(record, dict) or record.get("format") != REPORT_FORMAT:
            raise AcolError(f"{path} is not an acol-eval report.json")
        if int(record.get("version", 0)) > REPORT_VERSION:
            raise AcolError(f"{path} has report version {record['version']}; this acol-eval "
                            f"reads up to {REPORT_VERSION}: upgrade acol-eval")
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in record.items() if k in known})
        except TypeError as exc:
            raise AcolError(f"{path} lacks fields: {exc}") from None


@dataclass
class Outcomes:
    """Per image (in per_image.csv's row order) and per CAM threshold: correct or not.

    images: (N,) image names. thresholds: (T,) float64 grid. iou: (J,) IoU percents
    of MaxBoxAccV2. v2: (J, N, T) bool, any box of the map reaches iou[j] against any
    ground-truth box. v1: (N, T) bool, the largest box reaches IoU 0.5 (GT-known Loc,
    MaxBoxAcc). top1 / top5: (N,) int8, 1 right, 0 wrong, -1 unknown (no predictions).
    has_gt: (N,) bool, the image has ground-truth boxes (counted in the box metrics).
    """

    images: np.ndarray
    thresholds: np.ndarray
    iou: np.ndarray
    v2: np.ndarray
    v1: np.ndarray
    top1: np.ndarray
    top5: np.ndarray
    has_gt: np.ndarray

    def write(self, folder: str | Path) -> None:
        self.write_packed(folder, self.images, self.thresholds, self.iou,
                          np.packbits(np.asarray(self.v2, bool), axis=-1),
                          np.packbits(np.asarray(self.v1, bool), axis=-1),
                          self.top1, self.top5, self.has_gt)

    @staticmethod
    def write_packed(folder: str | Path, images, thresholds, iou, v2_bits: np.ndarray,
                     v1_bits: np.ndarray, top1, top5, has_gt) -> None:
        """The same file as write(), from bits already packed along the threshold axis
        (numpy.packbits: v2_bits (J, N, ceil(T / 8)), v1_bits (N, ceil(T / 8)) uint8), so
        a writer of 50,000 images never holds N x T booleans."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, images=np.asarray(images, dtype=str),
            thresholds=np.asarray(thresholds, np.float64),
            iou=np.asarray(iou, np.int64), v2=np.asarray(v2_bits, np.uint8),
            v1=np.asarray(v1_bits, np.uint8), top1=np.asarray(top1, np.int8),
            top5=np.asarray(top5, np.int8), has_gt=np.asarray(has_gt, bool))
        atomic_write_bytes(Path(folder) / OUTCOMES_FILE, buffer.getvalue())

    @classmethod
    def read(cls, folder: str | Path) -> Outcomes:
        path = Path(folder) / OUTCOMES_FILE
        try:
            with np.load(path, allow_pickle=False) as data:
                thresholds = data["thresholds"]
                count = len(thresholds)
                return cls(images=data["images"], thresholds=thresholds, iou=data["iou"],
                           v2=np.unpackbits(data["v2"], axis=-1, count=count).astype(bool),
                           v1=np.unpackbits(data["v1"], axis=-1, count=count).astype(bool),
                           top1=data["top1"], top5=data["top5"], has_gt=data["has_gt"])
        except (OSError, ValueError, KeyError) as exc:
            raise AcolError(f"{path} is missing or not an acol-eval outcomes file "
                            f"({exc}); score the run again with this acol-eval") from None


# --------------------------------------------------------------------------- the folder

REPORT_TABLES = ("summary", "per_image", "per_class", "curve", "pxap_curve")
# text columns: an image named 'nan' or a class named 'NA' stays a name
TEXT_COLUMNS = {"image": str, "label": str, "class": str, "metric": str, "error": str,
                "threshold_source": str}


@dataclass(frozen=True, eq=False)
class ScoreReport:
    """One score report folder: its tables, report.json, outcomes and name. Nothing is
    read on construction; every reader of a report goes through here."""

    folder: Path
    # the ScoreResult of the score that returned it (issues met, maps that failed); None
    # for a report opened from its folder
    result: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, folder: str | Path) -> ScoreReport:
        path = Path(folder)
        if not path.is_dir():
            raise AcolError(f"{folder} is not a report folder")
        return cls(path)

    @property
    def name(self) -> str:
        """The folder's own name (method_names tells reports of the same name apart)."""
        return self.folder.resolve().name

    @cached_property
    def meta(self) -> ReportMeta:
        """report.json; one AcolError line when it is missing or not one."""
        return ReportMeta.read(self.folder)

    @property
    def meta_or_none(self) -> ReportMeta | None:
        """report.json, or None for a folder without a readable one (a hand-made or
        older report: the page shows what its tables say)."""
        try:
            return self.meta
        except AcolError:
            return None

    def table(self, name: str, notes: list[str] | None = None) -> pd.DataFrame:
        """NAME.csv as it is, or an empty table when it is missing or unreadable (what
        was unreadable is added to `notes`)."""
        import pandas as pd

        path = self.folder / f"{name}.csv"
        if not path.is_file():
            return pd.DataFrame()
        try:
            return unescape_frame(pd.read_csv(path, dtype=TEXT_COLUMNS))
        except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            if notes is not None:
                notes.append(f"{path.name} could not be read "
                             f"({str(exc).splitlines()[0][:120]})")
            return pd.DataFrame()

    def columns(self, name: str, columns: list[str], optional: list[str] = ()
                ) -> pd.DataFrame:
        """`columns` (and those of `optional` it has) of NAME.csv, empty fields missing
        in value and threshold, text kept as text; one AcolError line when the file is
        unreadable or lacks a column."""
        import pandas as pd

        path = self.folder / f"{name}.csv"
        try:
            table = pd.read_csv(path, usecols=lambda c: c in columns or c in optional,
                                dtype=TEXT_COLUMNS, keep_default_na=False,
                                na_values={"value": [""], "threshold": [""]})
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise AcolError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
                            ) from None
        table = unescape_frame(table)
        if missing := [c for c in columns if c not in table.columns]:
            raise AcolError(f"{path} lacks the column(s) {', '.join(missing)}; is it a "
                            f"score report?")
        return table

    # the tables as DataFrames, read from the folder each time they are asked for
    @property
    def summary(self) -> pd.DataFrame:
        """summary.csv: one row per metric (value, threshold, its source, interval)."""
        return self.table("summary")

    @property
    def per_image(self) -> pd.DataFrame:
        """per_image.csv: one row per scored image."""
        return self.table("per_image")

    @property
    def per_class(self) -> pd.DataFrame:
        """per_class.csv: one row per class (empty when the report has none)."""
        return self.table("per_class")

    @property
    def curve(self) -> pd.DataFrame:
        """curve.csv: accuracy against CAM threshold, one column per curve."""
        return self.table("curve")

    def curve_figure(self) -> Png:
        """curve.png (accuracy against CAM threshold), shown inline by a notebook."""
        path = self.folder / "curve.png"
        try:
            return Png(path.read_bytes())
        except OSError as exc:
            raise AcolError(f"{path} is missing or unreadable ({exc.strerror})") from None

    def _repr_html_(self) -> str:
        """A notebook's view: coverage, the headline rows of summary.csv, the curve."""
        from acol_eval.maps.notebookview import report_html

        return report_html(self)

    def outcomes(self) -> Outcomes:
        return Outcomes.read(self.folder)

    def thresholds(self, protocol: str | None = None) -> dict[str, float]:
        """metric -> CAM threshold of summary.csv (read_thresholds)."""
        return read_thresholds(self.folder, protocol)

    def annotations(self):
        """The annotation source report.json names, read as score read it (its images
        root and label rule); None when it names none or it cannot be read. For pages
        written again from a folder: `score` hands its own annotations over instead."""
        from acol_eval.data.readers import read_source

        meta = self.meta_or_none
        if meta is None or not meta.annotations:
            return None
        extra = {"image_root": meta.images_root} if meta.images_root else {}
        try:
            return read_source(meta.annotations, label_rule=meta.label_rule, **extra)
        except (AcolError, OSError, ValueError, KeyError):
            return None


class Png(bytes):
    """A PNG image's bytes that a notebook shows as the image (IPython's _repr_png_)."""

    def _repr_png_(self) -> bytes:
        return bytes(self)


def as_report(report: ScoreReport | str | Path) -> ScoreReport:
    """A ScoreReport from itself or its folder."""
    return report if isinstance(report, ScoreReport) else ScoreReport.open(report)


def method_names(groups: list[tuple[str | Path, ...]]) -> list[str]:
    """The one name of each method (a group of report folders: one, or a seed group),
    as leaderboard.csv and both report pages show it: its folders' names joined by
    commas; where other folders share a name (run/report, run2/report), with their
    parent's ('run/report'); made unique with a number where that is not enough (one
    report given twice)."""
    def short(path) -> str:
        return Path(path).name or str(path)

    folders: dict[str, set[Path]] = {}
    for p in (p for paths in groups for p in paths):
        folders.setdefault(short(p), set()).add(Path(p).resolve())

    def named(path) -> str:
        if len(folders[short(path)]) < 2:
            return short(path)
        return f"{Path(path).resolve().parent.name}/{short(path)}"

    names: list[str] = []
    for paths in groups:
        name = ",".join(named(p) for p in paths)
        base, copy = name, 2
        while name in names:
            name, copy = f"{base} ({copy})", copy + 1
        names.append(name)
    return names


# --------------------------------------------------------------------------- thresholds

SUMMARY_FILE = "summary.csv"


def read_summary(report: str | Path, columns: set[str]):
    """(table, file): another report's summary.csv (REPORT folder or the file itself),
    for `--threshold-from`, with at least `columns`; one AcolError line otherwise. Text
    fields stay text ('nan' is a name), empty fields are missing."""
    import pandas as pd

    path = Path(report)
    file = path / SUMMARY_FILE if path.is_dir() else path
    if not file.is_file():
        raise AcolError(f"--threshold-from {report}: not an acol-eval report "
                        f"(no {SUMMARY_FILE})")
    try:
        table = pd.read_csv(file, dtype={"metric": str, "protocol": str},
                            keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise AcolError(f"--threshold-from {report}: {file} is unreadable ({exc})") from None
    table = unescape_frame(table)
    if not columns <= set(table.columns):
        raise AcolError(f"--threshold-from {report}: {file} is not an acol-eval summary.csv")
    return table, file


def read_thresholds(report: str | Path, protocol: str | None = None) -> dict[str, float]:
    """metric -> CAM threshold of another report's summary.csv (REPORT folder or the file
    itself), for `--threshold-from`; rows without a threshold are left out.

    `protocol`: the protocol label the thresholds will be used under (summary.csv's
    protocol field, e.g. 'wsoleval' or 'native (baseline: centre)'). A report whose
    thresholds were chosen under another one is refused: a wsoleval threshold is a level
    of a 224x224 map, a native one a fraction of the map's range at the image's size, and
    a baseline's belong to the baseline's maps. A hand-made summary.csv without a
    protocol column is taken as it is."""
    import pandas as pd

    table, file = read_summary(report, {"metric", "threshold"})
    values = pd.to_numeric(table["threshold"], errors="coerce")
    if protocol is not None and "protocol" in table.columns:
        found = sorted({str(p).strip() for p, t in zip(table["protocol"], values)
                        if pd.notna(t) and pd.notna(p) and str(p).strip()})
        if found and found != [protocol]:
            raise AcolError(f"--threshold-from: {file} chose its thresholds under "
                            f"{' and '.join(found)}, this score runs {protocol}, and no "
                            f"conversion between them keeps the same pixels: score that "
                            f"report's maps the same way and pass it "
                            f"({rescore_command(report, protocol)})")
    return {str(m): float(t) for m, t in zip(table["metric"], values)
            if pd.notna(t) and 0 <= t <= 1}


def rescore_command(report: str | Path, protocol: str) -> str:
    """The command that scores `report`'s run again under `protocol` (a protocol label,
    'native' or 'wsoleval (baseline: centre)'), from its report.json when it has one."""
    from shlex import quote

    name, _, baseline = protocol.partition(" (baseline: ")
    folder = Path(report) if Path(report).is_dir() else Path(report).parent
    try:
        meta = ReportMeta.read(folder)
        run, source = meta.run, meta.annotations
        split = f" --split {quote(meta.split)}" if meta.split else ""
    except AcolError:
        run, source, split = "RUN", "SRC", ""
    extra = f" --baseline {baseline.rstrip(')')}" if baseline else ""
    return (f"acol-eval score {quote(run)} --annotations {quote(source)}{split} --protocol "
            f"{name}{extra} --out {quote(str(folder).rstrip('/') + '-' + name)}")


# --------------------------------------------------------------------------- writing

STAGING = ".score-partial"
# summary.csv last: a report folder with a summary.csv is whole
PAGE_FILE = "report.html"  # written by htmlreport after the commit, from the files here
REPORT_FILES = ("per_image.csv", "per_class.csv", "curve.csv", "curve.png",
                "pxap_curve.csv", META_FILE, OUTCOMES_FILE, PAGE_FILE, SUMMARY_FILE)


class ReportStaging:
    """The report files of one score run, written into REPORT/.score-partial/ and moved
    into REPORT together at commit(): a killed run leaves the old report as it was (and
    the staging folder, cleared by the next run), never an old summary.csv beside a new
    partial per_image.csv. Files an older run wrote but this one does not are removed.
    Hold a FolderLock on REPORT around it; write every staged file with safeio's atomic
    writers (fsynced), as commit() only renames.

        with ReportStaging(out) as staging:
            write(staging.path("per_image.csv")) ...
            staging.commit()
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.folder = self.out / STAGING

    def __enter__(self) -> ReportStaging:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        return self

    def path(self, name: str) -> Path:
        if name not in REPORT_FILES:
            raise ValueError(f"{name} is not a report file")
        return self.folder / name

    def commit(self) -> None:
        import os

        (self.out / SUMMARY_FILE).unlink(missing_ok=True)  # unfinished from here on
        for name in REPORT_FILES:
            staged, final = self.folder / name, self.out / name
            if staged.exists():  # written with safeio's atomic writers: already fsynced
                os.replace(staged, final)
            else:
                final.unlink(missing_ok=True)
        directory = os.open(self.out, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self.folder.rmdir()

    def __exit__(self, *exc_info) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
