"""Throughput of each `localize --method` relative to `model` (the model's own fused maps).

    .venv/bin/python benchmarks/bench_methods.py                      # mobilenet_v2, 224, CPU
    .venv/bin/python benchmarks/bench_methods.py --images 32 --batch-size 16 --threads 4

Localize's own per-batch step (`localizerows.infer`, under inference mode, with the
model and the batch in channels_last as localize holds them), on tensors already in
memory: a batch of images through the model (top-k prediction from the first
classifier), then the maps of the top-k classes and the label's: `model` from the
features of that pass, a post-hoc method by `method_maps` (one forward and one
backward per class rank). Every method, `model` included, runs in that same fastest
configuration, so the ratios compare the methods and not memory layouts. Random
weights: speed does not depend on them. Every method runs in one process, in rounds
that alternate the methods, so a change of machine load hits them alike; the figure
is the ratio of images per second to `model`'s in the same run. Score-CAM needs one
forward pass per feature channel per image (1,280 on MobileNetV2), so it gets
`--scorecam-images` only.

Measured figures, with the command and the load of each run: docs/results.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acol_eval.maps.localizerows import infer  # noqa: E402
from acol_eval.models.methods import MapMethod  # noqa: E402
from acol_eval.models.model import plain_cam_model  # noqa: E402


def localize_batch(model, images: torch.Tensor, method: MapMethod, top_k: int) -> None:
    """What localize does per batch: predict, then maps of the top-k classes and the
    label's (unknown here: class 0, as localize does for unlabelled images)."""
    with torch.inference_mode():
        infer(model, images, [-1] * len(images), top_k, method)


def seconds_per_image(model, images: torch.Tensor, method: MapMethod, batch: int,
                      top_k: int) -> float:
    began = time.perf_counter()
    for start in range(0, len(images), batch):
        localize_batch(model, images[start:start + batch], method, top_k)
    return (time.perf_counter() - began) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scorecam-images", type=int, default=1)
    parser.add_argument("--methods", default=",".join(m.value for m in MapMethod))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = plain_cam_model(args.arch, None).eval()
    model.to(memory_format=torch.channels_last)  # as localize holds it (infer converts images)
    methods = [MapMethod.parse(name) for name in args.methods.split(",")]
    if MapMethod.MODEL not in methods:
        methods.insert(0, MapMethod.MODEL)
    images = torch.rand(args.images, 3, args.size, args.size)
    localize_batch(model, images[:2], MapMethod.GRADCAM, args.top_k)  # warm-up
    timings: dict[MapMethod, list[float]] = {m: [] for m in methods}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for method in methods:
            count = args.scorecam_images if method is MapMethod.SCORECAM else args.images
            timings[method].append(
                seconds_per_image(model, images[:count], method, args.batch_size, args.top_k))
    load_after = os.getloadavg()[0]
    base = min(timings[MapMethod.MODEL])
    print(f"{args.arch} at {args.size}, batch {args.batch_size}, top-{args.top_k} maps "
          "and the label's, channels_last as localize, "
          f"{args.threads} thread(s), best of {args.rounds} rounds; "
          f"1-min load {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores")
    print(f"{'method':<20}{'images/s':>10}{'vs model':>10}")
    for method in methods:
        best = min(timings[method])
        print(f"{method.value:<20}{1 / best:>10.3g}{base / best:>10.3g}")


if __name__ == "__main__":
    main()
