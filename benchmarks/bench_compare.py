"""`acol-eval compare` time on ILSVRC-sized reports (it should take seconds, not minutes).

Writes two or three score report folders of 50,000 images (the real ILSVRC test image
names and labels from ../shared/data/wsol-metadata when present, else made-up names),
each with a 1000-threshold grid and IoU 30/50/70: report.json, outcomes.npz (packed
bits, as score writes them), summary.csv and per_image.csv. The outcomes are synthetic
but shaped like real ones: each image is correct over one run of CAM thresholds (too
loose below it, too tight above), runs shorter at stricter IoU, methods told apart by
their run lengths. Then times the whole `acol-eval compare` command in a fresh process
(imports, reading, checks, the paired bootstrap with 1000 rounds re-picking every
method's thresholds in every round, both tables written) and prints the seconds and
its peak memory.

    .venv/bin/python benchmarks/bench_compare.py
    .venv/bin/python benchmarks/bench_compare.py --images 50000 --methods 3 --rounds 1000

`--dense` also times the straightforward way for one report and 16 rounds (a dense
(rounds x images) @ (images x thresholds) product per curve) and extrapolates it to
all rounds and reports, for the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acol_eval.comparison.stats import resample_weights  # noqa: E402
from acol_eval.maps.reportfolder import Outcomes, ReportMeta  # noqa: E402

IOU = (30, 50, 70)
# the CLI in a fresh process that prints its own peak memory on the way out: VmHWM of
# /proc (Linux), because getrusage's maxrss keeps the benchmark's own peak across exec
MEASURED = """import re, sys
from pathlib import Path
sys.argv[0] = "acol-eval"
import cli
try:
    cli.main()
finally:
    status = Path("/proc/self/status")
    peak = re.search(r"VmHWM:\\s+(\\d+)", status.read_text()) if status.exists() else None
    print("peak_kb", peak.group(1) if peak else "nan", file=sys.stderr)
"""


def ilsvrc_images(count: int) -> tuple[list[str], list[str]]:
    """The first `count` ILSVRC test images and labels of the real metadata, if there."""
    folder = Path(os.environ.get("ACOL_EVAL_SHARED_DATA", ROOT.parent / "shared" / "data"))
    meta = folder / "wsol-metadata" / "ILSVRC" / "test"
    if (meta / "class_labels.txt").is_file():
        rows = (meta / "class_labels.txt").read_text().splitlines()[:count]
        if len(rows) == count:
            names, labels = zip(*(r.rsplit(",", 1) for r in rows))
            return list(names), list(labels)
    return [f"val/ILSVRC2012_val_{i:08d}.JPEG" for i in range(count)], ["0"] * count


def runs(rng, images: int, thresholds: int, length: float) -> np.ndarray:
    """(images, thresholds) bool: correct over one run of thresholds per image."""
    start = np.clip(rng.normal(0.25, 0.1, images) * thresholds, 0, thresholds - 1).astype(int)
    size = rng.binomial(thresholds // 2, length, images)
    grid = np.arange(thresholds)
    return (grid[None] >= start[:, None]) & (grid[None] < (start + size)[:, None])


def write_report(folder: Path, names, labels, rng, length: float, thresholds: int) -> None:
    """One report folder as score writes it; summary.csv from the same outcomes."""
    folder.mkdir(parents=True)
    n, grid = len(names), np.arange(0, 1, 1 / thresholds)
    v1 = runs(rng, n, thresholds, length)
    v2 = np.stack([runs(rng, n, thresholds, min(length * f, 1)) for f in (1.4, 1.0, 0.5)])
    top1 = (rng.random(n) < 0.75).astype(np.int8)
    best, fixed = int(np.argmax(v1.sum(0))), int(round(0.2 * thresholds))
    rows = [("cls_top1", 100 * top1.mean(), np.nan),
            ("gt_known_loc", 100 * v1[:, fixed].mean(), grid[fixed]),
            ("top1_loc", 100 * (v1[:, fixed] & (top1 == 1)).mean(), grid[fixed]),
            ("max_box_acc", 100 * v1[:, best].mean(), grid[best])]
    for j, k in enumerate(IOU):
        at = int(np.argmax(v2[j].sum(0)))
        rows.append((f"max_box_acc_v2@{k}", 100 * v2[j][:, at].mean(), grid[at]))
    rows.append(("max_box_acc_v2", np.mean([r[1] for r in rows[-3:]]), np.nan))
    pd.DataFrame(rows, columns=["metric", "value", "threshold"]).to_csv(
        folder / "summary.csv", index=False)
    pd.DataFrame({"image": names, "label": labels, "correct": v1[:, best].astype(int),
                  "top1_correct": top1}).to_csv(folder / "per_image.csv", index=False)
    ReportMeta(protocol="wsoleval", annotations="wsol:ILSVRC/test", annotations_digest="0" * 64,
               run=str(folder), interval=1 / thresholds, n_thresholds=thresholds,
               images=n).write(folder)
    Outcomes(images=np.asarray(names), thresholds=grid, iou=np.asarray(IOU), v2=v2, v1=v1,
             top1=top1, top5=top1, has_gt=np.ones(n, bool)).write(folder)


def dense_seconds(report: Path, rounds: int, methods: int, sample: int = 16) -> float:
    """The straightforward bootstrap's time, extrapolated from `sample` rounds of one
    report: per curve, resample weights (rounds x images) @ bits (images x thresholds)."""
    outcomes = Outcomes.read(report)
    curves = [outcomes.v1.astype(np.float32)] + [v.astype(np.float32) for v in outcomes.v2]
    weights = resample_weights(np.random.default_rng(0), len(outcomes.images), sample).T
    started = time.perf_counter()
    for bits in curves:
        (weights @ bits).max(axis=1)
    return (time.perf_counter() - started) * rounds / sample * methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--thresholds", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--methods", default="2,3", help="report counts to time, e.g. 2,3")
    parser.add_argument("--dense", action="store_true", help="also extrapolate the dense way")
    args = parser.parse_args()
    names, labels = ilsvrc_images(args.images)
    counts = [int(c) for c in args.methods.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        reports = [Path(tmp) / f"method{m}" for m in range(max(counts))]
        for m, folder in enumerate(reports):
            write_report(folder, names, labels, rng, 0.3 + 0.05 * m, args.thresholds)
        size = sum(f.stat().st_size for f in reports[0].iterdir()) / 1e6
        print(f"wrote {len(reports)} reports of {args.images} images x {args.thresholds} "
              f"thresholds ({size:.1f} MB each) in {time.perf_counter() - started:.1f} s")
        for count in counts:
            out = Path(tmp) / f"cmp{count}"
            command = [sys.executable, "-c", MEASURED, "compare",
                       *(str(r) for r in reports[:count]), "--out", str(out),
                       "--bootstrap", str(args.rounds)]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - started
            if done.returncode:
                sys.exit(f"compare failed: {done.stderr}")
            peak = float(done.stderr.rsplit("peak_kb ", 1)[1].split()[0]) / 1024
            pairs = pd.read_csv(out / "pairs.csv").iloc[0]
            print(f"acol-eval compare of {count} reports x {args.images} images, "
                  f"{args.rounds} rounds: {seconds:.1f} s (whole command), peak memory "
                  f"{peak:.0f} MB")
            print(f"  max_box_acc_v2 difference {pairs['max_box_acc_v2_diff']:+.2f} "
                  f"[{pairs['max_box_acc_v2_diff_ci_low']:+.2f}, "
                  f"{pairs['max_box_acc_v2_diff_ci_high']:+.2f}]")
            if args.dense:
                dense = dense_seconds(reports[0], args.rounds, count)
                print(f"  the dense way, extrapolated: {dense:.0f} s ({dense / seconds:.0f}x)")
    print(f"({os.cpu_count()} cores; other load on the machine adds noise: rerun to check)")


if __name__ == "__main__":
    main()
