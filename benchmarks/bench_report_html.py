"""report.html for 50,000 ILSVRC maps: its size and its time against `score`'s.

Builds a report folder as `score` leaves it for the ILSVRC test split (the real
wsolevaluation metadata in ../shared/data/wsol-metadata: 50,000 images, 80,477 boxes):
per_image.csv of 50,000 rows, summary.csv, curve.csv (1,000 thresholds), per_class.csv
(1,000 classes), report.json, and a localize run beside it with a map store of 50,000
28x28 float16 maps, maps_index.csv and predictions.csv. ILSVRC photos are not shipped:
JPEGs of the images' real sizes are written for the images the gallery picks (it reads
no other), so decoding is timed too. Then times write_score_html (best of --repeat) and
prints the page's size.

`score`'s time for the same 50,000 maps is measured as benchmarks/bench_score.py does
(the whole command, a fresh process) at --score-images N and N/10 and extrapolated
linearly to 50,000 (N = 50000 measures it outright; leave it to a machine with cores to
spare). Prints the ratio.

    .venv/bin/python benchmarks/bench_report_html.py
    .venv/bin/python benchmarks/bench_report_html.py --score-images 50000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_score import make_maps, run_score  # noqa: E402

from acol_eval.data.readers import read_wsol  # noqa: E402
from acol_eval.maps.mapstore import maps_meta  # noqa: E402
from acol_eval.maps.reportfolder import ReportMeta  # noqa: E402
from acol_eval.report import gallery  # noqa: E402
from acol_eval.report.htmlreport import write_score_html  # noqa: E402

ERRORS = ["correct"] * 5 + gallery.ERROR_TYPES


def write_run(run: Path, images: pd.DataFrame, rng: np.random.Generator) -> None:
    """A localize run's map store (one label map per image) and predictions.csv."""
    run.mkdir(parents=True)
    count, side = len(images), 28
    maps = np.memmap(run / "maps.f16", dtype="<f2", mode="w+", shape=(count, side, side))
    yy, xx = np.mgrid[0:side, 0:side]
    for start in range(0, count, 5000):  # blobs at random places, a chunk at a time
        n = min(5000, count - start)
        cx, cy = rng.uniform(4, 24, (2, n, 1, 1))
        maps[start:start + n] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 40.0)
    maps.flush()
    classes = [str(k) for k in range(1000)]
    (run / "maps.json").write_text(json.dumps(maps_meta(side, side, count, classes)))
    pd.DataFrame({"row": np.arange(count), "image": images["image"],
                  "class_id": images["label"].astype(int), "class_name": images["label"],
                  "pred_rank": 1, "is_label": 1}).to_csv(run / "maps_index.csv", index=False)
    pd.DataFrame({"image": images["image"], "width": images["width"].astype(int),
                  "height": images["height"].astype(int), "label": images["label"],
                  "pred_1": images["label"], "score_1": rng.uniform(0.2, 1, count).round(6)}
                 ).to_csv(run / "predictions.csv", index=False)


def write_report(report: Path, run: Path, meta_dir: Path, images: pd.DataFrame,
                 rng: np.random.Generator) -> pd.DataFrame:
    """The report folder's CSV files and report.json, shaped as `score` writes them."""
    report.mkdir(parents=True)
    count = len(images)
    corners = np.sort(rng.integers(0, 224, (count, 2, 2)), axis=1)
    per_image = pd.DataFrame({
        "image": images["image"], "label": images["label"], "threshold": 0.213,
        "iou": rng.uniform(0, 1, count).round(6), "x0": corners[:, 0, 0],
        "y0": corners[:, 0, 1], "x1": corners[:, 1, 0], "y1": corners[:, 1, 1]})
    per_image["correct"] = (per_image["iou"] >= 0.5).astype(int)
    per_image["top1_correct"] = rng.integers(0, 2, count)
    per_image["top5_correct"] = 1
    per_image["error"] = rng.choice(ERRORS, count)
    per_image.to_csv(report / "per_image.csv", index=False)
    thresholds = np.arange(0, 1, 0.001)
    bump = 100 * np.exp(-((thresholds - 0.3) ** 2) / 0.05)
    curve = pd.DataFrame({"threshold": thresholds, "gt_known_loc": bump * 0.6,
                          "top1_loc": bump * 0.45, "top5_loc": bump * 0.55,
                          "box_acc_v2@30": bump * 0.8, "box_acc_v2@50": bump * 0.6,
                          "box_acc_v2@70": bump * 0.3})
    curve.to_csv(report / "curve.csv", index=False, float_format="%.6g")
    rows = [("cls_top1", 71.2, np.nan, np.nan), ("gt_known_loc", 55.0, 0.2, 50),
            ("best_gt_known_loc", 60.0, 0.3, 50), ("max_box_acc", 60.0, 0.3, 50)]
    rows += [(f"max_box_acc_v2@{k}", 80 - k / 2, 0.3, k) for k in (30, 50, 70)]
    rows += [("max_box_acc_v2", 55.0, np.nan, np.nan)]
    pd.DataFrame([(m, v, t, k, "wsoleval", count, v - 1, v + 1) for m, v, t, k in rows],
                 columns=["metric", "value", "threshold", "iou", "protocol", "count",
                          "ci_low", "ci_high"]).to_csv(report / "summary.csv", index=False)
    per_class = per_image.groupby("label").agg(
        count=("correct", "size"), gt_known_loc=("correct", "mean"),
        mean_iou=("iou", "mean")).reset_index().rename(columns={"label": "class"})
    per_class["gt_known_loc"] *= 100
    per_class.to_csv(report / "per_class.csv", index=False)
    ReportMeta(protocol="wsoleval", annotations=f"wsol:{meta_dir}", annotations_digest="-",
               run=str(run), images_root=str(report.parent / "images"), images=count
               ).write(report)
    return per_image


def write_gallery_images(root: Path, images: pd.DataFrame, per_image: pd.DataFrame,
                         rng: np.random.Generator) -> None:
    """JPEGs at the real image sizes for the images the gallery will show."""
    sizes = images.set_index("image")
    for name in gallery.pick_gallery(per_image)["image"]:
        width, height = int(sizes.at[name, "width"]), int(sizes.at[name, "height"])
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((width, height)).save(path, quality=90)


def time_page(report: Path, repeat: int, annotations=None) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        write_score_html(report, annotations)
        best = min(best, time.perf_counter() - start)
    return best


def score_seconds(metadata, meta_dir: Path, count: int, total: int, interval: float) -> float:
    """score's whole-command seconds at `count` maps, extrapolated to `total` by the
    steady-state time per image between count/10 and count maps."""
    with tempfile.TemporaryDirectory() as tmp:
        small = max(count // 10, 1)
        make_maps(metadata, count, Path(tmp) / "maps")
        make_maps(metadata, small, Path(tmp) / "small")
        run_score(Path(tmp) / "small", meta_dir, Path(tmp) / "warm", interval)  # numba cache
        small_time, _ = run_score(Path(tmp) / "small", meta_dir, Path(tmp) / "r1", interval)
        full_time, _ = run_score(Path(tmp) / "maps", meta_dir, Path(tmp) / "r2", interval)
    steady = (full_time - small_time) / max(count - small, 1)
    print(f"score: {full_time:.2f} s at {count} maps, {small_time:.2f} s at {small} "
          f"({steady * 1e3:.2f} ms/image steady state)")
    return full_time + (total - count) * steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--score-images", type=int, default=2000,
                        help="maps to time score on (0: do not time score)")
    parser.add_argument("--data", default=os.environ.get(
        "ACOL_EVAL_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.001)
    args = parser.parse_args()
    meta_dir = Path(args.data) / "wsol-metadata" / "ILSVRC" / "test"
    metadata = read_wsol(meta_dir)
    images = metadata.images.iloc[:args.images].reset_index(drop=True)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        run, report = Path(tmp) / "run", Path(tmp) / "report"
        write_run(run, images, rng)
        per_image = write_report(report, run, meta_dir, images, rng)
        write_gallery_images(Path(tmp) / "images", images, per_image, rng)
        page_time = time_page(report, args.repeat)
        given_time = time_page(report, args.repeat, metadata)
        size = (report / "report.html").stat().st_size
    print(f"report.html for {len(images)} ILSVRC maps: {size / 1e6:.2f} MB, "
          f"{page_time:.2f} s reading the annotations again, {given_time:.2f} s given "
          f"score's (best of {args.repeat})")
    if args.score_images:
        score_time = score_seconds(metadata, meta_dir, min(args.score_images, len(images)),
                                   len(images), args.interval)
        print(f"score on {len(images)} maps: {score_time:.1f} s"
              f"{' (extrapolated)' if args.score_images < len(images) else ''}; "
              f"report.html adds {100 * page_time / score_time:.1f}% of it "
              f"({100 * given_time / score_time:.1f}% given score's annotations)")


if __name__ == "__main__":
    main()
