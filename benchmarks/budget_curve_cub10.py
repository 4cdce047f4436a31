"""The supervision-budget curve on cub10: what a few boxes per class buy over WSOL.

    nice -n 10 .venv/bin/python benchmarks/budget_curve_cub10.py --out cub10-budget

On $ACOL_EVAL_SHARED_DATA/cub10 (CUB-200-2011 species 001-010), with 20% of the train split
held out as the validation split (--val-fraction 0.2: 6 images per class), every method
is trained with the tool's own presets, localises the 243 test images, and is scored with
the wsoleval protocol against boxes per class K:

- K = 0: ACoL (`--preset wsol-cub`), plain CAM (the same with `--recipe p`), DDT
  (`--preset ddt-cub`, training-free maps, linear classifier probe), and the centre
  Gaussian (`score --baseline centre` on the ACoL run, so its classes are ACoL's);
- K = 1, 2, 5 and all: FSL (`--preset wsol-cub-fsl --boxes-per-class K`), its box
  images drawn from the validation split; the rest of validation chooses best.pt and
  the CAM threshold (with K = all none is left: best.pt follows training accuracy and
  localize boxes at the default 0.2, which only the fixed-threshold rows feel).

Three seeds each; seed 0 first over every K, then seed 1, then seed 2, so a run cut short
still has a whole curve. `acol-eval compare` then pairs every method's seed group with
the centre's (paired bootstrap intervals of the differences), and the script writes
OUT/budget_curve.png (MaxBoxAccV2 and Top-1 Loc against K) and prints the Markdown
table. Each method enters the comparison with the seeds it has finished (its row says
how many), so a curve cut short still shows every seed it has.

Resumable: a step whose OUT/steps/<step>.json exists is skipped; an interrupted train
continues with --resume, an interrupted localize by rerunning it. --reuse-acol and
--reuse-cam take checkpoints of runs trained elsewhere with the same presets and seeds
(a path with {seed}, e.g. other/train/acol-s{seed}/best.pt), so they are not trained twice.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

import pandas as pd
from compare_cub10 import Steps, _interval
from pipeline import acol

# (method, train flags); FSL's come per K
ZERO_BOX = [("acol", ["--preset", "wsol-cub"]),
            ("cam", ["--preset", "wsol-cub", "--recipe", "p"]),
            ("ddt", ["--preset", "ddt-cub"])]
CENTRE = "centre"
CENTRE_RUN = "acol"  # the run whose images and classes the centre map is scored on
METRICS = [("max_box_acc_v2", "MaxBoxAccV2"), ("top1_loc", "Top-1 Loc")]


def fsl_name(k: str) -> str:
    return f"fsl-k{k}"


def plan(ks: list[str]) -> list[tuple[str, list[str], str]]:
    """(method, train flags, K as the table shows it) of every trained method."""
    methods = [(name, flags, "0") for name, flags in ZERO_BOX]
    return methods + [(fsl_name(k), ["--preset", "wsol-cub-fsl", "--boxes-per-class", k], k)
                      for k in ks]


def trained(steps: Steps, args: argparse.Namespace, name: str, flags: list[str],
            seed: int) -> Path:
    """The best.pt of `name` at `seed`: a --reuse-* checkpoint, or trained here."""
    reuse = getattr(args, f"reuse_{name}", None)
    if reuse:
        path = Path(reuse.format(seed=seed))
        if not path.is_file():
            raise SystemExit(f"--reuse-{name}: {path} does not exist")
        return path
    folder = Path(args.out) / "train" / f"{name}-s{seed}"
    resume = ["--resume"] if (folder / "last.pt").is_file() else []
    steps.run(f"train-{name}-s{seed}", "train", *flags, "--data", f"cub:{args.data}",
              "--out", str(folder), "--val-fraction", args.val_fraction,
              "--seed", str(seed), "--workers", str(args.workers),
              *shlex.split(args.train_flags), *resume)
    return folder / "best.pt"


def localize_and_score(steps: Steps, args: argparse.Namespace, name: str,
                       checkpoint: Path) -> None:
    out, annotations = Path(args.out), f"cub:{args.data}"
    run, report = out / "runs" / name, out / "reports" / name
    steps.run(f"localize-{name}", "localize", annotations, "--split", "test",
              "--out", str(run), "--checkpoint", str(checkpoint), "--batch-size",
              str(args.batch_size), "--workers", str(args.workers))
    steps.run(f"score-{name}", "score", str(run), "--annotations", annotations, "--split",
              "test", "--protocol", "wsoleval", "--bootstrap", str(args.bootstrap),
              "--out", str(report), quiet=True)


def run_seed(steps: Steps, args: argparse.Namespace, seed: int, ks: list[str]) -> None:
    out, annotations = Path(args.out), f"cub:{args.data}"
    for name, flags, _ in plan(ks):
        checkpoint = trained(steps, args, name, flags, seed)
        localize_and_score(steps, args, f"{name}-s{seed}", checkpoint)
    steps.run(f"score-{CENTRE}-s{seed}", "score", str(out / "runs" / f"{CENTRE_RUN}-s{seed}"),
              "--annotations", annotations, "--split", "test", "--protocol", "wsoleval",
              "--baseline", "centre", "--bootstrap", str(args.bootstrap),
              "--out", str(out / "reports" / f"{CENTRE}-s{seed}"), quiet=True)


def finished_seeds(out: Path, names: list[str], seeds: list[int]) -> dict[str, list[int]]:
    """Each method's seeds whose report is finished: a curve cut short keeps every seed a
    method has (its row says how many), instead of only the seeds every method has."""
    return {n: [s for s in seeds if (out / "reports" / f"{n}-s{s}" / "summary.csv").is_file()]
            for n in names}


def boxes_spent(out: Path, name: str, seeds: list[int]) -> str:
    """The total boxes each seed's run trained on (OUT/train/*/boxes.json)."""
    found = set()
    for seed in seeds:
        record = out / "train" / f"{name}-s{seed}" / "boxes.json"
        if record.is_file():
            found.add(json.loads(record.read_text())["boxes"])
    return "/".join(str(n) for n in sorted(found)) or "0"


def table(out: Path, ks: list[str], done: dict[str, list[int]]) -> tuple[pd.DataFrame, str]:
    """The rows of the curve (mean, sd and the difference to the centre for each metric)
    and their Markdown, from compare's leaderboard.csv and pairs.csv."""
    board = pd.read_csv(out / "compare" / "leaderboard.csv")
    pairs = pd.read_csv(out / "compare" / "pairs.csv")
    rows = []
    for name, k in [(CENTRE, "0"), *[(n, k) for n, _, k in plan(ks)]]:
        seeds = done.get(name, [])
        if not seeds:
            continue
        label = ",".join(f"{name}-s{s}" for s in seeds)
        mine = board[board["method"] == label].iloc[0]
        row = {"method": name, "k": k, "boxes": boxes_spent(out, name, seeds),
               "seeds": len(seeds)}
        paired = pairs[pairs["method"] == label]
        for metric, _ in METRICS:
            row[metric] = mine[metric]
            row[f"{metric}_std"] = mine.get(f"{metric}_std", float("nan"))
            for end in ("", "_ci_low", "_ci_high"):
                row[f"{metric}_diff{end}"] = (paired[f"{metric}_diff{end}"].iloc[0]
                                              if len(paired) else float("nan"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    header = ["method", "boxes per class", "boxes spent", "seeds",
              *[f"{title} (mean ± sd)" for _, title in METRICS],
              *[f"{title} - centre [95%]" for _, title in METRICS]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for _, r in frame.iterrows():
        cells = [r["method"], r["k"], r["boxes"], str(r["seeds"])]
        for metric, _ in METRICS:
            sd = "" if pd.isna(r[f"{metric}_std"]) else f" ± {r[f'{metric}_std']:.1f}"
            cells.append(f"{r[metric]:.1f}{sd}")
        for metric, _ in METRICS:
            cells.append("-" if r["method"] == CENTRE else _interval(
                r[f"{metric}_diff"], r[f"{metric}_diff_ci_low"], r[f"{metric}_diff_ci_high"],
                sign=True))
        lines.append("| " + " | ".join(cells) + " |")
    return frame, "\n".join(lines)


def plot(frame: pd.DataFrame, ks: list[str], path: Path) -> None:
    """MaxBoxAccV2 and Top-1 Loc against K: FSL's curve, the K = 0 methods as points at 0
    and as dashed levels across, error bars one standard deviation over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = {k: i for i, k in enumerate(["0", *ks])}
    figure, axes = plt.subplots(1, len(METRICS), figsize=(11, 4.2))
    for axis, (metric, title) in zip(axes, METRICS):
        fsl = frame[frame["method"].str.startswith("fsl-")]
        axis.errorbar([positions[k] for k in fsl["k"]], fsl[metric],
                      yerr=fsl[f"{metric}_std"].fillna(0), marker="o", capsize=3,
                      label="FSL (wsol-cub-fsl)", color="black")
        for (_, r), colour in zip(frame[frame["k"] == "0"].iterrows(),
                                  ["tab:grey", "tab:red", "tab:blue", "tab:green"]):
            axis.axhline(r[metric], color=colour, linestyle="--", linewidth=0.8)
            axis.errorbar([0], [r[metric]], yerr=[0 if pd.isna(r[f"{metric}_std"])
                                                  else r[f"{metric}_std"]],
                          marker="s", color=colour, capsize=3, label=r["method"])
        axis.set_xticks(list(positions.values()), list(positions))
        axis.set_xlabel("box-labelled validation images per class (K)")
        axis.set_ylabel(f"{title}, % (cub10 test)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = os.environ.get("ACOL_EVAL_SHARED_DATA", "../shared/data")
    parser.add_argument("--data", default=str(Path(shared) / "cub10"))
    parser.add_argument("--out", default="cub10-budget")
    parser.add_argument("--ks", default="1,2,5,all", help="FSL's boxes per class")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--val-fraction", default="0.2")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reuse-acol", default=None,
                        help="ACoL wsol-cub checkpoints trained elsewhere, with {seed}")
    parser.add_argument("--reuse-cam", default=None,
                        help="CAM (wsol-cub --recipe p) checkpoints trained elsewhere, "
                             "with {seed}")
    parser.add_argument("--train-flags", default="",
                        help="more train flags for every run (after the preset's, so they "
                             "win), e.g. '--device cuda'")
    parser.add_argument("--table", action="store_true",
                        help="only compare and print what is finished")
    args = parser.parse_args()
    out, ks = Path(args.out), [k.strip() for k in args.ks.split(",") if k.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    steps = Steps(out)
    if not args.table:
        for seed in seeds:
            run_seed(steps, args, seed, ks)
    names = [CENTRE, *[name for name, _, _ in plan(ks)]]
    done = finished_seeds(out, names, seeds)
    if not done[CENTRE] or not any(done[n] for n in names[1:]):
        raise SystemExit("no seed of the centre and of another method is finished yet")
    groups = [",".join(str(out / "reports" / f"{n}-s{s}") for s in done[n])
              for n in names if done[n]]
    # compare is fast and its table is the point: rerun it every time (--overwrite)
    acol("compare", *groups, "--reference", groups[0], "--out", str(out / "compare"),
         "--bootstrap", str(args.bootstrap), "--overwrite", quiet=True)
    frame, markdown = table(out, ks, done)
    plot(frame, ks, out / "budget_curve.png")
    shown = "; ".join(f"{n} {','.join(map(str, done[n]))}" for n in names if done[n])
    print(f"\ncub10 test split, wsoleval protocol, seeds per method: {shown}; "
          f"validation = {args.val_fraction} of train (FSL's boxes come out of it); "
          f"differences: compare's paired bootstrap ({args.bootstrap} rounds) against the "
          f"centre Gaussian:\n")
    print(markdown)
    print(f"\nwrote {out / 'budget_curve.png'}; 1-min load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
