"""Scoring speed: the straightforward reference against `acol-eval score`
(the target: at least 25x faster, the same MaxBoxAccV2 to the last digit).

The reference is wsolevaluation's way: per image, per CAM threshold, cv2.threshold,
cv2.findContours (RETR_TREE), boundingRect of every contour, IoU. `score` is timed as a
whole command (reading, both passes on all cores, reports). Maps are generated CAM-like
(blobs near the real boxes plus noise, 28x28 upsampled to 224x224), over the real
annotation metadata of ../shared/data/wsol-metadata. Prints both times, the ratio and
both MaxBoxAccV2 results.

    .venv/bin/python benchmarks/bench_score.py --images 1000
    .venv/bin/python benchmarks/bench_score.py --images 1000 --repeat 3   # noisy machine
    .venv/bin/python benchmarks/bench_score.py --memory 1000,10000 --dataset ILSVRC

Two score figures: the whole command (a fresh process: imports, numba's cache, the
process pool, reading annotations, reports) and the steady state, which leaves out the
fixed per-run costs: (whole command at N images - whole command at N/10 images) per
image, against the reference's time for the same extra images. `--memory` runs score
alone at each image count and prints the peak RSS of the largest process of its tree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acol_eval.data.readers import read_wsol  # noqa: E402
from acol_eval.maps.boxes import wsoleval_uint8  # noqa: E402
from acol_eval.metrics.metrics import iou_inclusive, scale_boxes_wsoleval  # noqa: E402


def make_maps(metadata, count: int, folder: Path, seed: int = 0) -> list[str]:
    """CAM-like 28x28 maps saved as .npy named by image id (the wsolevaluation layout)."""
    rng = np.random.default_rng(seed)
    images = metadata.images.iloc[:count]
    boxes = metadata.boxes.groupby("image")
    side = 28
    yy, xx = np.mgrid[0:side, 0:side]
    for row in images.itertuples():
        gt = boxes.get_group(row.image)[["x0", "y0", "x1", "y1"]].to_numpy(dtype=float)
        box = gt[rng.integers(len(gt))]
        cx = (box[0] + box[2]) / 2 / row.width * side + rng.normal(0, 2)
        cy = (box[1] + box[3]) / 2 / row.height * side + rng.normal(0, 2)
        sx = max((box[2] - box[0]) / row.width * side / 3, 1)
        sy = max((box[3] - box[1]) / row.height * side / 3, 1)
        heat = np.exp(-((xx - cx) ** 2 / (2 * sx * sx) + (yy - cy) ** 2 / (2 * sy * sy)))
        heat += 0.3 * rng.random((side, side)) ** 4
        path = folder / (row.image.rsplit(".", 1)[0] + ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, heat.astype(np.float32))
    return list(images["image"])


def reference(metadata, image_ids: list[str], folder: Path, interval: float, ious: list[int]):
    """wsolevaluation's box evaluator, all contours (MaxBoxAccV2), one process."""
    thresholds = np.arange(0, 1, interval)
    correct = {k: np.zeros(len(thresholds)) for k in ious}
    sizes = metadata.images.set_index("image")
    boxes = metadata.boxes.groupby("image")
    for image in image_ids:
        heat = np.load(folder / (image.rsplit(".", 1)[0] + ".npy")).astype(np.float64)
        u8 = wsoleval_uint8(heat)[..., None]
        gt = scale_boxes_wsoleval(boxes.get_group(image)[["x0", "y0", "x1", "y1"]].to_numpy(),
                                  sizes.at[image, "width"], sizes.at[image, "height"])
        found, counts = [], []
        for t in thresholds:
            _, binary = cv2.threshold(u8, int(t * np.max(u8)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                found.append(np.zeros((1, 4), dtype=int))
                counts.append(1)
                continue
            rects = []
            for contour in contours:
                x, y, w, h = cv2.boundingRect(contour)
                rects.append([x, y, min(x + w, 223), min(y + h, 223)])
            found.append(np.array(rects))
            counts.append(len(rects))
        best = iou_inclusive(np.concatenate(found), gt).max(axis=1)
        per_threshold = np.maximum.reduceat(best, np.cumsum([0] + counts[:-1]))
        for k in ious:
            correct[k] += per_threshold >= k / 100
    accuracy = {k: float((correct[k] * 100.0 / len(image_ids)).max()) for k in ious}
    return accuracy, float(np.mean(list(accuracy.values())))


def run_score(folder: Path, meta_dir: Path, out: Path, interval: float) -> tuple[float, float]:
    """Whole-command seconds of `score` and the peak RSS (MB) of its largest process, taken
    in a fresh helper process so that each run's peak is its own."""
    helper = (
        "import json, resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "result = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "took = time.perf_counter() - start\n"
        "if result.returncode not in (0, 1):\n"
        "    sys.exit(result.stderr)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([took, peak]))\n")
    command = [sys.executable, str(ROOT / "cli.py"), "score", str(folder), "--annotations",
               f"wsol:{meta_dir}", "--out", str(out), "--cam-curve-interval", str(interval),
               "--allow-missing"]  # the first N test images: a subset, on purpose
    result = subprocess.run([sys.executable, "-c", helper, *command], capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(result.stderr)
    took, peak = json.loads(result.stdout)
    return took, peak


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def memory(metadata, meta_dir: Path, counts: list[int], interval: float) -> None:
    for count in counts:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "maps"
            make_maps(metadata, count, folder)
            took, peak = run_score(folder, meta_dir, Path(tmp) / "report", interval)
            print(f"{count:6d} images: peak RSS {peak:6.0f} MB (largest process of score), "
                  f"{took:.1f} s, load average {load_average()}", flush=True)


def speed(metadata, meta_dir: Path, count: int, interval: float, skip_reference: bool):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "maps"
        ids = make_maps(metadata, count, folder)
        small = max(count // 10, 1)
        small_folder = Path(tmp) / "small"
        make_maps(metadata, small, small_folder)
        print(f"{len(ids)} maps of {meta_dir.parent.name} test, "
              f"{len(np.arange(0, 1, interval))} thresholds, all boxes; load average "
              f"{load_average()}")
        # an untimed run first: after an edit of sweep.py numba compiles it once (seconds),
        # which would land in the small run and make the steady state nonsense
        run_score(small_folder, meta_dir, Path(tmp) / "warm-up-report", interval)
        small_time, _ = run_score(small_folder, meta_dir, Path(tmp) / "small-report", interval)
        fast_time, peak = run_score(folder, meta_dir, Path(tmp) / "report", interval)
        summary = pd.read_csv(Path(tmp) / "report" / "summary.csv").set_index("metric")
        fast = {k: float(summary.at[f"max_box_acc_v2@{k}", "value"]) for k in (30, 50, 70)}
        fast_v2 = summary.at["max_box_acc_v2", "value"]
        steady = (fast_time - small_time) / (count - small)
        print(f"score:     {fast_time:8.2f} s  {fast_time / len(ids) * 1e3:7.2f} ms/image whole "
              f"command ({small} images: {small_time:.2f} s; steady state "
              f"{steady * 1e3:.2f} ms/image)  peak RSS {peak:.0f} MB  MaxBoxAccV2 "
              f"{fast_v2:.4f} {fast}", flush=True)
        if skip_reference:
            return None
        start = time.perf_counter()
        ref, ref_v2 = reference(metadata, ids, folder, interval, [30, 50, 70])
        ref_time = time.perf_counter() - start
        per_ref = ref_time / len(ids)
        print(f"reference: {ref_time:8.2f} s  {per_ref * 1e3:7.2f} ms/image  "
              f"MaxBoxAccV2 {ref_v2:.4f} {ref}")
        same = all(abs(fast[k] - ref[k]) < 1e-9 for k in (30, 50, 70)) and \
            f"{fast_v2:.4f}" == f"{ref_v2:.4f}"
        print(f"ratio: whole command {ref_time / fast_time:.1f}x, steady state "
              f"{per_ref / steady:.1f}x  equal results: {same}  load average "
              f"{load_average()}", flush=True)
        return ref_time / fast_time, per_ref / steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--dataset", default="CUB", choices=["CUB", "ILSVRC"])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="Repeat the speed measurement.")
    parser.add_argument("--memory", default=None,
                        help="Image counts for the memory check instead, e.g. 1000,10000.")
    args = parser.parse_args()
    meta_dir = Path(args.data) / "wsol-metadata" / args.dataset / "test"
    metadata = read_wsol(meta_dir)
    if args.memory:
        memory(metadata, meta_dir, [int(v) for v in args.memory.split(",")], args.interval)
        return
    for _ in range(args.repeat):
        speed(metadata, meta_dir, args.images, args.interval, args.skip_reference)


if __name__ == "__main__":
    main()
