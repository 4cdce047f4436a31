"""Worked comparison on CUB-200-2011 species 001-010 (../shared/data/cub10): ACoL `pn`, plain
CAM `p`, Grad-CAM and Layer-CAM on the `pn` model, and the centre baseline, under one protocol,
with `acol-eval compare`'s paired statistics.

    nice -n 10 .venv/bin/python benchmarks/compare_cub10.py --out cub10-compare

Trains `pn` and `p` (MobileNetV2 from the ImageNet weights, --feature-stride 16, linear
heads, input 224, --lr 0.002) on the official train split, holding out --val-fraction of it
for best.pt and the calibrated CAM threshold, so the 243 test images are seen by nothing but
the final localize and score. Localises the test split with each model's own maps
(`--method model`) and with two post-hoc methods on the `pn` model, scores every run with
the wsoleval protocol (--bootstrap 1000), scores the centre Gaussian baseline on `p`'s run
(its classes are `p`'s), and compares them all against CAM `p`.

Why CAM `p` is the reference: the question every other row asks is "better than plain CAM
on these images?" (ACoL's claim; the post-hoc methods' promise), and the centre baseline
is itself a row, so its pair against `p` says whether the trained model beats the prior.

Resumable: a step whose OUT/steps/<step>.json exists is skipped (that file holds the step's
wall time, so the throughput table survives a restart); an interrupted train continues
with --resume, an interrupted localize by rerunning it. Prints the steps' times, the
localize throughput of each method relative to `model` on the same model (seconds per
step, same run), and the leaderboard and pairs tables as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd
from pipeline import acol

REFERENCE = "cam-p"
# (report folder name = the name compare shows, recipe, localize --method)
MODELS = [("cam-p", "p", "model"), ("acol-pn", "pn", "model")]
METRICS = ["cls_top1", "top1_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2",
           "max_box_acc_v2@30", "max_box_acc_v2@50", "max_box_acc_v2@70"]


class Steps:
    """Runs `acol-eval` steps once: each finished step leaves OUT/steps/NAME.json with its
    wall time, and is skipped (time read back) when the script runs again."""

    def __init__(self, out: Path) -> None:
        self.folder = out / "steps"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.seconds: dict[str, float] = {}

    def run(self, name: str, *args: str, quiet: bool = False) -> float:
        done = self.folder / f"{name}.json"
        if done.is_file():
            self.seconds[name] = json.loads(done.read_text())["seconds"]
            print(f"skip {name}: done before ({self.seconds[name]:.0f} s)", flush=True)
            return self.seconds[name]
        seconds = acol(*args, quiet=quiet)
        temporary = done.with_suffix(".tmp")  # written whole, then renamed: never half a file
        temporary.write_text(json.dumps({"seconds": seconds, "args": list(args)}))
        temporary.replace(done)
        self.seconds[name] = seconds
        return seconds


def train(steps: Steps, args: argparse.Namespace, recipe: str, folder: Path) -> Path:
    resume = ["--resume"] if (folder / "last.pt").is_file() else []
    steps.run(f"train-{recipe}", "train", "--data", f"cub:{args.data}", "--out", str(folder),
              "--arch", "mobilenet_v2", "--weights", "imagenet", "--recipe", recipe,
              "--head", "linear", "--feature-stride", "16", "--input-size", "224",
              "--epochs", str(args.epochs), "--lr", args.lr,
              "--val-fraction", args.val_fraction, "--seed", str(args.seed), *resume)
    return folder / "best.pt"


def localize_and_score(steps: Steps, args: argparse.Namespace, name: str, checkpoint: Path,
                       method: str, out: Path) -> Path:
    annotations = f"cub:{args.data}"
    run, report = out / "runs" / name, out / "reports" / name
    steps.run(f"localize-{name}", "localize", annotations, "--split", "test",
              "--out", str(run), "--checkpoint", str(checkpoint), "--method", method,
              "--batch-size", str(args.batch_size))
    steps.run(f"score-{name}", "score", str(run), "--annotations", annotations,
              "--split", "test", "--protocol", "wsoleval", "--bootstrap", str(args.bootstrap),
              "--out", str(report), quiet=True)
    return run


def markdown(table: pd.DataFrame, first: str, rows: list[tuple[str, list[str]]]) -> str:
    """Methods down, the given cells across."""
    header = [first, *[title for title, _ in rows]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for i, name in enumerate(table["method"]):
        lines.append(f"| {name} | " + " | ".join(cells[i] for _, cells in rows) + " |")
    return "\n".join(lines)


def _interval(value: float, low: float, high: float, sign: bool = False) -> str:
    if pd.isna(value):
        return "-"
    text = f"{value:+.1f}" if sign else f"{value:.1f}"
    return text if pd.isna(low) else f"{text} [{low:+.1f}, {high:+.1f}]" if sign \
        else f"{text} [{low:.1f}, {high:.1f}]"


def leaderboard_markdown(board: pd.DataFrame) -> str:
    present = [m for m in METRICS if m in board.columns]
    return markdown(board, "method", [
        (m, [_interval(r[m], r[f"{m}_ci_low"], r[f"{m}_ci_high"]) for _, r in board.iterrows()])
        for m in present])


def pairs_markdown(pairs: pd.DataFrame) -> str:
    present = [m for m in METRICS if f"{m}_diff" in pairs.columns]
    rows = [(f"{m} diff", [_interval(r[f"{m}_diff"], r[f"{m}_diff_ci_low"],
                                     r[f"{m}_diff_ci_high"], sign=True)
                           for _, r in pairs.iterrows()]) for m in present]
    rows.append(("McNemar ref-only / method-only / p", [
        "-" if pd.isna(r["mcnemar_p"]) else
        f"{int(r['mcnemar_reference_only'])} / {int(r['mcnemar_method_only'])} / "
        f"{r['mcnemar_p']:.3g}" for _, r in pairs.iterrows()]))
    reference = pairs["reference"].iloc[0] if len(pairs) else REFERENCE
    return markdown(pairs, f"method - {reference}", rows)


def throughput_markdown(steps: Steps, names: list[str]) -> str:
    """Localize wall time of each method on the pn model against `model`'s, same run."""
    base = steps.seconds["localize-acol-pn"]
    lines = ["| method (on `pn`) | localize s | vs `model` |", "| --- | --- | --- |"]
    for name, method in names:
        seconds = steps.seconds[f"localize-{name}"]
        lines.append(f"| {method} | {seconds:.0f} | {base / seconds:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cub10")
    parser.add_argument("--out", default="cub10-compare")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", default="0.002")
    parser.add_argument("--val-fraction", default="0.2")
    parser.add_argument("--posthoc", default="gradcam,layercam",
                        help="post-hoc --method names run on the pn model")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    steps = Steps(out)
    annotations = f"cub:{args.data}"
    checkpoints = {}
    for name, recipe, method in MODELS:
        checkpoints[recipe] = train(steps, args, recipe, out / "train" / recipe)
        localize_and_score(steps, args, name, checkpoints[recipe], method, out)
    posthoc = [(f"{m.replace('+', 'pp')}-pn", m) for m in args.posthoc.split(",") if m]
    for name, method in posthoc:
        localize_and_score(steps, args, name, checkpoints["pn"], method, out)
    steps.run("score-centre", "score", str(out / "runs" / REFERENCE), "--annotations",
              annotations, "--split", "test", "--protocol", "wsoleval", "--baseline", "centre",
              "--bootstrap", str(args.bootstrap), "--out", str(out / "reports" / "centre"),
              quiet=True)
    reports = [str(out / "reports" / n)
               for n in [REFERENCE, "acol-pn", *[n for n, _ in posthoc], "centre"]]
    # compare is fast and its tables are the point: rerun it every time (--overwrite)
    steps.seconds["compare"] = acol("compare", *reports, "--reference", reports[0],
                                    "--out", str(out / "compare"), "--bootstrap",
                                    str(args.bootstrap), "--overwrite")
    board = pd.read_csv(out / "compare" / "leaderboard.csv")
    pairs = pd.read_csv(out / "compare" / "pairs.csv")
    print(f"\nCUB-200-2011 species 001-010, test split ({int(board['images'].iloc[0])} images), "
          f"MobileNetV2 (ImageNet), stride 16, linear heads, {args.epochs} epochs, lr {args.lr}, "
          f"best.pt and CAM threshold on {args.val_fraction} of train; wsoleval protocol, "
          f"percent, 95% bootstrap intervals ({args.bootstrap} rounds) over images:\n")
    print(leaderboard_markdown(board))
    print(f"\nEach method minus `{REFERENCE}` (paired bootstrap, every resample re-picks each "
          "method's best threshold); exact McNemar test on GT-known correctness at each "
          "report's own max_box_acc threshold:\n")
    print(pairs_markdown(pairs))
    print("\nLocalize wall time on the 243 test images (one process each, same run):\n")
    print(throughput_markdown(steps, [("acol-pn", "model"), *posthoc]))
    print("\nStep wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in steps.seconds.items())
          + f"; 1-min load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
