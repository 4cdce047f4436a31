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
(reported, never used for a choice) and scored twice: `test`, the field's MaxBoxAccV2
(the best threshold per IoU on the scored images, as the centre's 60.4 and every paper's)
with the fixed rows (Top-1 Loc, GT-known Loc) at the threshold best for GT-known Loc on
the same map's validation report; `test-cal`, every threshold, each IoU's too, taken from
that validation report (--threshold-from), as a deployed localiser would meet it. The
centre Gaussian is scored here the same two ways (on the `model` runs, so its classes are
ACoL's, its thresholds from its own validation score), and `compare` pairs every
candidate's seed group with the centre's (paired bootstrap). --centre-reports, when
given, is a check: its MaxBoxAccV2 must equal the one scored here.

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


def score(steps: Steps, args: argparse.Namespace, step: str, run: Path, split: str,
          report: Path, *flags: str) -> None:
    steps.run(step, "score", str(run), "--annotations", f"cub:{args.data}", "--split", split,
              "--protocol", "wsoleval", "--workers", "0", "--out", str(report), *flags,
              quiet=True)


def validate(steps: Steps, args: argparse.Namespace, seed: int,
             candidates: list[tuple[str, str, str | None]]) -> None:
    out, annotations = Path(args.out), f"cub:{args.data}"
    run = Path(args.acol_runs.format(seed=seed))
    listing = validation_list(run, out / "lists" / f"val-s{seed}")
    only = ["--image-list", str(listing)]
    for name, method, layer in candidates:
        tag = f"{name}-s{seed}"
        localize(steps, args, f"val-localize-{tag}", [str(listing), "--labels", annotations],
                 out / "runs" / "val" / tag, run / "best.pt", method, layer)
        score(steps, args, f"val-score-{tag}", out / "runs" / "val" / tag, "train",
              out / "reports" / "val" / tag, *only)
    # the centre's own validation thresholds, so it is calibrated like every map
    score(steps, args, f"val-score-{CENTRE}-s{seed}", out / "runs" / "val" / f"model-s{seed}",
          "train", out / "reports" / "val" / f"{CENTRE}-s{seed}", *only, "--baseline", "centre")


def calibrated_threshold(report: Path) -> float:
    """The CAM threshold best for GT-known Loc on a (validation) report: the fixed
    threshold its map gets on the test split."""
    with open(report / "summary.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["metric"] == "best_gt_known_loc":
                return float(row["threshold"])
    raise SystemExit(f"{report}: no best_gt_known_loc row")


def test(steps: Steps, args: argparse.Namespace, seed: int,
         candidates: list[tuple[str, str, str | None]]) -> None:
    """Every candidate (and the centre) scored twice on the test split: `test`, the
    field's MaxBoxAccV2 (best threshold per IoU on the images scored) with the fixed rows
    at validation's best GT-known threshold; `test-cal`, every threshold (each IoU's too)
    taken from the map's validation report, as a deployed localiser would have to."""
    out, annotations = Path(args.out), f"cub:{args.data}"
    run = Path(args.acol_runs.format(seed=seed))
    bootstrap = ["--bootstrap", str(args.bootstrap)]
    for name, method, layer in [*candidates, (CENTRE, "model", None)]:
        tag, val = f"{name}-s{seed}", out / "reports" / "val" / f"{name}-s{seed}"
        maps = out / "runs" / "test" / (f"model-s{seed}" if name == CENTRE else tag)
        if name != CENTRE:
            localize(steps, args, f"test-localize-{tag}", [annotations, "--split", "test"],
                     maps, run / "best.pt", method, layer)
        extra = ["--baseline", "centre"] if name == CENTRE else []
        fixed = ["--threshold", f"{calibrated_threshold(val):g}"]
        score(steps, args, f"test-score-{tag}", maps, "test", out / "reports" / "test" / tag,
              *fixed, *bootstrap, *extra)
        score(steps, args, f"test-cal-score-{tag}", maps, "test",
              out / "reports" / "test-cal" / tag, "--threshold-from", str(val), *fixed,
              *bootstrap, *extra)


def check_centre(args: argparse.Namespace, seed: int) -> str:
    """A line on whether the centre scored here has the MaxBoxAccV2 of --centre-reports'
    (it must: that figure takes the best threshold, and the images are the same)."""
    given = Path(args.centre_reports.format(seed=seed)) if args.centre_reports else None
    if given is None or not (given / "summary.csv").is_file():
        return f"seed {seed}: no --centre-reports report to check against"
    mine = summary(Path(args.out) / "reports" / "test" / f"{CENTRE}-s{seed}")[METRIC]
    theirs = summary(given)[METRIC]
    verdict = "same" if abs(mine - theirs) < 0.01 else "DIFFERENT"
    return f"seed {seed}: centre MaxBoxAccV2 here {mine:.2f}, {given} {theirs:.2f}: {verdict}"


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


def compare_markdown(folder: Path, groups: dict[str, str], labels: dict[str, str]) -> str:
    """Each seed group against the centre's: mean and sd over seeds, the paired difference
    with its interval, Top-1 Loc (compare gives no McNemar test for seed groups)."""
    board = pd.read_csv(folder / "leaderboard.csv")  # one row a group, in order
    pairs = pd.read_csv(folder / "pairs.csv").set_index("method")
    lines = ["| map | MaxBoxAccV2 (mean ± sd) | - centre [95%] | Top-1 Loc | "
             "Top-1 Loc - centre [95%] |", "| --- | --- | --- | --- | --- |"]
    for (_, row), name in zip(board.iterrows(), groups):
        cells = []
        for metric in (METRIC, "top1_loc"):
            sd = row.get(f"{metric}_std", float("nan"))
            cells.append(f"{row[metric]:.1f}" + ("" if pd.isna(sd) else f" ± {sd:.1f}"))
            if row["method"] in pairs.index:
                pair = pairs.loc[row["method"]]
                cells.append(_interval(pair[f"{metric}_diff"], pair[f"{metric}_diff_ci_low"],
                                       pair[f"{metric}_diff_ci_high"], sign=True))
            else:
                cells.append("-")
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
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
                        help="centre test reports made elsewhere, with {seed}: checked "
                             "against the centre scored here")
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
    centre = scores(out, "val", [CENTRE], list(validation.columns)).loc[CENTRE]
    print(f"\n(the centre Gaussian on the same validation images: "
          f"{', '.join(f'{v:.1f}' for v in centre)}, mean {centre.mean():.1f})")
    if not args.table:
        for seed in validation.columns:
            test(steps, args, seed, candidates)
    testing = scores(out, "test", [*names, CENTRE], list(validation.columns))
    done = [s for s in testing.columns if testing[s].notna().all()
            and (out / "reports" / "test-cal" / f"{CENTRE}-s{s}" / "summary.csv").is_file()]
    if not done:
        return
    labels[CENTRE] = "centre Gaussian"
    labels[chosen] += " (chosen)"
    order = [CENTRE, chosen, *[n for n in names if n != chosen]]
    for kind, words in [("test", "the best threshold per IoU on the test images (the field's "
                         "MaxBoxAccV2), Top-1 Loc at validation's best GT-known threshold"),
                        ("test-cal", "every threshold from each map's validation report")]:
        groups = {n: ",".join(str(out / "reports" / kind / f"{n}-s{s}") for s in done)
                  for n in order}
        folder = out / f"compare-{kind}"
        # compare is fast and its tables are the point: rerun it every time (--overwrite)
        acol("compare", *groups.values(), "--reference", groups[CENTRE], "--out", str(folder),
             "--bootstrap", str(args.bootstrap), "--overwrite", quiet=True)
        print(f"\nTest split (243 images), seeds {','.join(map(str, done))}, {words}; "
              f"differences: compare's paired bootstrap ({args.bootstrap} rounds) against "
              f"the centre Gaussian:\n")
        print(compare_markdown(folder, groups, labels))
    print("\nTest MaxBoxAccV2 per seed (every candidate, for the record; not used to choose):\n")
    print(scores_markdown(testing.loc[:, done], None, labels))
    print("\n" + "\n".join(check_centre(args, s) for s in done))
    print("\nStep wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in steps.seconds.items())
          + f"; 1-min load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
