"""Training-step throughput of `acol-eval train` against the bare forward-backward pass.

    .venv/bin/python benchmarks/bench_train.py [--arch resnet18] [--images 128] [--batch 16]

Bare: the torchvision model, cross-entropy, backward and an SGD step (momentum and
weight decay as train's) on tensors already in memory, in the fastest configuration
the tool itself uses: channels_last memory format for the model and the batch (train's
default on CPU as on CUDA), the same batch size and torch threads. acol-eval: `train`
(recipe p, same backbone) over JPEG files on disk, decoding and augmenting in workers;
its images/s is read from metrics.csv for the second epoch (the first warms up and
fills the decoded-image cache). The ratio is taken against the channels_last bare
pass, timed before and after train and averaged (the load of a shared machine
moves); the contiguous one is printed beside it only to show what the layout is worth
(a ratio against a slower reference would say nothing about the tool).
"""

from __future__ import annotations

import argparse
import csv
import os
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

from acol_eval.training.trainconfig import TrainConfig  # noqa: E402
from acol_eval.training.trainer import train  # noqa: E402


def write_folder(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (256, 256, 3), np.uint8), (0, 0), 3)
    for i in range(count):
        folder = root / "train" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), np.roll(base, i, axis=0))


def bare(arch: str, batch: int, steps: int, classes: int, channels_last: bool) -> float:
    """Images/s of forward, loss, backward and SGD step on one batch held in memory."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=classes).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(batch, 3, 224, 224)
    labels = torch.arange(batch) % classes
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    step()  # warm-up (allocator, oneDNN kernels for this layout)
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_folder(data, args.images)
        steps = max(1, args.images // args.batch)
        before = bare(args.arch, args.batch, steps, 2, channels_last=True)
        contiguous = bare(args.arch, args.batch, steps, 2, channels_last=False)
        train(TrainConfig(data=str(data), out=str(Path(tmp) / "run"), arch=args.arch,
                          recipe="p", weights="none", epochs=2, batch_size=args.batch,
                          workers=args.workers, schedule="constant"),
              log=lambda message: None)
        with open(Path(tmp) / "run" / "metrics.csv", newline="") as handle:
            ours = float(list(csv.DictReader(handle))[-1]["images_per_s"])
        # the reference again after train: on a shared machine the load moves, and the
        # mean of the two brackets train's run
        after = bare(args.arch, args.batch, steps, 2, channels_last=True)
    fastest = (before + after) / 2
    print(f"{args.arch} at 224, batch {args.batch}, {torch.get_num_threads()} torch threads, "
          f"{args.images} JPEG images of 256x256; 1-min load {load_before:.1f} -> "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  bare forward-backward-step, channels_last (train's layout): {fastest:.2f} img/s "
          f"(before train {before:.2f}, after {after:.2f})")
    print(f"  bare forward-backward-step, contiguous (not the reference): {contiguous:.2f} img/s")
    print(f"  acol-eval train (recipe p), epoch 2:                       {ours:.2f} img/s "
          f"= {ours / fastest:.3f} of the channels_last bare pass")


if __name__ == "__main__":
    main()
