"""How long a training preset takes on N images of CPU time, as a user runs it.

    nice .venv/bin/python benchmarks/bench_preset_time.py --preset wsol-cub-fsl --images 1000

A preset's cost grows with the number of training images, so the figure of record is
the wall time of `acol-eval train --preset NAME --data cub:FOLDER --val-fraction 0.2`
on a CUB-layout folder of N train-split images (80% trained on, 20% held out for model
choice and calibration; the few-shot presets draw their boxes from that 20%). The
folder is built from a source CUB-layout folder ($ACOL_EVAL_SHARED_DATA/cub10 by
default) by taking its images in order, again and again, under new ids until N are
listed: the content of the pixels does not change what a step costs, only their
number, size and the input size the preset resizes to. Images are hard links when the
source is on the same file system (copies otherwise), so nothing large is written.

It prints the load average before and after (the machine is often shared; the
figure means something only with it) and the minutes per 1,000 images.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from pipeline import acol


def read_rows(path: Path) -> dict[str, list[str]]:
    """A CUB metadata file as {image id: the rest of its line's fields}."""
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, *rest = line.split()
            rows[key] = rest
    return rows


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def build_folder(source: Path, target: Path, images: int) -> None:
    """A CUB-layout folder of `images` train-split images cycled from `source`, plus
    one test image per class so the folder is a complete CUB layout."""
    paths = read_rows(source / "images.txt")
    labels = read_rows(source / "image_class_labels.txt")
    boxes = read_rows(source / "bounding_boxes.txt")
    order = sorted(paths, key=int)
    lines = {name: [] for name in ("images", "image_class_labels", "bounding_boxes",
                                   "train_test_split")}
    test_of_class: set[str] = set()
    plan = [(order[i % len(order)], "1") for i in range(images)]
    for key in order:  # one held-out image per class: the test split is never trained on
        if labels[key][0] not in test_of_class:
            test_of_class.add(labels[key][0])
            plan.append((key, "0"))
    for new_id, (key, is_train) in enumerate(plan, start=1):
        relative = Path(paths[key][0])
        name = f"{relative.parent}/{new_id:06d}_{relative.name}"
        link_or_copy(source / "images" / relative, target / "images" / name)
        lines["images"].append(f"{new_id} {name}")
        lines["image_class_labels"].append(f"{new_id} {labels[key][0]}")
        lines["bounding_boxes"].append(f"{new_id} {' '.join(boxes[key])}")
        lines["train_test_split"].append(f"{new_id} {is_train}")
    for stem, rows in lines.items():
        (target / f"{stem}.txt").write_text("\n".join(rows) + "\n")
    shutil.copyfile(source / "classes.txt", target / "classes.txt")


def main() -> None:
    shared = os.environ.get("ACOL_EVAL_SHARED_DATA")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="wsol-cub-fsl")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--source", default=f"{shared}/cub10" if shared else None,
                        help="a CUB-layout folder [default: $ACOL_EVAL_SHARED_DATA/cub10]")
    parser.add_argument("--workers", default=None,
                        help="train's --workers [default: train's own default]")
    parser.add_argument("--keep", default=None,
                        help="a folder for the data and the run (kept); default: a temporary one")
    args = parser.parse_args()
    if not args.source or not (Path(args.source) / "images.txt").is_file():
        raise SystemExit("--source: a CUB-layout folder (images.txt) is needed")
    if args.images < 1:
        raise SystemExit("--images must be at least 1")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="preset-time-"))
    data, run = work / "data", work / "run"
    if data.exists() or run.exists():
        raise SystemExit(f"{work} already holds data/ or run/; choose an empty --keep folder")
    try:
        build_folder(Path(args.source), data, args.images)
        workers = ["--workers", args.workers] if args.workers is not None else []
        load_before = os.getloadavg()
        began = time.perf_counter()
        acol("train", "--preset", args.preset, "--data", f"cub:{data}", "--val-fraction",
             "0.2", "--out", str(run), *workers)
        minutes = (time.perf_counter() - began) / 60
        load_after = os.getloadavg()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.preset} on {args.images} train-split images ({os.cpu_count()} cores): "
          f"{minutes:.1f} min in all, {minutes * 1000 / args.images:.1f} min per 1,000 images; "
          f"load average (1, 5, 15 min) before {tuple(round(x, 1) for x in load_before)}, "
          f"after {tuple(round(x, 1) for x in load_after)}")


if __name__ == "__main__":
    main()
