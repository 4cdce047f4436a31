"""Epoch time of `acol-eval train` with and without the decoded-image cache.

    .venv/bin/python benchmarks/bench_train_cache.py [--per-class 8] [--arch resnet18]

On a small subset of real photos (../shared/data: fruits, up to 4,600 px, and
cub10, up to 500 px) linked into an ImageFolder tree, `train` runs two epochs
with `--cache off` (every epoch decodes every photo) and two with `--cache
memory` (epoch 1 decodes and fills the cache, epoch 2 reads it). The figures
are the training seconds and images/s of each epoch from metrics.csv, all in
one run on one machine; the load average is printed beside them because the
machine may be shared.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from acol_eval.training.trainconfig import TrainConfig  # noqa: E402
from acol_eval.training.trainer import train  # noqa: E402

SHARED = Path(os.environ.get("ACOL_EVAL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def link_fruits(target: Path, per_class: int) -> None:
    """The largest fruits/train/<kind>_<n>.jpg files -> target/train/<kind>/ (the big
    photos are where decoding costs; mixed photos left out)."""
    for kind in ("apple", "banana", "orange"):
        photos = sorted((SHARED / "fruits" / "train").glob(f"{kind}_*.jpg"),
                        key=lambda p: (-p.stat().st_size, p.name))[:per_class]
        folder = target / "train" / kind
        folder.mkdir(parents=True)
        for photo in photos:
            (folder / photo.name).symlink_to(photo)


def link_cub10(target: Path, per_class: int) -> None:
    for species in sorted((SHARED / "cub10" / "images").iterdir()):
        folder = target / "train" / species.name
        folder.mkdir(parents=True)
        for photo in sorted(species.glob("*.jpg"))[:per_class]:
            (folder / photo.name).symlink_to(photo)


def epochs(data: Path, out: Path, cache: str, args: argparse.Namespace) -> list[dict]:
    train(TrainConfig(data=str(data), out=str(out), arch=args.arch, recipe="pp",
                      weights="none", epochs=2, batch_size=args.batch, workers=args.workers,
                      schedule="constant", cache=cache), log=lambda message: None)
    with open(out / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def loader_seconds(data: Path) -> tuple[float, float, float]:
    """Seconds to produce every training tensor: uncached (best of 2 passes), the
    cache-filling pass, cached (best of 2). The data side alone, in this process with one
    torch thread as a loader worker has, no network: the least noisy figure."""
    from acol_eval.data.datasets import (
        DecodedCache,
        LabelledImages,
        labelled_items,
        train_transform,
    )
    from acol_eval.data.readers import read_source

    table = read_source(str(data))
    items = labelled_items(table, "train", table.classes)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    timings = []
    for cache in (None, DecodedCache(256, len(items))):
        dataset = LabelledImages(data, items, train_transform(224, 256), cache)
        for _ in range(2 if cache is None else 3):
            began = time.perf_counter()
            for index in range(len(dataset)):
                dataset[index]
            timings.append(time.perf_counter() - began)
    torch.set_num_threads(threads)
    return min(timings[:2]), timings[2], min(timings[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0,
                        help="loader processes of the timed `train` runs (0: decode in the "
                             "main process, so decoding is not hidden behind the network)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"no real data at {SHARED} (set ACOL_EVAL_SHARED_DATA)")
    print(f"{args.arch} at 224 (resize 256), batch {args.batch}, recipe pp, "
          f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, link, per_class in (("fruits", link_fruits, args.per_class),
                                      ("cub10", link_cub10, max(1, args.per_class // 3))):
            data = Path(tmp) / name
            link(data, per_class)
            plain, filling, cached = loader_seconds(data)
            print(f"  {name:6s} data side only (decode + augment, one process): uncached "
                  f"{plain:.2f} s/epoch, cache filling {filling:.2f} s, cached {cached:.2f} s "
                  f"= {plain / cached:.0f}x faster")
            for cache in ("off", "memory"):
                rows = epochs(data, Path(tmp) / f"{name}-{cache}", cache, args)
                figures = ", ".join(f"epoch {r['epoch']} {float(r['seconds']):.1f} s "
                                    f"({float(r['images_per_s']):.1f} img/s)" for r in rows)
                count = round(float(rows[0]["images_per_s"]) * float(rows[0]["seconds"]))
                print(f"  {name:6s} {count:3d} images, --cache {cache:6s}: {figures}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
