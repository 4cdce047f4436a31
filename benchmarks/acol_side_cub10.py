"""The ACoL side on cub10: which map of an already-trained `wsol-cub` ACoL model localises
best, chosen on validation, and whether it beats the centre Gaussian on the test split.

    nice -n 10 .venv/bin/python benchmarks/acol_side_cub10.py \\
        --acol-runs cub10-methods/train/acol-s{seed} \\
        --centre-reports cub10-budget/reports/centre-s{seed} --seeds 0,1 --out acolside

No training: every candidate is a map method of `localize` on the run's best.pt
(--candidates; METHOD or METHOD@MODULE, the module as --target-layer takes it):

- model: ACoL's own fused CAMs (what the preset ships);
- gradcam at the backbone output: the first classifier's CAM alone (its linear head makes
  Grad-CAM's weights its own), so it asks whether fusing the two branches helps;
- layercam at the backbone output (backbone, 1280 channels) and at three shallower
  layers: Layer-CAM keeps each position's positive gradient, which at shallower layers
  gives finer maps (its paper's point). MobileNetV2 at --feature-stride 16 and input 320
  gives 20x20 maps from backbone.7 up. backbone.17 is the last inverted-residual block
  (320 channels, before the 1x1 expansion the head reads: one step down, same
  resolution); backbone.13 the last block of the 96-channel stage (mid-level parts);
  backbone.6 the last block at stride 8 (40x40, twice the resolution, edges and
  textures). backbone.17 was added after backbone.13 and .6 scored far below the
  backbone output on validation (before any test image was localised), to see where
  between them the maps stop working.

For each seed, the run's own validation images (those its calibration localised: 20% of
train, never trained on) are localised with every candidate and scored (wsoleval, the
listed images only). The candidate with the best validation MaxBoxAccV2, averaged over
the seeds, is the choice. Only then is the test split localised with every candidate
(reported, never used for a choice) and scored with the thresholds of the same
candidate's validation report (--threshold-from), and `compare` pairs every candidate's
seed group with the centre's (paired bootstrap). A centre report missing at
--centre-reports is scored here on the `model` test run (`score --baseline centre`).

Resumable: a step whose OUT/steps/<step>.json exists is skipped. --table prints the
Markdown tables from finished steps only. --ready names a file (with {seed}) that must
exist before a seed's run is used, e.g. the training step's own finish mark.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import pandas as pd
from compare_cub10 import Steps, _interval
from pipeline import acol, summary

METRIC = "max_box_acc_v2"
CENTRE = "centre"
DEFAULT_CANDIDATES = ("model,gradcam,layercam,layercam@backbone.17,layercam@backbone.13,"
                      "layercam@backbone.6")


def parse_candidates(text: str) -> list[tuple[str, str, str | None]]:
    """'model,layercam@backbone.13' -> [(name, --method, --target-layer or None)]; the name
    is a folder name (layercam-backbone13)."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        method, _, layer = item.partition("@")
        name = f"{method}-{layer.replace('.', '')}" if layer else method
        found.append((name.replace("+", "p"), method, layer or None))
    if not found:
        raise SystemExit("--candidates names no map method")
    return found


def validation_images(predictions: Path) -> list[str]:
    """The images a run's calibration localised (its validation split), in file order."""
    with open(predictions, newline="") as handle:
        return [row["image"] for row in csv.DictReader(handle)]


def annotation_names(images: list[str], root: Path) -> list[str]:
    """Image paths as a cub: annotation source names them (relative to its image root,
    '/'-separated), for score's --image-list."""
    return [Path(image).relative_to(root).as_posix() for image in images]


def validation_list(run: Path, folder: Path) -> Path:
    """A list file of the run's validation images that names them as the annotations do.

    localize names a list's maps as the list names its images, relative to the list's
    folder; score matches maps to annotations by those names. So the list sits in a
    folder of links to the image root's class folders and names each image relative to
    it ('001.Black_footed_Albatross/x.jpg'), as a cub: source does."""
    listing = folder / "images.txt"
    if listing.is_file():
        return listing
    calibration = run / "calibration" / "run"
    images = validation_images(calibration / "predictions.csv")
    root = Path(json.loads((calibration / "run.json").read_text())["image_root"])
    names = annotation_names(images, root)
    folder.mkdir(parents=True, exist_ok=True)
    for top in sorted({name.split("/")[0] for name in names if "/" in name}):
        if not (folder / top).exists():
            (folder / top).symlink_to(root / top, target_is_directory=True)
    temporary = listing.with_suffix(".tmp")
    temporary.write_text("".join(f"{name}\n" for name in names))
    temporary.replace(listing)
    return listing


def choose(table: pd.DataFrame) -> str:
    """The candidate with the highest mean validation score over the seeds (rows:
    candidates in the order given, columns: seeds); a tie goes to the earlier row."""
    means = table.mean(axis=1)
    return str(means.index[int(means.to_numpy().argmax())])


def ready_seeds(args: argparse.Namespace, seeds: list[int]) -> list[int]:
    """Seeds whose run is finished: calibrated (its validation list exists) and --ready."""
    ready = []
    for seed in seeds:
        run = Path(args.acol_runs.format(seed=seed))
        marks = [run / "best.pt", run / "calibration" / "run" / "predictions.csv"]
        if args.ready:
            marks.append(Path(args.ready.format(seed=seed)))
        missing = [str(m) for m in marks if not m.is_file()]
        if missing:
            print(f"seed {seed}: not ready ({missing[0]} missing), left out", flush=True)
        else:
            ready.append(seed)
    return ready


def localize(steps: Steps, args: argparse.Namespace, step: str, images: list[str],
             out: Path, checkpoint: Path, method: str, layer: str | None) -> None:
    target = ["--target-layer", layer] if layer else []
    steps.run(step, "localize", *images, "--out", str(out), "--checkpoint", str(checkpoint),
              "--method", method, *target, "--top-k", "1", "--batch-size",
              str(args.batch_size), "--workers", "0")


def validate(steps: Steps, args: argparse.Namespace, seed: int,
             candidates: list[tuple[str, str, str | None]]) -> None:
    out, annotations = Path(args.out), f"cub:{args.data}"
    run = Path(args.acol_runs.format(seed=seed))
    listing = validation_list(run, out / "lists" / f"val-s{seed}")
    for name, method, layer in candidates:
        tag = f"{name}-s{seed}"
        localize(steps, args, f"val-localize-{tag}", [str(listing), "--labels", annotations],
                 out / "runs" / "val" / tag, run / "best.pt", method, layer)
        steps.run(f"val-score-{tag}", "score", str(out / "runs" / "val" / tag),
                  "--annotations", annotations, "--split", "train", "--image-list",
                  str(listing), "--protocol", "wsoleval", "--workers", "0",
                  "--out", str(out / "reports" / "val" / tag), quiet=True)


def test(steps: Steps, args: argparse.Namespace, seed: int,
         candidates: list[tuple[str, str, str | None]]) -> None:
    out, annotations = Path(args.out), f"cub:{args.data}"
    run = Path(args.acol_runs.format(seed=seed))
    for name, method, layer in candidates:
        tag = f"{name}-s{seed}"
        localize(steps, args, f"test-localize-{tag}", [annotations, "--split", "test"],
                 out / "runs" / "test" / tag, run / "best.pt", method, layer)
        steps.run(f"test-score-{tag}", "score", str(out / "runs" / "test" / tag),
                  "--annotations", annotations, "--split", "test", "--protocol", "wsoleval",
                  "--threshold-from", str(out / "reports" / "val" / tag), "--bootstrap",
                  str(args.bootstrap), "--workers", "0",
                  "--out", str(out / "reports" / "test" / tag), quiet=True)
    if not centre_report(args, seed).is_file():
        steps.run(f"test-score-{CENTRE}-s{seed}", "score",
                  str(out / "runs" / "test" / f"model-s{seed}"), "--annotations", annotations,
                  "--split", "test", "--protocol", "wsoleval", "--baseline", "centre",
                  "--bootstrap", str(args.bootstrap), "--workers", "0",
                  "--out", str(out / "reports" / "test" / f"{CENTRE}-s{seed}"), quiet=True)


def centre_report(args: argparse.Namespace, seed: int) -> Path:
    """The centre's test report folder of a seed: --centre-reports', else the one made here."""
    given = Path(args.centre_reports.format(seed=seed))
    if (given / "summary.csv").is_file():
        return given
    return Path(args.out) / "reports" / "test" / f"{CENTRE}-s{seed}"


def scores(out: Path, split: str, names: list[str], seeds: list[int]) -> pd.DataFrame:
    """MaxBoxAccV2 of each finished report: candidates down, seeds across (NaN: not yet)."""
    table = pd.DataFrame(index=names, columns=seeds, dtype=float)
    for name in names:
        for seed in seeds:
            report = out / "reports" / split / f"{name}-s{seed}"
            if (report / "summary.csv").is_file():
                table.loc[name, seed] = summary(report)[METRIC]
    return table


def scores_markdown(table: pd.DataFrame, chosen: str | None, labels: dict[str, str]) -> str:
    header = ["map", *[f"seed {s}" for s in table.columns], "mean"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, row in table.iterrows():
        mark = " (chosen)" if name == chosen else ""
        cells = ["-" if pd.isna(v) else f"{v:.1f}" for v in row]
        lines.append(f"| {labels[name]}{mark} | " + " | ".join(cells)
                     + f" | {row.mean():.1f} |")
    return "\n".join(lines)


def compare_markdown(out: Path, groups: dict[str, str], labels: dict[str, str]) -> str:
    """Each seed group against the centre's: mean, sd, paired difference, McNemar."""
    board = pd.read_csv(out / "compare" / "leaderboard.csv")  # one row a group, in order
    pairs = pd.read_csv(out / "compare" / "pairs.csv").set_index("method")
    lines = ["| map | MaxBoxAccV2 (mean ± sd) | - centre [95%] | Top-1 Loc | "
             "McNemar centre-only / map-only / p |", "| --- | --- | --- | --- | --- |"]
    for (_, row), name in zip(board.iterrows(), groups):
        sd = row.get(f"{METRIC}_std", float("nan"))
        spread = "" if pd.isna(sd) else f" ± {sd:.1f}"
        diff, mcnemar = "-", "-"
        if row["method"] in pairs.index:
            pair = pairs.loc[row["method"]]
            diff = _interval(pair[f"{METRIC}_diff"], pair[f"{METRIC}_diff_ci_low"],
                             pair[f"{METRIC}_diff_ci_high"], sign=True)
            if not pd.isna(pair["mcnemar_p"]):
                mcnemar = (f"{int(pair['mcnemar_reference_only'])} / "
                           f"{int(pair['mcnemar_method_only'])} / {pair['mcnemar_p']:.3g}")
        lines.append(f"| {labels.get(name, name)} | {row[METRIC]:.1f}{spread} | {diff} | "
                     f"{row['top1_loc']:.1f} | {mcnemar} |")
    return "\n".join(lines)


def label_of(name: str, method: str, layer: str | None) -> str:
    if method == "model":
        return "ACoL's own fused CAMs (`model`)"
    return f"{method} at {layer or 'the backbone output'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = os.environ.get("ACOL_EVAL_SHARED_DATA", "../shared/data")
    parser.add_argument("--data", default=str(Path(shared) / "cub10"))
    parser.add_argument("--acol-runs", required=True,
                        help="the wsol-cub ACoL train folders, with {seed}")
    parser.add_argument("--centre-reports", default="",
                        help="the centre's test reports, with {seed} (else scored here)")
    parser.add_argument("--ready", default="",
                        help="a file, with {seed}, that must exist before a run is used")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES)
    parser.add_argument("--out", default="acolside")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--table", action="store_true",
                        help="only print the tables of what is finished")
    args = parser.parse_args()
    out, candidates = Path(args.out), parse_candidates(args.candidates)
    names = [name for name, _, _ in candidates]
    labels = {name: label_of(name, method, layer) for name, method, layer in candidates}
    seeds = ready_seeds(args, [int(s) for s in args.seeds.split(",")])
    steps = Steps(out)
    if not args.table:  # every seed's validation before any test image is localised
        for seed in seeds:
            validate(steps, args, seed, candidates)
    validation = scores(out, "val", names, seeds)
    validation = validation.loc[:, validation.notna().all(axis=0)]
    if validation.empty:
        raise SystemExit("no seed has every candidate's validation report yet")
    chosen = choose(validation)
    print(f"\nValidation MaxBoxAccV2 (wsoleval, each run's held-out 20% of train), "
          f"seeds {','.join(map(str, validation.columns))}; chosen: {labels[chosen]}\n")
    print(scores_markdown(validation, chosen, labels))
    if not args.table:
        for seed in validation.columns:
            test(steps, args, seed, candidates)
    testing = scores(out, "test", names, list(validation.columns))
    done = [s for s in testing.columns if testing[s].notna().all()
            and (centre_report(args, s) / "summary.csv").is_file()]
    if not done:
        return
    groups = {name: ",".join(str(out / "reports" / "test" / f"{name}-s{s}") for s in done)
              for name in [chosen, *[n for n in names if n != chosen]]}
    groups = {CENTRE: ",".join(str(centre_report(args, s)) for s in done), **groups}
    # compare is fast and its tables are the point: rerun it every time (--overwrite)
    acol("compare", *groups.values(), "--reference", groups[CENTRE], "--out",
         str(out / "compare"), "--bootstrap", str(args.bootstrap), "--overwrite", quiet=True)
    labels[CENTRE] = "centre Gaussian"
    labels[chosen] += " (chosen)"
    print(f"\nTest split (243 images), seeds {','.join(map(str, done))}, thresholds of the "
          f"fixed rows from each map's validation report; differences: compare's paired "
          f"bootstrap ({args.bootstrap} rounds) against the centre Gaussian:\n")
    print(compare_markdown(out, groups, labels))
    print("\nTest MaxBoxAccV2 per seed (every candidate, for the record; not used to choose):\n")
    print(scores_markdown(testing.loc[:, done], None, labels))
    print("\nStep wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in steps.seconds.items())
          + f"; 1-min load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
