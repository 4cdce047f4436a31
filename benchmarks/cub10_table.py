"""Real results on CUB-200-2011, species 001-010 (../shared/data/cub10): p, pp, pn and the
centre baseline with the same backbone, weights and epochs, wsoleval protocol.

    .venv/bin/python benchmarks/cub10_table.py --data ../shared/data/cub10 --out cub10-out

Trains on the official train split (300 images), localises and scores the test
split (243 images), and prints a Markdown table with the time each row took.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pipeline import acol, headline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cub10")
    parser.add_argument("--out", default="cub10-out")
    parser.add_argument("--recipes", default="p,pp,pn")
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--feature-stride", default="16")
    parser.add_argument("--delta", default="0.6")
    parser.add_argument("--head", default="linear")
    parser.add_argument("--lr", default="0.002")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    annotations = f"cub:{args.data}"
    rows = []
    last_run = None
    for recipe in args.recipes.split(","):
        folder = out / recipe
        spent = acol("train", "--data", annotations, "--out", str(folder / "train"),
                     "--arch", args.arch, "--weights", "imagenet", "--recipe", recipe,
                     "--delta", args.delta, "--head", args.head,
                     "--feature-stride", args.feature_stride, "--epochs", str(args.epochs),
                     "--lr", args.lr, "--input-size", "224")
        spent += acol("localize", annotations, "--split", "test", "--out", str(folder / "run"),
                      "--checkpoint", str(folder / "train" / "best.pt"))
        spent += acol("score", str(folder / "run"), "--annotations", annotations,
                      "--split", "test", "--protocol", "wsoleval",
                      "--out", str(folder / "report"), quiet=True)
        rows.append((f"`{recipe}`", folder / "report", spent))
        last_run = folder / "run"
    baseline = acol("score", str(last_run), "--annotations", annotations, "--split", "test",
                    "--protocol", "wsoleval", "--out", str(out / "baseline"),
                    "--baseline", "centre", quiet=True)
    rows.append(("centre baseline", out / "baseline", baseline))
    print()
    print(f"CUB-200-2011 species 001-010, test split, {args.arch} (ImageNet), stride "
          f"{args.feature_stride}, {args.head} head, delta {args.delta}, {args.epochs} epochs, "
          "wsoleval protocol, percent:")
    print(headline(rows))


if __name__ == "__main__":
    main()
