"""The compiled sweep kernels of this tree against those of a git revision, in one process.

Loads acol_eval/metrics/sweep.py as it is at REV (`git show`) as a module of its own
beside this tree's, with numba's cache in a fresh temporary folder (nothing stale, both
compiled here), checks that both give the same outputs on every map, then times
`wsoleval_sweep` and the native protocol's `sweep_components` (100 thresholds) on the
same CAM-like maps as bench_score.py, in alternating blocks of maps and rounds whose
order flips, in this thread's CPU time (other processes' load moves it less than wall
time). Prints the median ms/map of each side, the median per-round ratio and the load
average. `--control` also loads REV a second time: its ratio to REV is the noise.

    .venv/bin/python benchmarks/bench_sweep.py --against main --control
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)
os.environ["NUMBA_CACHE_DIR"] = str(SCRATCH / "numba")  # before numba's import
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from bench_score import make_maps  # noqa: E402

from acol_eval.data.readers import read_wsol  # noqa: E402
from acol_eval.maps.boxes import native_level_image, upsample_map, wsoleval_uint8  # noqa: E402
from acol_eval.metrics.metrics import scale_boxes_wsoleval  # noqa: E402

NATIVE_THRESHOLDS = np.arange(0, 1, 0.01)
SIDE = 224


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def revision_module(revision: str, name: str):
    source = subprocess.run(["git", "-C", str(ROOT), "show",
                             f"{revision}:acol_eval/metrics/sweep.py"],
                            capture_output=True, text=True, check=True).stdout
    path = SCRATCH / f"{name}.py"
    path.write_text(source)
    return load_module(name, path)


def inputs(data: Path, count: int):
    """Per map: (uint8 map, wsoleval boxes) and (native level image, boxes in its frame)."""
    metadata = read_wsol(data / "wsol-metadata" / "CUB" / "test")
    folder = SCRATCH / "maps"
    ids = make_maps(metadata, count, folder)
    sizes = metadata.images.set_index("image")
    boxes = metadata.boxes.groupby("image")
    wsoleval, native = [], []
    for image in ids:
        heat = np.load(folder / (image.rsplit(".", 1)[0] + ".npy")).astype(np.float64)
        gt = boxes.get_group(image)[["x0", "y0", "x1", "y1"]].to_numpy()
        width, height = sizes.at[image, "width"], sizes.at[image, "height"]
        wsoleval.append((wsoleval_uint8(heat), np.asarray(
            scale_boxes_wsoleval(gt, width, height), np.int64)))
        levels = native_level_image(upsample_map(heat, SIDE, SIDE), NATIVE_THRESHOLDS)
        native.append((levels.astype(np.int32),
                       (gt * SIDE // np.array([width, height, width, height])).astype(np.int64)))
    return wsoleval, native


def outputs(module, wsoleval, native) -> list[np.ndarray]:
    found = [module.wsoleval_sweep(u8, gt) for u8, gt in wsoleval]
    found += [module.sweep_components(levels, len(NATIVE_THRESHOLDS), gt, False)
              for levels, gt in native]
    return [np.concatenate([np.asarray(a, np.float64).ravel() for a in out]) for out in found]


def timed(module, wsoleval, native) -> tuple[float, float]:
    start = time.thread_time()
    for u8, gt in wsoleval:
        module.wsoleval_sweep(u8, gt)
    middle = time.thread_time()
    for levels, gt in native:
        module.sweep_components(levels, len(NATIVE_THRESHOLDS), gt, False)
    return middle - start, time.thread_time() - middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", default="main", help="git revision to compare with")
    parser.add_argument("--maps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=5, help="maps per timed block")
    parser.add_argument("--control", action="store_true",
                        help="load the revision twice: an A/A ratio, the noise")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    wsoleval, native = inputs(Path(args.data), args.maps)
    sides = {args.against: revision_module(args.against, "sweep_revision"),
             "this tree": load_module("sweep_tree", ROOT / "acol_eval/metrics/sweep.py")}
    if args.control:
        sides[f"{args.against} again"] = revision_module(args.against, "sweep_control")
    names = list(sides)
    reference = outputs(sides[names[0]], wsoleval, native)  # compiles too
    for name in names[1:]:
        same = all(np.array_equal(a, b) for a, b in
                   zip(reference, outputs(sides[name], wsoleval, native)))
        print(f"{name}: outputs {'equal to' if same else 'DIFFERENT from'} {names[0]}'s")
    times = {name: np.zeros((args.rounds, 2)) for name in names}
    for round_ in range(args.rounds):
        for start in range(0, args.maps, args.block):
            block = slice(start, start + args.block)
            flip = (round_ + start // args.block) % 2
            for name in (names[::-1] if flip else names):
                times[name][round_] += timed(sides[name], wsoleval[block], native[block])
    per_map = {name: times[name] / args.maps * 1e3 for name in names}
    for name in names:
        wsol, nat = np.median(per_map[name], axis=0)
        print(f"{name:>16}: wsoleval_sweep {wsol:.3f} ms/map, sweep_components {nat:.3f} "
              "ms/map (median of rounds, CPU time)")
    for name in names[1:]:
        ratio = np.median(per_map[name] / per_map[names[0]], axis=0)
        print(f"{name} / {names[0]}: wsoleval {ratio[0]:.3f}, native {ratio[1]:.3f} "
              "(median per-round ratio)")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
