"""`make demo`: the whole product on the embedded data set, as a new user would run it.

    .venv/bin/python benchmarks/demo.py --out demo-out

synth -> train (ACoL `pn` on the offline ImageNet MobileNetV2) -> localize the
validation split -> score it (wsoleval protocol) and the centre baseline ->
print the headline table and where everything is.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from pipeline import acol, headline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-out")
    # pn localised best on the synthetic set: MaxBoxAccV2 59.3 vs p 56.0 and pp 42.3
    parser.add_argument("--recipe", default="pn")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    data, train, run = out / "data", out / "train", out / "localize"
    acol("synth", str(data))
    spent = acol("train", "--data", str(data / "images"), "--out", str(train),
                 "--arch", "mobilenet_v2", "--weights", "imagenet", "--recipe", args.recipe,
                 "--feature-stride", "16", "--input-size", "160", "--epochs", str(args.epochs),
                 "--lr", "0.002")
    annotations = f"cub:{data}"
    spent += acol("localize", annotations, "--split", "test", "--out", str(run),
                  "--checkpoint", str(train / "best.pt"), "--overlays", str(out / "overlays"))
    spent += acol("score", str(run), "--annotations", annotations, "--split", "test",
                  "--out", str(out / "report"), quiet=True)
    baseline = acol("score", str(run), "--annotations", annotations, "--split", "test",
                    "--out", str(out / "baseline"), "--baseline", "centre", quiet=True)
    print()
    print(f"validation split of the synthetic set ({annotations}), wsoleval protocol, percent:")
    print(headline([(f"ACoL {args.recipe}, MobileNetV2 (ImageNet), stride 16",
                     out / "report", spent),
                    ("centre Gaussian baseline", out / "baseline", baseline)]))
    print()
    print(f"checkpoint:   {train / 'best.pt'} (metrics per epoch: {train / 'metrics.csv'})")
    print(f"predictions:  {run / 'predictions.csv'}; maps: {run / 'maps.f16'} "
          f"(index {run / 'maps_index.csv'})")
    print(f"overlays:     {out / 'overlays'}")
    print(f"reports:      {out / 'report'} (summary, per class, per image, curve.png)")
    print(f"demo took {(time.perf_counter() - began) / 60:.1f} min")


if __name__ == "__main__":
    main()
