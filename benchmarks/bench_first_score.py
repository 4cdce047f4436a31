"""The first `acol-eval score` of a fresh install against the second, as a new user meets it.

Makes 12 blob maps (224x224 .npy) and a 12-image wsolevaluation metadata folder, then runs
`acol-eval score` twice as subprocesses with an empty numba cache folder of their own
(NUMBA_CACHE_DIR, and XDG_CACHE_HOME for the default), and prints both wall times and the
machine's load average: the first run compiles (or loads) the sweep kernels, the second
finds them cached. On a shared machine read the times beside the load average.

    python benchmarks/bench_first_score.py [--maps 12] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIDE = 224


def blob(rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """A Gaussian blob map and the box it was drawn around (x0, y0, x1, y1)."""
    x0, y0 = (int(v) for v in rng.integers(0, SIDE // 2, 2))
    w, h = (int(v) for v in rng.integers(30, SIDE // 2, 2))
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    cx, cy = x0 + w / 2, y0 + h / 2
    cam = np.exp(-((xx - cx) ** 2 / (2 * (w / 3) ** 2) + (yy - cy) ** 2 / (2 * (h / 3) ** 2)))
    return cam.astype(np.float32), [x0, y0, x0 + w, y0 + h]


def make_inputs(folder: Path, count: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    maps, meta = folder / "maps", folder / "meta"
    (maps / "c").mkdir(parents=True)
    meta.mkdir()
    ids, labels, sizes, boxes = [], [], [], []
    for i in range(count):
        name = f"c/{i:03d}.jpg"
        cam, box = blob(rng)
        np.save(maps / f"c/{i:03d}.npy", cam)
        ids.append(name)
        labels.append(f"{name},0")
        sizes.append(f"{name},{SIDE},{SIDE}")
        boxes.append(f"{name},{','.join(map(str, box))}")
    for file, lines in (("image_ids.txt", ids), ("class_labels.txt", labels),
                        ("image_sizes.txt", sizes), ("localization.txt", boxes)):
        (meta / file).write_text("".join(f"{line}\n" for line in lines))
    return maps, meta


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_score(maps: Path, meta: Path, out: Path, env: dict[str, str]
                ) -> tuple[float, float]:
    """(wall, CPU) seconds of one `acol-eval score` subprocess; the CPU time is the
    fairer figure on a busy machine."""
    command = [sys.executable, "-m", "acol_eval", "score", str(maps), "--annotations",
               f"wsol:{meta}", "--out", str(out)]
    began, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"score failed ({done.returncode}):\n{done.stderr}")
    return seconds, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=12)
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this new folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_first_score_")) if args.keep is None \
        else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    try:
        maps, meta = make_inputs(folder, args.maps)
        cache = folder / "cache"  # fresh and empty: what a new install finds
        env = dict(os.environ, XDG_CACHE_HOME=str(cache))
        env.pop("NUMBA_CACHE_DIR", None)  # the tool's own default, under XDG_CACHE_HOME
        root = Path(__file__).resolve().parent.parent
        env["PYTHONPATH"] = os.pathsep.join(
            [str(root), *filter(None, [env.get("PYTHONPATH")])])
        first = timed_score(maps, meta, folder / "rep1", env)
        second = timed_score(maps, meta, folder / "rep2", env)
        cached = sorted(p.name for p in cache.rglob("*.nbi"))
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"score of {args.maps} maps: first {first[0]:.2f} s ({first[1]:.2f} s CPU), "
              f"second {second[0]:.2f} s ({second[1]:.2f} s CPU) "
              f"({len(cached)} kernel index files cached under {cache}; "
              f"load average {load}, {os.cpu_count()} cores)")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
