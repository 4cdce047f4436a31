"""The files a user's scripts read stay byte for byte what they were: predictions.csv of
localize, summary.csv and per_image.csv of score (both protocols), leaderboard.csv and
pairs.csv of compare, on a small synthetic set with a seeded model, against copies kept
in tests/golden/. A refactor that changes any number, order or format fails here.

The copies were written by this test with ACOL_EVAL_WRITE_GOLDEN=1; rewrite them only for
a change of output that is meant and documented. One torch thread: a convolution's float
sums may round otherwise on another core count, which is not what this guards.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import make_checkpoint, run_cli

THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cli(*args: str) -> None:
    result = run_cli(*args, env=THREADS)
    assert result.returncode == 0, (args[0], result.stderr[-2000:])


GOLDEN = Path(__file__).parent / "golden"
CLASSES = ["disc_stripes", "square_checker", "triangle_dots", "cross_diagonal"]  # synth's 4
FILES = {  # golden name -> path under the work folder
    "predictions.csv": "run/predictions.csv",
    "wsoleval_summary.csv": "wsoleval/summary.csv",
    "wsoleval_per_image.csv": "wsoleval/per_image.csv",
    "native_summary.csv": "native/summary.csv",
    "native_per_image.csv": "native/per_image.csv",
    "centre_summary.csv": "centre/summary.csv",
    "leaderboard.csv": "compare/leaderboard.csv",
    "pairs.csv": "compare/pairs.csv",
}


def _outputs(work: Path) -> dict[str, bytes]:
    data = work / "synth"
    cli("synth", str(data), "--classes", "4", "--train-per-class", "1",
        "--val-per-class", "6", "--size", "96")
    make_checkpoint(work / "m.pt", recipe="pp", seed=3, classes=CLASSES)
    source = f"cub:{data}"
    cli("localize", source, "--split", "test", "--out", str(work / "run"),
        "--checkpoint", str(work / "m.pt"), "--workers", "0", "--device", "cpu")
    common = ["--annotations", source, "--split", "test", "--workers", "0",
              "--cam-curve-interval", "0.01"]
    cli("score", str(work / "run"), "--out", str(work / "wsoleval"), *common)
    cli("score", str(work / "run"), "--out", str(work / "native"), "--protocol",
        "native", *common)
    cli("score", str(work / "run"), "--out", str(work / "centre"), "--baseline",
        "centre", *common)
    cli("compare", str(work / "wsoleval"), str(work / "centre"), "--out",
        str(work / "compare"), "--bootstrap", "1000")
    return {name: (work / relative).read_bytes() for name, relative in FILES.items()}


def _portable(name: str, content: bytes, work: Path) -> bytes:
    """The work folder's path appears in leaderboard.csv's report column: make it
    relative so the copies do not depend on where the test ran."""
    return content.replace(str(work).encode() + b"/", b"")


@pytest.mark.slow
def test_outputs_equal_the_golden_copies_byte_for_byte(tmp_path):
    found = {name: _portable(name, content, tmp_path)
             for name, content in _outputs(tmp_path).items()}
    if os.environ.get("ACOL_EVAL_WRITE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        for name, content in found.items():
            (GOLDEN / name).write_bytes(content)
    differ = [name for name, content in found.items()
              if (GOLDEN / name).read_bytes() != content]
    assert not differ, f"outputs differ from tests/golden/: {differ}"
