"""The `compare` job: score reports of several methods on the same
images, side by side, with paired statistics. Needs neither maps nor images.

Reads each REPORT folder that `score` wrote (report.json, outcomes.npz, summary.csv,
per_image.csv), checks that the reports are comparable (same protocol, annotations, IoU
list and threshold grid, and the same coverage: the same scored images of the same
annotated split) and writes to --out:

- leaderboard.csv: one row per report or seed group, every metric with its 95%
  bootstrap interval (and, for a group, the standard deviation over seeds), and the
  coverage ("N of M annotated images");
- pairs.csv: one row per report or group against the reference: the difference of every
  metric with its 95% paired bootstrap interval, and the exact McNemar test of per-image
  GT-known correctness at each report's own max_box_acc threshold;
- report.html: the two tables as a page people read (acol_eval.report.comparepage).

Reports of different coverage are refused rather than compared on their common images:
a figure on part of a split is another benchmark's figure, and a leaderboard of such
figures beside whole-split ones would mislead.

In every bootstrap resample each method's best CAM threshold is picked again on the
resample (unless the report took its thresholds from another report), so the interval
includes the optimism of choosing the oracle threshold on the test images. How it stays
fast is told in acol_eval.comparison.stats; the reading and the resampling are
acol_eval.comparison.compareresample's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.comparison.compareresample import (
    Report,
    Resampleable,
    bootstrap,
    fixed_name,
    observed_values,
    prepare,
    read_report,
)
from acol_eval.comparison.stats import interval, mcnemar_exact
from acol_eval.maps.reportfolder import method_names
from acol_eval.metrics import metricdefs
from acol_eval.util import safeio
from acol_eval.util.csvtext import frame_to_csv
from acol_eval.util.errors import AcolError
from acol_eval.util.progress import Progress
from acol_eval.util.runtime import check_bootstrap
from acol_eval.util.safeio import FolderLock, atomic_write_text

OUTPUT_FILES = ("leaderboard.csv", "pairs.csv", "report.html")


@dataclass(frozen=True)
class CompareConfig:
    """reports: one entry per method: a report folder, or several seeds' report folders
    of one method joined by commas ('a1,a2,a3'). reference: the entry (or one report of
    it) the others are compared against; default the first. bootstrap: resampling rounds
    (0: no intervals). overwrite: replace leaderboard.csv / pairs.csv already in out."""

    reports: tuple[str, ...]
    out: str
    reference: str | None = None
    bootstrap: int = 1000
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "reports", tuple(self.reports))
        if not self.reports:
            raise AcolError("compare needs at least one REPORT")
        for entry in self.reports:
            if not entry or any(not part.strip() for part in entry.split(",")):
                raise AcolError(f"REPORT {entry!r} has an empty name; give report folders, "
                                f"seeds of one method joined by commas (a1,a2,a3)")
        check_bootstrap(self.bootstrap)
        if not self.out:
            raise AcolError("--out must name a folder")
        inputs = {Path(p).resolve() for group in self.groups for p in group}
        inputs |= {Path(p.strip()).resolve() for p in (self.reference or "").split(",")
                   if p.strip()}
        if Path(self.out).resolve() in inputs:
            raise AcolError(f"--out {self.out} is one of the compared reports; choose "
                            f"another folder")
        _refuse_repeats([p for group in self.groups for p in group])

    @property
    def groups(self) -> list[tuple[str, ...]]:
        """The report folders of each entry (one for a single report)."""
        return [tuple(p.strip() for p in entry.split(",")) for entry in self.reports]


def _refuse_repeats(paths: list[str]) -> None:
    """One line when one report folder is given twice (also as another path to it, a
    link): a report compared with itself differs by nothing."""
    seen: dict[Path, str] = {}
    for path in paths:
        resolved = Path(path).resolve()
        if resolved in seen:
            same = "" if seen[resolved] == path else f" (as {seen[resolved]})"
            raise AcolError(f"REPORT {path} is given twice{same}: a report compared with "
                            f"itself differs by nothing; give each report once")
        seen[resolved] = path


@dataclass
class CompareResult:
    """What the CLI prints: the two tables, how many images were compared, where.
    coverage: 'N of M annotated images' (or 'N images' for reports that do not record
    M); partial: N < M."""

    leaderboard: pd.DataFrame
    pairs: pd.DataFrame
    reference: str
    common: int
    images: dict[str, int]  # report folder -> images it scored
    rounds: int
    seconds: float
    out: Path
    coverage: str = ""
    partial: bool = False

    def _repr_html_(self) -> str:
        """A notebook's view: the coverage line and the leaderboard."""
        import html

        rounds = (f"{self.rounds} bootstrap rounds, 95% intervals" if self.rounds
                  else "no bootstrap")
        line = f"compare -> {self.out}: {self.coverage or self.common}, {rounds}"
        return (f"<p><b>{html.escape(line)}</b></p>\n"
                + self.leaderboard.to_html(index=False, na_rep="",
                                           float_format=lambda v: f"{v:.4g}"))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- checks


def coverage(report: Report) -> str:
    """'N of M annotated images', or 'N images' for a report that does not record M."""
    if report.meta.annotated:
        return report.meta.coverage
    return f"{len(report.images)} image{'s' if len(report.images) != 1 else ''}"


def check_comparable(reports: list[Report]) -> None:
    """Refuse (one line naming what differs) reports scored under another protocol, IoU
    list, threshold grid, annotations, coverage or kind of scored map.

    annotations_digest covers the scored images' names, labels and boxes. Reports of one
    annotation source must have scored the same images of the same annotated split
    (their coverage, "N of M annotated images", is one): a method scored on part of a
    split is not compared with one scored on another part or the whole, even on the
    images they share. Same images with another digest: other labels or boxes, refused.
    """
    first = reports[0]
    checks = (("protocol", lambda r: r.meta.protocol),
              ("IoU list (--iou)", lambda r: [int(k) for k in r.meta.iou]),
              ("CAM threshold grid (--cam-curve-interval)",
               lambda r: (round(float(r.meta.interval), 12), int(r.meta.n_thresholds))),
              # agnostic_loc (the top-1 class's map) and gt_known_loc (the label's) are
              # different measures: pairing them would read as one method beating another
              ("scored map (class-agnostic top-1 or the label's)",
               lambda r: "top-1 map" if r.meta.agnostic else "label's map"))
    for other in reports[1:]:
        for what, get in checks:
            if get(first) != get(other):
                raise AcolError(f"cannot compare {first.path} and {other.path}: the {what} "
                                f"differs ({get(first)} vs {get(other)})")
        same_source = ((first.meta.annotations, first.meta.split)
                       == (other.meta.annotations, other.meta.split))
        differ = (f"cannot compare {first.path} and {other.path}: the annotations differ "
                  f"({first.meta.annotations} vs {other.meta.annotations}, annotations_digest "
                  f"{first.meta.annotations_digest[:12]} vs {other.meta.annotations_digest[:12]})")
        digests_equal = first.meta.annotations_digest == other.meta.annotations_digest
        if not digests_equal and not same_source:
            raise AcolError(differ)
        _check_coverage(first, other)
        if not digests_equal:
            raise AcolError(differ + "; the same images have other labels or boxes")


def _check_coverage(first: Report, other: Report) -> None:
    """One line naming both coverages when two reports scored other images, or the same
    images of annotated splits of other sizes."""
    mine, theirs = set(first.images), set(other.images)
    known = first.meta.annotated and other.meta.annotated
    if mine == theirs and not (known and first.meta.annotated != other.meta.annotated):
        return
    only_first, only_second = len(mine - theirs), len(theirs - mine)
    detail = (f"{only_first} image{'s' if only_first != 1 else ''} only in the first, "
              f"{only_second} only in the second" if mine != theirs
              else "annotated splits of other sizes")
    raise AcolError(f"cannot compare {first.path} ({coverage(first)}) and {other.path} "
                    f"({coverage(other)}): they cover different images ({detail}); score "
                    f"every method on the same images (the same --image-list file, or the "
                    f"whole split)")


def common_images(reports: list[Report]) -> pd.Index:
    """Images every report scored, in the first report's order."""
    for report in reports:
        if pd.Index(report.images).has_duplicates:
            raise AcolError(f"{report.path / 'per_image.csv'} lists an image twice")
    common = pd.Index(reports[0].images)
    for report in reports[1:]:
        common = common[common.isin(report.images)]
    if not len(common):
        raise AcolError("the reports have no image in common: " + ", ".join(
            f"{r.path} ({len(r.images)} images)" for r in reports))
    return common


# --------------------------------------------------------------------------- tables


def metric_order(iou: list[int]) -> list[str]:
    return metricdefs.compare_order(iou)


def _mean(values: list[dict[str, float]], metric: str) -> float:
    return float(np.mean([v.get(metric, np.nan) for v in values]))


def _optimism(samples: np.ndarray | None, value: float) -> float:
    """The bootstrap's estimate of how much picking the best threshold on the test images
    inflates a value: mean resampled value (each resample re-picks) minus the value.
    Percentile intervals of such a value sit high by about this much."""
    if samples is None or np.isnan(samples).all():
        return float("nan")
    return float(np.nanmean(samples) - value)


def leaderboard_table(names: list[str], groups: list[list[str]],
                      observed: list[list[dict[str, float]]],
                      samples: list[dict[str, np.ndarray]], images: int,
                      order: list[str]) -> pd.DataFrame:
    """One row per method: every metric on the common images (a group: mean over its
    seeds, with the standard deviation over seeds, ddof 1), with its 95% percentile
    interval; for the oracle-threshold metrics (max_box_acc*) also the optimism of the
    oracle threshold as the bootstrap estimates it."""
    present = [m for m in order if any(m in v for each in observed for v in each)]
    rows = []
    for name, paths, each, found in zip(names, groups, observed, samples):
        row = {"method": name, "reports": ";".join(paths), "seeds": len(paths),
               "images": images}
        for metric in present:
            low, high = interval(found[metric]) if metric in found else (np.nan, np.nan)
            values = [v.get(metric, np.nan) for v in each]
            row[metric] = _mean(each, metric)
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = low, high
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
            if metric.startswith(("max_box_acc", "best_")):  # oracle thresholds
                row[f"{metric}_optimism"] = _optimism(found.get(metric), row[metric])
        rows.append(row)
    return pd.DataFrame(rows)


def pairs_table(names: list[str], reference: int, methods: list[list[Resampleable]],
                observed: list[list[dict[str, float]]], samples: list[dict[str, np.ndarray]],
                images: int, order: list[str]) -> pd.DataFrame:
    """One row per method against the reference: each metric's difference (method minus
    reference) with its 95% paired bootstrap interval; the exact McNemar test of GT-known
    correctness at each report's own max_box_acc threshold (single reports only: a seed
    group has no one per-image outcome)."""
    rows = []
    for i, name in enumerate(names):
        if i == reference:
            continue
        row = {"reference": names[reference], "method": name, "images": images}
        for metric in order:
            mine, theirs = _mean(observed[i], metric), _mean(observed[reference], metric)
            if np.isnan(mine) or np.isnan(theirs):
                continue
            row[f"{metric}_diff"] = mine - theirs
            low = high = np.nan
            if metric in samples[i] and metric in samples[reference]:
                low, high = interval(samples[i][metric] - samples[reference][metric])
            row[f"{metric}_diff_ci_low"], row[f"{metric}_diff_ci_high"] = low, high
        tests = (np.nan, np.nan, np.nan)
        if len(methods[i]) == 1 and len(methods[reference]) == 1:
            tests = mcnemar_exact(methods[reference][0].mcnemar, methods[i][0].mcnemar)
            row.update(binary_tests(methods[reference][0], methods[i][0]))
        row["mcnemar_reference_only"], row["mcnemar_method_only"], row["mcnemar_p"] = tests
        rows.append(row)
    tests = ["mcnemar_reference_only", "mcnemar_method_only", "mcnemar_p"]
    columns = ["reference", "method", "images", *dict.fromkeys(
        c for row in rows for c in row if c.endswith(("_diff", "_ci_low", "_ci_high"))), *tests,
        *dict.fromkeys(c for row in rows for c in row if c.endswith(MCNEMAR_SUFFIXES))]
    return pd.DataFrame(rows, columns=columns)


MCNEMAR_SUFFIXES = ("_mcnemar_reference_only", "_mcnemar_method_only", "_mcnemar_p")


def binary_tests(reference: Resampleable, method: Resampleable) -> dict[str, float]:
    """The exact McNemar test of every hit-or-miss per-image metric (metricdefs.binary)
    both reports have, on the images where both know it: METRIC_mcnemar_* columns."""
    found: dict[str, float] = {}
    for name in metricdefs.binary_names():
        if name in reference.values and name in method.values:
            a, b = reference.values[name], method.values[name]
            known = (reference.columns[:, a + 1] > 0) & (method.columns[:, b + 1] > 0)
            tests = mcnemar_exact(reference.columns[known, a] > 0.5,
                                  method.columns[known, b] > 0.5)
            found.update({f"{name}{suffix}": v for suffix, v in zip(MCNEMAR_SUFFIXES, tests)})
    return found


def agnostic_names(table: pd.DataFrame) -> pd.DataFrame:
    """The columns of reports that scored the top-1 class's map, named as score names
    them: agnostic_loc..., best_agnostic_loc..., not gt_known_loc... (check_comparable
    keeps kinds apart)."""
    renamed = [m for m in metricdefs.metrics() if m.agnostic_name]

    def name(column: str) -> str:
        for metric in renamed:
            if column.startswith(metric.name):
                return metric.agnostic_name + column[len(metric.name):]
        return column

    return table.rename(columns=name)


# --------------------------------------------------------------------------- the job


def reference_index(groups: list[tuple[str, ...]], reference: str | None
                    ) -> tuple[list[tuple[str, ...]], int]:
    """The reference method's index: the first by default, else the entry given or
    the entry holding the report given; a reference not among REPORT is added first."""
    if reference is None:
        return groups, 0
    wanted = tuple(p.strip() for p in reference.split(","))
    resolved = [Path(p).resolve() for p in wanted]
    for index, paths in enumerate(groups):
        if paths == wanted or (len(resolved) == 1
                               and resolved[0] in [Path(p).resolve() for p in paths]):
            return groups, index
    return [wanted, *groups], 0


def _refuse_overwrite(out: Path, overwrite: bool) -> None:
    safeio.refuse_existing(out, OUTPUT_FILES, overwrite, lambda found: (
        f"{out} already holds {', '.join(found)}; pass --overwrite to replace them or "
        f"choose another --out"), label=f"--out {out}")


def threshold_source(report: Report, metric: str) -> str:
    """Where `metric`'s CAM threshold came from: summary.csv's threshold_source, else
    (older reports) 'fixed' for the fixed-threshold rows and report.json's source
    ('oracle', 'from:PATH') for the others."""
    metric = fixed_name(report, metric)
    given = (report.summary["threshold_source"].get(metric, "")
             if "threshold_source" in report.summary else "")
    if isinstance(given, str) and given:
        return given
    taken = str(report.meta.threshold_source)
    if metric in metricdefs.fixed_names() and not taken.startswith("from"):
        return "fixed"
    return taken


def with_thresholds(leaderboard: pd.DataFrame, reports: list[list[Report]]) -> pd.DataFrame:
    """The leaderboard with where each row's CAM thresholds came from: `threshold` and
    `threshold_source` of the fixed-threshold metrics (gt_known_loc, top1_loc; empty
    threshold for a seed group whose seeds differ), `best_threshold_source` of the
    MaxBoxAcc ones ('oracle': re-picked on every resample, or taken from a report)."""
    board = leaderboard.copy()
    fixed, sources, best = [], [], []
    for members in reports:
        values = {float(r.summary["threshold"].get(fixed_name(r, "gt_known_loc"), np.nan))
                  for r in members}
        fixed.append(values.pop() if len(values) == 1 else np.nan)
        sources.append(";".join(dict.fromkeys(threshold_source(r, "gt_known_loc")
                                              for r in members)))
        best.append(";".join(dict.fromkeys(threshold_source(r, "max_box_acc")
                                           for r in members)))
    board["threshold"], board["threshold_source"] = fixed, sources
    board["best_threshold_source"] = best
    return board


def with_coverage(leaderboard: pd.DataFrame, report: Report) -> pd.DataFrame:
    """The leaderboard with `annotated` (M, empty when the reports do not record it) and
    `coverage` ('N of M annotated images') after `images`: every report has the same
    (check_comparable), so one report says it for all."""
    at = list(leaderboard.columns).index("images") + 1
    board = leaderboard.copy()
    board.insert(at, "annotated", report.meta.annotated or np.nan)
    board.insert(at + 1, "coverage", coverage(report))
    return board


def _write_html(out: Path, reports: list[list[Report]], names: list[str],
                leaderboard: pd.DataFrame, pairs: pd.DataFrame) -> None:
    """report.html beside the tables: the pivot of methods and headline metrics, what
    each column means, every method's curves on one plot, the images where the methods
    disagree most, the tables as written."""
    from acol_eval.report.comparepage import write_compare_html

    # one report folder per leaderboard row: a seed group's page shows its first seed
    write_compare_html(out, [members[0].source or members[0].path for members in reports],
                       leaderboard, pairs, names)


def run(config: CompareConfig, log: Callable[[str], None] = _stderr) -> CompareResult:
    """Read the reports, check them, resample, write leaderboard.csv, pairs.csv and
    report.html. Reports that cannot be compared are refused before --out is touched."""
    started = time.monotonic()
    groups, reference = reference_index(config.groups, config.reference)
    names, out = method_names(groups), Path(config.out)
    _refuse_overwrite(out, config.overwrite)
    reports = [[read_report(p) for p in paths] for paths in groups]
    every = [r for members in reports for r in members]
    check_comparable(every)
    common = common_images(every)  # every report's images, in the first's order
    sizes = {str(r.path): len(r.images) for r in every}
    with FolderLock(out, "compare"):
        _refuse_overwrite(out, config.overwrite)  # again: another run may have written
        methods = [[prepare(r, common) for r in members] for members in reports]
        observed = [observed_values(members, len(common)) for members in methods]
        progress = Progress(config.bootstrap, "bootstrap", "rounds", log)
        try:
            samples = bootstrap(methods, len(common), config.bootstrap, config.seed,
                                progress) if config.bootstrap else [{} for _ in methods]
        finally:
            progress.close()
        order = metricdefs.compare_order(every[0].meta.iou, opt_in=True)
        leaderboard = leaderboard_table(names, [list(g) for g in groups], observed, samples,
                                        len(common), order)
        leaderboard = with_thresholds(with_coverage(leaderboard, every[0]), reports)
        pairs = pairs_table(names, reference, methods, observed, samples, len(common), order)
        if every[0].meta.agnostic:
            leaderboard, pairs = agnostic_names(leaderboard), agnostic_names(pairs)
        for name, table in (("leaderboard.csv", leaderboard), ("pairs.csv", pairs)):
            atomic_write_text(out / name, frame_to_csv(table, index=False, float_format="%.6g"))
        _write_html(out, reports, names, leaderboard, pairs)
    return CompareResult(leaderboard=leaderboard, pairs=pairs, reference=names[reference],
                         common=len(common), images=sizes, rounds=config.bootstrap,
                         seconds=time.monotonic() - started, out=out,
                         coverage=coverage(every[0]), partial=every[0].meta.partial)


# --------------------------------------------------------------------------- terminal


def _cell(value: float, low: float = np.nan, high: float = np.nan, sign: bool = False) -> str:
    if pd.isna(value):
        return ""
    text = f"{value:+.2f}" if sign else f"{value:.2f}"
    return text + ("" if pd.isna(low) else f" [{low:.2f}, {high:.2f}]")


def _columns(header: str, names: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    width = max([len(header)] + [len(r[0]) for r in rows]) + 2
    cells = [max([len(n)] + [len(r[1][i]) for r in rows]) + 2 for i, n in enumerate(names)]
    lines = [header.ljust(width) + "".join(n.rjust(w) for n, w in zip(names, cells))]
    lines += [label.ljust(width) + "".join(c.rjust(w) for c, w in zip(values, cells))
              for label, values in rows]
    return lines


def result_text(result: CompareResult) -> str:
    """The leaderboard and the pairs, metrics down and methods across, as printed."""
    board, pairs = result.leaderboard, result.pairs
    metrics = [c for c in board.columns if f"{c}_ci_low" in board.columns]
    rows = []
    for metric in metrics:
        rows.append((metric, [_cell(r[metric], r[f"{metric}_ci_low"], r[f"{metric}_ci_high"])
                              + ("" if pd.isna(r[f"{metric}_std"])
                                 else f" sd {r[f'{metric}_std']:.2f}")
                              for _, r in board.iterrows()]))
    optimism = board.get("max_box_acc_v2_optimism")
    if optimism is not None and optimism.notna().any():  # why an oracle value may sit low
        rows.append(("max_box_acc_v2 optimism", [_cell(v, sign=True) for v in optimism]))
    scope = result.coverage or f"{result.common} images"
    if result.partial:
        scope += " (partial: not the whole split)"
    lines = [f"{scope}, " + (f"{result.rounds} bootstrap rounds, 95% intervals"
                             if result.rounds else "no bootstrap")]
    lines += _columns("leaderboard", board["method"].tolist(), rows)
    if len(pairs):
        rows = [(f"{m} diff", [_cell(r[f"{m}_diff"], r[f"{m}_diff_ci_low"],
                                     r[f"{m}_diff_ci_high"], sign=True)
                               for _, r in pairs.iterrows()])
                for m in metrics if f"{m}_diff" in pairs.columns]
        rows.append(("mcnemar ref/method/p", [
            "" if pd.isna(r["mcnemar_p"]) else
            f"{int(r['mcnemar_reference_only'])}/{int(r['mcnemar_method_only'])}/"
            f"{r['mcnemar_p']:.3g}" for _, r in pairs.iterrows()]))
        for name in [c[:-len("_mcnemar_p")] for c in pairs if c.endswith("_mcnemar_p")]:
            rows.append((f"{name} mcnemar", ["" if pd.isna(r[f"{name}_mcnemar_p"]) else
                                             f"{int(r[f'{name}_mcnemar_reference_only'])}/"
                                             f"{int(r[f'{name}_mcnemar_method_only'])}/"
                                             f"{r[f'{name}_mcnemar_p']:.3g}"
                                             for _, r in pairs.iterrows()]))
        lines += ["", *_columns(f"against {result.reference}", pairs["method"].tolist(), rows)]
    return "\n".join(lines)
