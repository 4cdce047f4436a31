"""What makes CPU training faster? One training step of the search's model in train's
own configuration against the alternatives: the contiguous memory layout, frozen batch
norm, fewer torch threads.

    .venv/bin/python benchmarks/bench_train_cpu.py [--arch mobilenet_v2] [--recipe pn]
    .venv/bin/python benchmarks/bench_train_cpu.py --forward --arch resnet50 --stride 32

The step is `train`'s own: `ACoL(images, labels)`, `acol_loss`, backward, SGD step, on
tensors already in memory (the decoded-image cache makes data loading ~free after
epoch 1, so this is what later epochs cost). Variants run interleaved, round after
round, and each variant's median step time is compared with that of train's default
(channels_last on CPU as on CUDA, batch norm trained, every core's torch thread) from
the same rounds, so a load change during the run hits every variant alike; a ratio
below 1 is what the alternative would lose. The load average is printed beside the
figures. `--forward` does the same for localize's backbone pass (channels_last, its
layout, against contiguous).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acol_eval.models.losses import acol_loss  # noqa: E402
from acol_eval.models.model import build_model  # noqa: E402


def make_step(args: argparse.Namespace, channels_last: bool = False, frozen_bn: bool = False
              ) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_model(args.arch, 10, args.recipe, [0.8], "linear", args.stride, None).train()
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.arange(args.batch) % 10
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if frozen_bn:  # ImageNet statistics kept, BN affine parameters not trained
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
                module.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        output = model(images, labels)
        total, _ = acol_loss(args.recipe, [z.float() for z in output.logits], labels)
        total.backward()
        optimizer.step()

    return step


def make_forward(args: argparse.Namespace, channels_last: bool = False) -> Callable[[], None]:
    """localize's backbone pass (inference mode), in either memory layout."""
    torch.manual_seed(0)
    model = build_model(args.arch, 10, args.recipe, [0.8], "linear", args.stride, None).eval()
    images = torch.randn(args.batch, 3, args.size, args.size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.inference_mode():
            model.backbone(images)

    return forward


def timed(step: Callable[[], None], threads: int, count: int) -> list[float]:
    torch.set_num_threads(threads)
    step()  # warm-up (allocator, oneDNN kernels for this layout)
    found = []
    for _ in range(count):
        began = time.perf_counter()
        step()
        found.append(time.perf_counter() - began)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--recipe", default="pn")
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--forward", action="store_true",
                        help="time localize's forward pass (both layouts) instead")
    args = parser.parse_args()
    cores = torch.get_num_threads()
    variants = {
        "forward, channels_last (localize's)": (make_forward(args, channels_last=True), cores),
        "forward, contiguous": (make_forward(args), cores),
    } if args.forward else {
        "train's default (channels_last)": (make_step(args, channels_last=True), cores),
        "contiguous memory layout": (make_step(args), cores),
        "frozen batch norm": (make_step(args, channels_last=True, frozen_bn=True), cores),
        f"1 torch thread (of {cores})": (make_step(args, channels_last=True), 1),
    }
    print(f"{args.arch} {args.recipe} stride {args.stride} at {args.size}, batch {args.batch}; "
          f"{cores} threads; load average before: {os.getloadavg()[0]:.1f}")
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (step, threads) in variants.items():
            times[name] += timed(step, threads, args.steps)
    torch.set_num_threads(cores)
    base = statistics.median(times[next(iter(variants))])
    for name, found in times.items():
        median = statistics.median(found)
        print(f"  {name:34s} {args.batch / median:6.1f} img/s  ({base / median:.2f}x the first)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
