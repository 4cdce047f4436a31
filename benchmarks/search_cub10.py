"""A resumable, budgeted search over ACoL recipes on cub10, run with acol-eval itself.

    .venv/bin/python benchmarks/search_cub10.py --out cub10-search --budget-hours 8 --dry-run
    nice -n 15 .venv/bin/python benchmarks/search_cub10.py --out cub10-search --budget-hours 8
    .venv/bin/python benchmarks/search_cub10.py --out cub10-search --table

Part of the train split (--val-fraction, stratified, seeded by the run's seed) is the
validation split: it picks best.pt, the recipes of the next stage and the CAM
thresholds; the test split is only localised for the final stage and never read to
choose anything. Every finished step is one JSON line in OUT/log.jsonl; starting the
same command again skips what the log holds and resumes a killed training with
`train --resume`. See benchmarks/search/README.md for the plan and search_plan.py
for the stages.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from search_plan import (  # noqa: E402
    FAMILIES,
    GPU_SETTINGS,
    Calibration,
    Recipe,
    Settings,
    Step,
    axis_effects,
    budgeted_plan,
    estimate_seconds,
    finished,
    fit_budget,
    length_pairs,
    plan,
    projected,
    recipe_from_dict,
    refit,
    stage_curve,
)

ROOT = Path(__file__).resolve().parents[1]
# The pilot on the 2-core machine (see benchmarks/search/README.md); --pilot measures anew.
DEFAULT_CALIBRATION = Calibration(train_s_per_gflop=0.853, eval_s_per_gflop=0.770, fixed_s=24.8)


# --------------------------------------------------------------------------- running acol-eval


def acol(args: list[str], log_file: Path) -> float:
    """Run `acol-eval ARGS` offline, its output appended to log_file; seconds taken.
    A non-zero exit status raises RuntimeError with the command."""
    shown = "acol-eval " + " ".join(shlex.quote(a) for a in args)
    print(f"$ {shown}", flush=True)
    env = {**os.environ, "ACOL_EVAL_OFFLINE": "1"}
    began = time.perf_counter()
    with open(log_file, "a") as out:
        out.write(f"$ {shown}\n")
        out.flush()
        code = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], env=env,
                              stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"exit {code}: {shown} (see {log_file})")
    return time.perf_counter() - began


def summary(report: Path, column: str = "value") -> dict[str, float]:
    """metric -> its value (or its `column`, e.g. threshold) in REPORT/summary.csv."""
    with open(report / "summary.csv", newline="") as handle:
        return {row["metric"]: float(row[column]) for row in csv.DictReader(handle)
                if row.get(column) not in (None, "", "nan")}


def calibrated(val_report: Path) -> list[str]:
    """score flags for the test split at the thresholds chosen on validation: every
    metric's own (--threshold-from), and the fixed-threshold metrics (top1_loc,
    gt_known_loc, what `compare` pairs) at the threshold with the best validation
    GT-known Loc (--threshold), not at score's default 0.2."""
    thresholds = summary(val_report, "threshold")
    if "best_gt_known_loc" not in thresholds:
        raise RuntimeError(f"{val_report}/summary.csv has no best_gt_known_loc row")
    return ["--threshold-from", str(val_report), "--threshold",
            f"{thresholds['best_gt_known_loc']:.6g}"]


def trained_seconds(train_dir: Path, epochs: int) -> float | None:
    """The summed epoch seconds of a run whose metrics.csv reached `epochs` and whose
    best.pt exists; None for a run that is not finished."""
    metrics = train_dir / "metrics.csv"
    if not (train_dir / "best.pt").is_file() or not metrics.is_file():
        return None
    with open(metrics, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or int(float(rows[-1]["epoch"])) < epochs:
        return None
    return sum(float(row.get("seconds") or 0.0) for row in rows)


def localized(run: Path) -> bool:
    """A finished localize run folder (localize refuses to write into one again)."""
    from acol_eval.maps.localization import PARTIAL

    return (run / "run.json").is_file() and not (run / PARTIAL).exists()


def tool_has_val_fraction() -> bool:
    from acol_eval.training.trainconfig import TrainConfig

    return "val_fraction" in getattr(TrainConfig, "__dataclass_fields__", {})


def held_out(data: Path, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation) image ids of cub:DATA's train split, as `train --val-fraction
    FRACTION --seed SEED` holds them out (the tool's own function on the same items)."""
    from acol_eval.data.datasets import labelled_items
    from acol_eval.data.readers import read_source

    annotations = read_source(f"cub:{data}")
    items = labelled_items(annotations, "train", annotations.classes)
    try:
        from acol_eval.training.trainingdata import hold_out
    except ImportError:  # a tool without --val-fraction: the same contract, here
        hold_out = stratified_hold_out
    train, val = hold_out(items, fraction, seed)
    return [image for image, _ in train], [image for image, _ in val]


def stratified_hold_out(items, fraction, seed):
    """Fallback with the contract of acol_eval.training.trainingdata.hold_out (round(fraction *
    n) per class, at least 1, never all; seeded; input order kept)."""
    import numpy as np

    rng = np.random.default_rng([seed, 0x5EED])
    labels = np.array([label for _, label in items])
    held: set[int] = set()
    for label in sorted(set(labels.tolist())):
        positions = np.flatnonzero(labels == label)
        take = min(len(positions) - 1, max(1, round(fraction * len(positions))))
        if take > 0:
            held.update(rng.permutation(positions)[:take].tolist())
    return ([x for i, x in enumerate(items) if i not in held],
            [x for i, x in enumerate(items) if i in held])


def split_file(out: Path, data: Path, fraction: float, seed: int) -> Path:
    """OUT/splits/seedS.csv: cub:DATA as image,label,x0,y0,x1,y1,split with the train
    split's held-out part as 'val' (boxes as the cub reader gives them: x0, y0, x1, y1
    in original pixels, x1 = x + w), images through a link to DATA/images."""
    from acol_eval.data.readers import read_source

    folder = out / "splits"
    folder.mkdir(parents=True, exist_ok=True)
    link, images = folder / "images", (data / "images").resolve()
    if link.is_symlink() and link.resolve() != images:
        link.unlink()  # left by a search of other data
    if not link.is_symlink():
        link.symlink_to(images, target_is_directory=True)
    path = folder / f"seed{seed}.csv"
    if path.is_file():
        return path
    annotations = read_source(f"cub:{data}")
    _, val = held_out(data, fraction, seed)
    val_set = set(val)
    boxes = annotations.boxes.groupby("image")
    rows = [["image", "label", "x0", "y0", "x1", "y1", "split"]]
    for image, label, split in zip(annotations.images["image"], annotations.images["label"],
                                   annotations.images["split"]):
        split = "val" if image in val_set else split
        for box in boxes.get_group(image).itertuples():
            rows.append([image, label, repr(float(box.x0)), repr(float(box.y0)),
                         repr(float(box.x1)), repr(float(box.y1)), split])
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    temporary.replace(path)
    return path


# --------------------------------------------------------------------------- steps


class Search:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.data = Path(args.data).resolve()
        self.log_path = self.out / "log.jsonl"

    def records(self) -> list[dict]:
        if not self.log_path.is_file():
            return []
        found = []
        for line in self.log_path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                continue
        return found

    def append(self, record: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def folder(self, step: Step) -> Path:
        return self.out / "runs" / step.run_key

    def common(self) -> list[str]:
        extra = ["--device", self.args.device]
        if self.args.workers is not None:
            extra += ["--workers", str(self.args.workers)]
        return extra

    def train(self, step: Step) -> dict:
        folder, seed = self.folder(step), step.seed
        folder.mkdir(parents=True, exist_ok=True)
        split = split_file(self.out, self.data, self.args.val_fraction, seed)
        train_dir, text = folder / "train", folder / "commands.log"
        flags = [*step.recipe.train_flags(), "--seed", str(seed)]
        resume = (train_dir / "last.pt").is_file()
        trained = trained_seconds(train_dir, step.recipe.epochs)
        if trained is not None:  # killed after training, while localising or scoring
            train_seconds = trained
        else:
            if train_dir.exists() and not resume:
                shutil.rmtree(train_dir)  # a run killed before its first checkpoint
            if tool_has_val_fraction():
                data = ["--data", f"cub:{self.data}",
                        "--val-fraction", str(self.args.val_fraction)]
            else:
                data = ["--data", f"csv:{split}"]  # its 'val' split: the same held-out set
            train_seconds = acol(["train", *data, "--out", str(train_dir), *flags,
                                  *self.common(), *(["--resume"] if resume else [])], text)
        eval_seconds = self.evaluate(folder, split, "val", text)
        train_ids, val_ids = held_out(self.data, self.args.val_fraction, seed)
        return {"flags": flags, "resumed": resume, "train_seconds": train_seconds,
                "eval_seconds": eval_seconds, "eval_images": len(val_ids),
                "train_images": len(train_ids), "val": summary(folder / "val-report")}

    def evaluate(self, folder: Path, split: Path, which: str, text: Path) -> float:
        """Localise and score one split of `split` (val) or of cub:DATA (test)."""
        source = f"csv:{split}" if which == "val" else f"cub:{self.data}"
        run = folder / f"{which}-run"
        seconds = 0.0
        if not localized(run):  # a new run, or one a kill left partial: localize continues it
            seconds += acol(["localize", source, "--split", which, "--out", str(run),
                             "--checkpoint", str(folder / "train" / "best.pt"),
                             *self.common()], text)
        reports = [(f"{which}-report", [])]
        if which == "test":
            reports.append(("test-cal", calibrated(folder / "val-report")))
        for name, extra in reports:
            shutil.rmtree(folder / name, ignore_errors=True)  # half-written by a kill
            seconds += acol(["score", str(folder / f"{which}-run"), "--annotations", source,
                             "--split", which, "--protocol", "wsoleval",
                             "--out", str(folder / name), *extra], text)
        return seconds

    def test(self, step: Step) -> dict:
        folder = self.folder(step)
        split = split_file(self.out, self.data, self.args.val_fraction, step.seed)
        seconds = self.evaluate(folder, split, "test", folder / "commands.log")
        return {"eval_seconds": seconds, "test": summary(folder / "test-report"),
                "test_cal": summary(folder / "test-cal")}

    def run_step(self, step: Step) -> None:
        began = time.time()
        record = {"step": step.key, "kind": step.kind, "stage": step.stage,
                  "seed": step.seed, "recipe": asdict(step.recipe), "run": step.run_key}
        try:
            record.update(self.train(step) if step.kind == "train" else self.test(step))
            record["ok"] = True
        except RuntimeError as exc:
            record.update(ok=False, error=str(exc))
        record["seconds"] = time.time() - began
        self.append(record)

    # ----------------------------------------------------------------------- the end

    def baselines_and_compare(self, settings: Settings) -> None:
        """After the final stage: the centre baseline (calibrated on validation like the
        models) and `compare` of every family's seeds against CAM and against it."""
        done = finished(self.records())
        if "compare:done" in done:
            return
        finals = sorted({(r["recipe"]["recipe"], r["seed"], r["run"]) for r in done.values()
                         if r["kind"] == "test" and r["stage"] == "final"})
        groups = {f: [self.out / "runs" / run for fam, _, run in finals if fam == f]
                  for f in settings.families}
        groups = {f: g for f, g in groups.items() if g}
        if "p" not in groups:
            print("no final p runs: no baseline or comparison", file=sys.stderr)
            return
        # the centre is calibrated on the validation split of the first p run
        base_seed = next(seed for fam, seed, _ in finals if fam == "p")
        base = groups["p"][0]
        text = self.out / "compare.log"
        centre = self.out / "centre"
        for name, run, split, extra in (
                ("val-report", base / "val-run", "val", []),
                ("test-report", base / "test-run", "test", []),
                ("test-cal", base / "test-run", "test", calibrated(centre / "val-report"))):
            source = (f"csv:{split_file(self.out, self.data, self.args.val_fraction, base_seed)}"
                      if split == "val" else f"cub:{self.data}")
            shutil.rmtree(centre / name, ignore_errors=True)
            acol(["score", str(run), "--annotations", source, "--split", split, "--protocol",
                  "wsoleval", "--baseline", "centre", "--out", str(centre / name), *extra], text)
        record = {"step": "compare:done", "kind": "compare", "ok": True,
                  "centre": {"test": summary(centre / "test-report"),
                             "test_cal": summary(centre / "test-cal")}}
        for report in ("test-cal", "test-report"):
            members = {f: ",".join(str(r / report) for r in runs) for f, runs in groups.items()}
            for reference in ("centre", "p"):
                target = self.out / "compare" / f"{report}-vs-{reference}"
                ref = str(centre / report) if reference == "centre" else members["p"]
                others = [f for f in members if not (reference == "p" and f == "p")]
                acol(["compare", ref, *[members[f] for f in others], "--reference", ref,
                      "--out", str(target), "--overwrite", "--bootstrap", "1000"], text)
                with open(target / "pairs.csv", newline="") as handle:
                    pairs = list(csv.DictReader(handle))  # one row per other, in order
                for row, family in zip(pairs, others):
                    row["family"] = family
                record[f"{report}-vs-{reference}"] = pairs
        self.append(record)


# --------------------------------------------------------------------------- table


def table(records: list[dict], settings: Settings) -> str:
    """The README table from the log alone: per family, the final recipe, mean and std
    over its seeds of test MaxBoxAccV2 and Top-1 Loc at the validation-calibrated
    thresholds (and the oracle MaxBoxAccV2), each against the centre and CAM `p` as the
    paired difference with its 95% interval (compare, 1000 paired resamples)."""
    done = finished(records)
    compared = done.get("compare:done", {})
    lines = ["| family | recipe (train flags) | seeds | MaxBoxAccV2 (cal.) | Top-1 Loc (cal.) "
             "| MaxBoxAccV2 (oracle) | vs centre: V2 / Top-1 | vs CAM p: V2 / Top-1 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for family in settings.families:
        tests = [r for r in done.values() if r.get("kind") == "test"
                 and r.get("stage") == "final" and r["recipe"]["recipe"] == family]
        if not tests:
            continue
        recipe = recipe_from_dict(tests[0]["recipe"])
        cells = [f"`{family}`", "`" + " ".join(recipe.train_flags()) + "`", str(len(tests))]
        for part, metric in (("test_cal", "max_box_acc_v2"), ("test_cal", "top1_loc"),
                             ("test", "max_box_acc_v2")):
            cells.append(mean_std([r[part].get(metric, float("nan")) for r in tests]))
        for reference in ("centre", "p"):
            rows = [row for row in compared.get(f"test-cal-vs-{reference}", [])
                    if row.get("family") == family]
            cells.append(" / ".join(difference(rows[0], m) for m in ("max_box_acc_v2",
                                                                     "top1_loc"))
                         if rows else "-")
        lines.append("| " + " | ".join(cells) + " |")
    centre = compared.get("centre", {})
    if centre:
        lines.append(f"| centre Gaussian | `score --baseline centre` | - | "
                     f"{centre['test_cal'].get('max_box_acc_v2', float('nan')):.1f} | "
                     f"{centre['test_cal'].get('top1_loc', float('nan')):.1f} | "
                     f"{centre['test'].get('max_box_acc_v2', float('nan')):.1f} | - | - |")
    return "\n".join(lines)


def evidence(records: list[dict], settings: Settings) -> str:
    """What was tried and what the budget bought, from the log alone: each coarse
    axis's effect on validation MaxBoxAccV2 per family, what longer training changed for
    the same recipe, and the best validation score against the hours spent."""
    families = list(settings.families)
    lines = ["| axis | value | " + " | ".join(f"`{f}`" for f in families) + " |",
             "| --- | --- | " + " | ".join("---" for _ in families) + " |"]
    for row in axis_effects(records, settings):
        cells = []
        for family in families:
            if family not in row:
                cells.append("")
            elif row["axis"] == "base":
                cells.append(f"{row[family][0]:.1f}")
            else:
                cells.append(f"{row[family][0]:.1f} ({row[family][1]:+.1f})")
        lines.append(f"| {row['axis']} | {row['value']} | " + " | ".join(cells) + " |")
    lines += ["", "| recipe | epochs | validation MaxBoxAccV2 | change |",
              "| --- | --- | --- | --- |"]
    for recipe, short, long in length_pairs(records):
        lines.append(f"| `{' '.join(recipe.train_flags())}` | {settings.coarse_epochs} -> "
                     f"{recipe.epochs} | {short:.1f} -> {long:.1f} | {long - short:+.1f} |")
    lines += ["", "| after stage | train runs | search hours | best validation MaxBoxAccV2 |",
              "| --- | --- | --- | --- |"]
    for row in stage_curve(records, families):
        best = ", ".join(f"`{f}` {v:.1f}" for f, v in row["best"].items())
        lines.append(f"| {row['stage']} | {row['runs']} | {row['hours']:.2f} | {best} |")
    return "\n".join(lines)


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}" if values else "-"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def difference(row: dict, metric: str) -> str:
    try:
        value = float(row[f"{metric}_diff"])
        low, high = float(row[f"{metric}_diff_ci_low"]), float(row[f"{metric}_diff_ci_high"])
    except (KeyError, ValueError):
        return "-"
    return f"{value:+.1f} [{low:+.1f}, {high:+.1f}]"


# --------------------------------------------------------------------------- main


def calibration_of(search: Search, records: list[dict]) -> Calibration:
    """The pilot's rates (OUT/calibration.json, else the built-in pilot's), this data's
    image counts, then refitted to the log's finished runs."""
    from acol_eval.data.readers import read_source

    path = search.out / "calibration.json"
    found = DEFAULT_CALIBRATION
    if path.is_file():
        found = replace(found, **json.loads(path.read_text()), source=str(path))
    train_ids, val_ids = held_out(search.data, search.args.val_fraction, 0)
    test_images = int((read_source(f"cub:{search.data}").images["split"] == "test").sum())
    found = replace(found, train_images=len(train_ids), eval_images=len(val_ids),
                    test_images=test_images)
    return refit(found, records)


def describe(steps: list[Step], cut: list[Step], reserve: float, calibration: Calibration,
             budget_s: float, spent: float, later: list[Step]) -> str:
    lines = [f"estimates from {calibration.source}; budget {budget_s / 3600:.2f} h, "
             f"spent {spent / 3600:.2f} h"]
    for step in steps:
        r = step.recipe
        lines.append(f"  {step.stage:6} {step.kind:5} {step.run_key:24} {r.recipe:3} "
                     f"d{r.delta:g} s{r.feature_stride} {r.input_size} {r.head:6} lr{r.lr:g} "
                     f"x{','.join(f'{m:g}' for m in r.head_lr_mult)} {r.schedule:8} "
                     f"e{r.epochs} ~{estimate_seconds(step, calibration) / 60:.1f} min")
    total = sum(estimate_seconds(s, calibration) for s in steps)
    lines.append(f"this stage: {len(steps)} steps, ~{total / 3600:.2f} h; cut by the budget: "
                 f"{len(cut)} (~{sum(estimate_seconds(s, calibration) for s in cut) / 3600:.2f}"
                 f" h); later stages (projected with base recipes): {len(later)} steps, "
                 f"~{reserve / 3600:.2f} h; estimated total "
                 f"{(spent + total + reserve) / 3600:.2f} h")
    return "\n".join(lines)


def pilot(search: Search, base: Recipe) -> dict:
    """One 1-epoch run of the base recipe (train, localise and score validation): the
    per-GFLOP rates every estimate scales from. Written to OUT/calibration.json."""
    recipe = replace(base, epochs=1)
    step = Step("train", "pilot", recipe)
    pilot_search = Search(argparse.Namespace(**{**vars(search.args),
                                                "out": str(search.out / "pilot")}))
    shutil.rmtree(pilot_search.out / "runs", ignore_errors=True)
    found = pilot_search.train(step)
    with open(pilot_search.folder(step) / "train" / "metrics.csv", newline="") as handle:
        rate = float(list(csv.DictReader(handle))[-1]["images_per_s"])
    gflops = recipe.gflops()
    train_compute = found["train_images"] / rate
    calibration = {
        "train_s_per_gflop": 1.0 / (rate * gflops),
        "fixed_s": max(0.0, found["train_seconds"] - train_compute),
        "eval_s_per_gflop": found["eval_seconds"] / (found["eval_images"] * gflops),
        "train_images": found["train_images"], "eval_images": found["eval_images"],
    }
    search.out.mkdir(parents=True, exist_ok=True)
    (search.out / "calibration.json").write_text(json.dumps(calibration, indent=1))
    return {**calibration, "train_img_per_s": rate, "train_seconds": found["train_seconds"],
            "eval_seconds": found["eval_seconds"], "val": found["val"]}


def settings_of(records: list[dict]) -> Settings | None:
    """The settings the log's search started with (its 'settings' line), if any."""
    for record in records:
        if record.get("kind") == "settings":
            found = dict(record["settings"])
            found["base"] = recipe_from_dict(found["base"])
            return Settings(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in found.items()})
    return None


def search_records(args: argparse.Namespace) -> list[dict]:
    return Search(args).records()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = os.environ.get("ACOL_EVAL_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", default=str(Path(shared) / "cub10"))
    parser.add_argument("--out", default="cub10-search")
    parser.add_argument("--budget-hours", type=float, default=8.0)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--scale", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--arch", default=None,
                        help="backbone of every recipe [default: mobilenet_v2, the one whose "
                             "ImageNet weights ship offline]; fixed when a search starts")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--table", action="store_true", help="print the README table")
    parser.add_argument("--evidence", action="store_true",
                        help="print what was tried: axis effects, epochs, budget curve")
    parser.add_argument("--pilot", action="store_true",
                        help="time one 1-epoch base run into OUT/pilot, write OUT/calibration.json")
    return parser.parse_args()


def main() -> None:
    args = parse()
    wanted = GPU_SETTINGS if args.scale == "gpu" else Settings()
    wanted = replace(wanted, families=tuple(args.families.split(",")))
    if args.arch:
        wanted = replace(wanted, base=replace(wanted.base, arch=args.arch))
    settings = settings_of(search_records(args)) or wanted
    search = Search(args)
    if not (search.data / "images.txt").is_file():
        raise SystemExit(f"--data {args.data}: not a CUB folder (no images.txt)")
    if args.table:
        print(table(search.records(), settings))
        return
    if args.evidence:
        print(evidence(search.records(), settings))
        return
    if args.pilot:
        print(json.dumps(pilot(search, settings.base), indent=1))
        return
    budget_s = args.budget_hours * 3600
    while True:
        records = search.records()
        calibration = calibration_of(search, records)
        estimate = partial(estimate_seconds, calibration=calibration)
        # the stage lengths are fixed when the coarse stage starts (its first line in
        # the log records them), so refitted estimates cannot change a stage midway
        settings = settings_of(records) or fit_budget(records, wanted, budget_s, estimate)
        kept, cut, reserve = budgeted_plan(records, settings, budget_s, estimate)
        steps, stage = plan(records, settings)
        later = projected(records, settings)[len(steps):]
        print(f"stage lengths: coarse {settings.coarse_epochs} epochs, fine and final "
              f"{settings.fine_epochs} epochs, top {settings.top_k} per family; families "
              f"{', '.join(settings.families)}")
        spent = sum(r.get("seconds", 0.0) for r in records)
        print(describe(kept, cut, reserve, calibration, budget_s, spent, later), flush=True)
        if args.dry_run:
            return
        coarse_started = any(r.get("stage") == "coarse" and r.get("ok") for r in records)
        if stage == "coarse" and not kept and not coarse_started:
            raise SystemExit("the budget leaves no time for the coarse stage once the later "
                             f"stages' ~{reserve / 3600:.1f} h are reserved: raise --budget-hours")
        # a coarse stage under way whose rest does not fit: its cut steps are logged as
        # skipped below, so the fine stage starts (exiting here left the search stuck)
        if not steps:
            try:
                search.baselines_and_compare(settings)
            except RuntimeError as exc:  # not logged: the same command tries again
                raise SystemExit(f"baselines and compare failed: {exc}") from None
            print(table(search.records(), settings))
            return
        if not settings_of(records):
            search.append({"kind": "settings", "settings": asdict(settings)})
        if kept:  # one step, then plan again with the estimates refitted to the log
            search.run_step(kept[0])
            continue
        for step in cut:  # nothing fits: logged, so the stage completes and the next starts
            search.append({"step": step.key, "kind": step.kind, "stage": step.stage,
                           "seed": step.seed, "recipe": asdict(step.recipe), "ok": False,
                           "skipped": "budget", "run": step.run_key})


if __name__ == "__main__":
    main()
