"""Which centre map gives Choe et al.'s CUB centre-baseline figure?

Writes the centre Gaussian of `acol-eval score --baseline centre` (sigma a fraction of
each side) as wsolevaluation-named .npy maps for every image of the full CUB test
metadata (5,794 images, ../shared/data/wsol-metadata/CUB/test), then scores them with
`acol-eval score --protocol wsoleval` for several sigmas and map sizes, and a Gaussian
that is isotropic in each image's own pixels. Prints MaxBoxAccV2 and MaxBoxAcc (V1).

    .venv/bin/python benchmarks/centre_baseline_cub.py [--metadata DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acol_eval.data.readers import read_source  # noqa: E402
from acol_eval.maps.maps import centre_gaussian_map  # noqa: E402


def isotropic_in_pixels(width: float, height: float, sigma: float, side: int = 56):
    """A Gaussian round in the image's own pixels (sigma a fraction of the shorter side),
    drawn on a side x side grid that the protocol stretches back to the image."""
    ys = (np.arange(side) - (side - 1) / 2) / side * height
    xs = (np.arange(side) - (side - 1) / 2) / side * width
    s = sigma * min(width, height)
    return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * s**2))


def score(maps: Path, metadata: Path, out: Path) -> pd.Series:
    command = [sys.executable, str(ROOT / "cli.py"), "score", str(maps), "--annotations",
               f"wsol:{metadata}", "--out", str(out), "--protocol", "wsoleval"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    summary = pd.read_csv(out / "summary.csv").set_index("metric")["value"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metadata", type=Path,
                        default=ROOT.parent / "shared/data/wsol-metadata/CUB/test")
    args = parser.parse_args()
    images = read_source(f"wsol:{args.metadata}").images
    variants = {f"relative to each side, sigma {s}, {n}x{n} map":
                (lambda w, h, s=s, n=n: centre_gaussian_map(n, n, s))
                for s in (0.15, 0.25, 0.5, 1.0) for n in (7, 28)}
    variants.update({f"isotropic in image pixels, sigma {s} x shorter side":
                     (lambda w, h, s=s: isotropic_in_pixels(w, h, s)) for s in (0.25, 0.5)})
    print(f"{len(images)} CUB test images; wsoleval protocol")
    print("| centre map | MaxBoxAccV2 | @30 | @50 | @70 | MaxBoxAcc (V1) |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, make) in enumerate(variants.items()):
            maps = Path(tmp) / f"maps{k}"
            for row in images.itertuples():
                path = maps / f"{row.image}.npy"  # wsolevaluation's naming: extension kept
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, make(float(row.width), float(row.height)).astype(np.float32))
            v = score(maps, args.metadata, Path(tmp) / f"report{k}")
            print(f"| {name} | {v['max_box_acc_v2']:.2f} | {v['max_box_acc_v2@30']:.2f} | "
                  f"{v['max_box_acc_v2@50']:.2f} | {v['max_box_acc_v2@70']:.2f} | "
                  f"{v['max_box_acc']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
