"""The region metrics' cost on top of score's box sweep (the target: under 50% more).

score's first pass over N CAM-like maps of wsolevaluation's CUB test metadata (the same
maps as bench_score.py makes) is timed twice in this process, on one core (workers 0):
the box sweep alone, and the box sweep with all seven region metrics (--region-metrics
all), in alternation, best of --repeat. Prints both times, per map, and the ratio.
Memory: each image's values go into its fixed-size first-pass record on disk, streamed
as the sweep streams its own (nothing per image is kept in memory).

    .venv/bin/python benchmarks/bench_region_metrics.py --images 5000
    .venv/bin/python benchmarks/bench_region_metrics.py --images 5000 --protocol native
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_score import load_average, make_maps  # noqa: E402

from acol_eval.data.readers import read_wsol  # noqa: E402
from acol_eval.metrics.regionmetrics import region_names  # noqa: E402
from acol_eval.scoring.passes import PassSetup, first_pass, with_region  # noqa: E402
from acol_eval.scoring.protocols import get_protocol  # noqa: E402
from acol_eval.scoring.scoring import ScoreConfig, load_inputs, region_options  # noqa: E402


def first_pass_seconds(maps: Path, meta_dir: Path, protocol: str, region: str,
                       interval: float) -> tuple[float, int]:
    """(seconds of score's first pass on one core, images) with `region` metrics."""
    config = ScoreConfig(run=str(maps), annotations=f"wsol:{meta_dir}", out="unused",
                         protocol=protocol, interval=interval, workers=0,
                         allow_missing=True, region_metrics=region)
    scorer = get_protocol(config.protocol)
    inputs = load_inputs(config, scorer)
    thresholds = np.arange(0, 1, interval)
    options = region_options(config)
    setup = PassSetup(inputs.source, scorer, thresholds, config.iou,
                      with_region(scorer.record_dtype(len(thresholds)), options), options)
    start = time.perf_counter()
    passed = first_pass(inputs, setup, 0)
    took = time.perf_counter() - start
    passed.records.close()
    return took, len(inputs.table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--protocol", default="wsoleval")
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    data = Path(os.environ.get("ACOL_EVAL_SHARED_DATA", ROOT.parent / "shared" / "data"))
    meta_dir = data / "wsol-metadata" / "CUB" / "test"
    metadata = read_wsol(meta_dir)
    with tempfile.TemporaryDirectory() as tmp:
        maps = Path(tmp) / "maps"
        make_maps(metadata, args.images, maps)
        first_pass_seconds(maps, meta_dir, args.protocol, "all", args.interval)  # warm up
        sweep, both = [], []
        for _ in range(args.repeat):
            took, count = first_pass_seconds(maps, meta_dir, args.protocol, "", args.interval)
            sweep.append(took)
            both.append(first_pass_seconds(maps, meta_dir, args.protocol, "all",
                                           args.interval)[0])
    alone, with_metrics = min(sweep), min(both)
    print(f"{count} maps of CUB test, protocol {args.protocol}, "
          f"{len(np.arange(0, 1, args.interval))} thresholds, one core, best of "
          f"{args.repeat}; metrics: {', '.join(region_names())}")
    print(f"box sweep alone:        {alone:7.2f} s  {alone / count * 1e3:6.3f} ms/map")
    print(f"box sweep + 7 metrics:  {with_metrics:7.2f} s  "
          f"{with_metrics / count * 1e3:6.3f} ms/map")
    print(f"ratio: {with_metrics / alone:.3f} (the metrics add "
          f"{(with_metrics / alone - 1) * 100:.1f}% on top of the sweep)  load average "
          f"{load_average()}", flush=True)


if __name__ == "__main__":
    main()
