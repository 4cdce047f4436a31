"""`boxes` against `localize` on the same run: the time of redoing every box at a new CAM
threshold from the map store, as a share of the time localize takes to make the run.

    .venv/bin/python benchmarks/bench_boxes.py                       # 300 images, resnet50
    .venv/bin/python benchmarks/bench_boxes.py --images 200 --arch resnet18
    .venv/bin/python benchmarks/bench_boxes.py --part scale      # 1,000 and 4,000 images

One process, one run: localize (random weights: speed does not depend on them) writes
RUN at 0.2 over JPEG files of 500x375 on disk; then boxes redoes RUN at 0.6, in this
process and in default_workers() processes, with --all-boxes, and as the
`acol-eval boxes` command (its start-up included: Python, pandas, OpenCV; not torch,
which acol_eval.util.runtime imports only where a model runs).
The target: boxes under a tenth of localize's time (a new threshold should cost
seconds, not a second pass of the network). The load average is printed
because the machine may be shared: the ratio, measured in one run, is the figure.

Scale: `acol-eval boxes` over map stores of 1,000 and 4,000 images (500x375, 7x7 maps,
written here in the map store's documented format, no model): seconds and peak memory
of the command. Flat memory means the peak does not grow with the image count.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acol_eval.maps.boxesconfig import BoxesConfig  # noqa: E402
from acol_eval.maps.boxing import run as run_boxes  # noqa: E402
from acol_eval.maps.localization import localize  # noqa: E402
from acol_eval.maps.localizeconfig import LocalizeConfig  # noqa: E402
from acol_eval.util.runtime import default_workers  # noqa: E402


def write_images(folder: Path, count: int, width: int, height: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), np.uint8), (0, 0), 3)
    for i in range(count):
        cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), np.roll(base, 7 * i, axis=1))


def timed(action) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def write_store(run: Path, count: int, width: int = 500, height: int = 375) -> None:
    """A localize run folder of `count` images with smooth random 7x7 top-1 maps."""
    run.mkdir(parents=True)
    rng = np.random.default_rng(1)
    maps = rng.random((count, 7, 7)).astype("<f2")
    maps.tofile(run / "maps.f16")
    (run / "maps.json").write_text(json.dumps(
        {"format": "acol-eval-maps", "version": 1, "dtype": "float16", "height": 7,
         "width": 7, "count": count, "classes": ["a", "b"]}))
    with open(run / "maps_index.csv", "w", newline="") as index, \
            open(run / "predictions.csv", "w", newline="") as predictions:
        rows, preds = csv.writer(index, lineterminator="\n"), csv.writer(
            predictions, lineterminator="\n")
        rows.writerow(["row", "image", "class_id", "class_name", "pred_rank", "is_label"])
        preds.writerow(["image", "width", "height", "label", "pred_1", "score_1", "x0", "y0",
                        "x1", "y1", "cam_threshold"])
        for i in range(count):
            rows.writerow([i, f"img_{i:06d}.jpg", 0, "a", 1, 0])
            preds.writerow([f"img_{i:06d}.jpg", width, height, "", "a", "0.9", 0, 0, width,
                            height, 0.2])


def scale() -> None:
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(time.perf_counter() - t, resource.getrusage("
               "resource.RUSAGE_CHILDREN).ru_maxrss)")
    print(f"acol-eval boxes, 500x375 images, 7x7 maps; load average {os.getloadavg()[0]:.2f}")
    print(f"{'images':>8}{'--workers':>10}{'seconds':>9}{'img/s':>8}{'peak MB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for count in (1000, 4000):
            run = Path(tmp) / f"run{count}"
            write_store(run, count)
            for workers in ("0", "default"):
                command = [sys.executable, str(ROOT / "cli.py"), "boxes", str(run), "--out",
                           str(Path(tmp) / f"new{count}_{workers}"), "--cam-threshold", "0.6"]
                command += ["--workers", workers] if workers != "default" else []
                done = subprocess.run([sys.executable, "-c", wrapper, *command], check=True,
                                      capture_output=True, text=True)
                seconds, peak_kb = done.stdout.split()
                print(f"{count:>8}{workers:>10}{float(seconds):>9.2f}"
                      f"{count / float(seconds):>8.0f}{int(peak_kb) / 1024:>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["ratio", "scale"], default="ratio")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if args.part == "scale":
        scale()
        return
    torch.set_num_threads(args.threads)
    quiet = lambda message: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_images(tmp / "images", args.images, 500, 375)
        load_before = os.getloadavg()
        config = LocalizeConfig(images=str(tmp / "images"), out=str(tmp / "run"),
                                arch=args.arch, weights="none", batch_size=args.batch,
                                workers=args.workers, device="cpu")
        made = timed(lambda: localize(config, quiet))
        in_process = timed(lambda: run_boxes(
            BoxesConfig(run=str(tmp / "run"), out=str(tmp / "b1"), cam_threshold=0.6,
                        workers=0), quiet))
        pooled = timed(lambda: run_boxes(
            BoxesConfig(run=str(tmp / "run"), out=str(tmp / "b4"), cam_threshold=0.6), quiet))
        all_boxes = timed(lambda: run_boxes(
            BoxesConfig(run=str(tmp / "run"), out=str(tmp / "b2"), cam_threshold=0.6,
                        all_boxes=True, workers=0), quiet))
        command = [sys.executable, str(ROOT / "cli.py"), "boxes", str(tmp / "run"),
                   "--out", str(tmp / "b3"), "--cam-threshold", "0.6"]
        as_command = timed(lambda: subprocess.run(command, check=True, capture_output=True))
        command[command.index(str(tmp / "b3"))] = str(tmp / "b5")
        one_process = timed(lambda: subprocess.run([*command, "--workers", "0"], check=True,
                                                   capture_output=True))
        load_after = os.getloadavg()
    print(f"{args.images} images 500x375, {args.arch}, CPU, {args.threads} torch threads, "
          f"{args.workers} decode worker(s); load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after, {os.cpu_count()} cores")
    print(f"{'job':<30}{'seconds':>9}{'img/s':>9}{'share of localize':>19}")
    jobs = (("localize (makes RUN)", made), ("boxes, workers 0", in_process),
            (f"boxes, workers {default_workers()}", pooled),
            ("boxes --all-boxes, workers 0", all_boxes),
            ("acol-eval boxes (command)", as_command),
            ("acol-eval boxes --workers 0", one_process))
    for name, seconds in jobs:
        print(f"{name:<30}{seconds:>9.2f}{args.images / seconds:>9.0f}"
              f"{seconds / made:>18.3f}x")


if __name__ == "__main__":
    main()
