"""Shared by demo.py and cub10_table.py: run acol-eval commands as a user would, time them,
and print the headline table (one row per model, the centre baseline beside them)."""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Top-1 and GT-known Loc at the CAM threshold best for GT-known (the oracle, as in
# MaxBoxAcc); the fixed-threshold values are in each report's summary.csv.
HEADLINE = [
    ("cls_top1", "Top-1 cls"),
    ("best_top1_loc", "Top-1 Loc*"),
    ("best_gt_known_loc", "GT-known Loc*"),
    ("max_box_acc", "MaxBoxAcc"),
    ("max_box_acc_v2", "MaxBoxAccV2"),
]
FOOTNOTE = ("* at the CAM threshold best for GT-known Loc (IoU 50); the values at the fixed "
            "--threshold are in summary.csv (top1_loc, gt_known_loc)")


def acol(*args: str, quiet: bool = False) -> float:
    """Run `acol-eval ARGS` (offline), echo the command, return its wall time in seconds."""
    shown = "acol-eval " + " ".join(shlex.quote(a) for a in args)
    print(f"$ {shown}", flush=True)
    env = {**os.environ, "ACOL_EVAL_OFFLINE": "1"}
    began = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], env=env,
                            stdout=subprocess.DEVNULL if quiet else None)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {shown}")
    return seconds


def summary(report: Path) -> dict[str, float]:
    with open(report / "summary.csv", newline="") as handle:
        return {row["metric"]: float(row["value"]) for row in csv.DictReader(handle)
                if row["value"] not in ("", "nan")}


def headline(rows: list[tuple[str, Path, float | None]]) -> str:
    """A Markdown table: name, the headline metrics of its report, minutes taken."""
    header = "| model | " + " | ".join(title for _, title in HEADLINE) + " | time |"
    lines = [header, "|" + " --- |" * (len(HEADLINE) + 2)]
    for name, report, seconds in rows:
        values = summary(report)
        cells = [f"{values[m]:.1f}" if m in values else "-" for m, _ in HEADLINE]
        took = f"{seconds / 60:.1f} min" if seconds is not None else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {took} |")
    return "\n".join([*lines, "", FOOTNOTE])
