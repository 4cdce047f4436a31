"""Localize throughput against the bare forward pass, and peak memory against image count.

    .venv/bin/python benchmarks/bench_localize.py            # both parts
    .venv/bin/python benchmarks/bench_localize.py --part speed --images 128

Speed: the same resnet50 (random weights: speed does not depend on them), the
same batch size and torch threads. "Bare" is torchvision's forward pass on
tensors already in memory under inference mode, in the memory layout localize
itself uses (channels_last, on CPU as on CUDA): the fastest reference, so the
ratio says what the tool's own work costs; it is timed before and after the
localize runs and their mean taken, since the load of a shared machine moves. The
contiguous bare pass is printed
beside it only to show what the layout is worth. "localize" is the whole
`localize()` call over JPEG files on disk (decode, resize, forward, fused maps,
boxes, writing the run).
Memory: peak RSS of `acol-eval localize` processes over 1,000 and 10,000 small
images (a small model at a small input, so that 10,000 images run in minutes).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acol_eval.data.datasets import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from acol_eval.maps.localization import localize  # noqa: E402
from acol_eval.maps.localizeconfig import LocalizeConfig  # noqa: E402
from acol_eval.models.checkpoint import save_checkpoint  # noqa: E402
from acol_eval.models.model import build_model  # noqa: E402


def write_images(folder: Path, count: int, width: int, height: int, ext: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), np.uint8), (0, 0), 3)
    for i in range(count):
        cv2.imwrite(str(folder / f"img_{i:05d}{ext}"), np.roll(base, i, axis=1))


def bare_forward(batch: int, count: int, threads: int, channels_last: bool = True) -> float:
    """Images/s of resnet50's forward pass on one batch held in memory."""
    torch.set_num_threads(threads)
    model = torchvision.models.resnet50(weights=None).eval()
    tensors = torch.randn(batch, 3, 224, 224)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        tensors = tensors.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(tensors)  # warm-up (allocator, oneDNN kernels for this layout)
        began = time.perf_counter()
        done = 0
        while done < count:
            model(tensors)
            done += batch
    return done / (time.perf_counter() - began)


def localize_speed(folder: Path, out: Path, batch: int, workers: int, threads: int) -> None:
    torch.set_num_threads(threads)
    config = LocalizeConfig(images=str(folder), out=str(out), arch="resnet50", weights="none",
                            batch_size=batch, workers=workers, device="cpu")
    localize(config, log=lambda m: None)


def speed(args: argparse.Namespace) -> None:
    """Whole-command and steady-state throughput against the bare forward pass.

    Steady state: (time for N images - time for N/4) / (3N/4): the fixed costs of
    a run (building the model, starting the decode worker, merging the files)
    cancel out, leaving the per-image cost of the sweep itself.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder, quarter = Path(tmp) / "images", Path(tmp) / "quarter"
        write_images(folder, args.images, 500, 375, ".jpg")
        write_images(quarter, args.images // 4, 500, 375, ".jpg")
        load_before = os.getloadavg()[0]
        before = bare_forward(args.batch, args.images, args.threads)
        contiguous = bare_forward(args.batch, args.images, args.threads, channels_last=False)
        rows = []
        for workers in args.workers:
            began = time.perf_counter()
            localize_speed(quarter, Path(tmp) / f"q{workers}", args.batch, workers, args.threads)
            small = time.perf_counter() - began
            began = time.perf_counter()
            localize_speed(folder, Path(tmp) / f"run{workers}", args.batch, workers,
                           args.threads)
            full = time.perf_counter() - began
            steady = (args.images - args.images // 4) / (full - small)
            rows.append((workers, args.images / full, steady))
        # the reference again after the runs: on a shared machine the load moves, and
        # the mean of the two brackets localize's runs
        after = bare_forward(args.batch, args.images, args.threads)
        bare = (before + after) / 2
        print(f"resnet50 at 224, batch {args.batch}, {args.threads} torch threads, "
              f"{args.images} JPEG images of 500x375 (and {args.images // 4} for the "
              f"steady state); 1-min load {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
        print(f"  bare forward on tensors in memory, channels_last (localize's layout): "
              f"{bare:.2f} img/s (before {before:.2f}, after {after:.2f})")
        print(f"  bare forward on tensors in memory, contiguous (not the reference): "
              f"{contiguous:.2f} img/s")
        for workers, whole, steady in rows:
            print(f"  localize, {workers} decode worker(s): whole command {whole:.2f} img/s "
                  f"= {whole / bare:.3f} of bare; steady state {steady:.2f} img/s "
                  f"= {steady / bare:.3f} of bare (channels_last)")


def peak_rss_mb(command: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the maximum over all waited-for children: run the
    # smaller case first so that a larger second value is the second run's own.
    return max(after, before) / 1024


def memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = build_model("resnet18", 10, "pp", [0.6], "linear", 32)
        save_checkpoint(tmp / "small.pt", {
            "arch": "resnet18", "recipe": "pp", "deltas": [0.6], "head": "linear",
            "feature_stride": 32, "classes": [f"c{i}" for i in range(10)], "input_size": 64,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "state_dict": model.state_dict(), "epoch": 0})
        results = []
        for count in args.counts:
            folder = tmp / f"images{count}"
            write_images(folder, count, 48, 40, ".png")
            began = time.perf_counter()
            peak = peak_rss_mb([sys.executable, str(ROOT / "cli.py"), "localize", str(folder),
                                "--out", str(tmp / f"run{count}"), "--checkpoint",
                                str(tmp / "small.pt"), "--batch-size", "64",
                                "--workers", "1"])
            results.append((count, peak, time.perf_counter() - began))
        print("peak RSS of acol-eval localize (resnet18 recipe pp at 64x64, top-5 maps):")
        for count, peak, seconds in results:
            print(f"  {count:6d} images: {peak:8.1f} MB ({seconds:.0f} s)")
        if len(results) > 1:
            print(f"  difference: {results[-1][1] - results[0][1]:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["speed", "memory", "all"], default="all")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    if args.part in ("speed", "all"):
        speed(args)
    if args.part in ("memory", "all"):
        memory(args)


if __name__ == "__main__":
    main()
