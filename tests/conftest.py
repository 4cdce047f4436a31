"""Shared fixtures: tiny data sets made here, the optional real data, CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from acol_eval.synth import background, texture

ROOT = Path(__file__).resolve().parents[1]
SHARED_ENV = "ACOL_EVAL_SHARED_DATA"


def shared_data() -> Path:
    """../shared/data, found through ACOL_EVAL_SHARED_DATA (set by `make test`)."""
    value = os.environ.get(SHARED_ENV)
    if not value or not Path(value).is_dir():
        pytest.skip(f"real data not available ({SHARED_ENV} is not set to a folder)")
    return Path(value)


def write_texture_folder(
    root: Path, train_per_class: int = 40, val_per_class: int = 16, size: int = 64, seed: int = 0
) -> Path:
    """Two classes of squares told apart only by texture (stripes vs checker)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name, kind in (("checker", "checker"), ("stripes", "stripes")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = background(rng, size)
                side = int(rng.integers(size // 3, size // 2 + 1))
                x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
                pattern = texture(kind, side, int(rng.integers(6, 10)), rng.uniform(0, 6.3))
                a, b = rng.uniform(0, 90, 3), rng.uniform(165, 255, 3)
                image[y0:y0 + side, x0:x0 + side] = a + (b - a) * pattern[..., None]
                cv2.imwrite(str(folder / f"{name}_{i:03d}.png"),
                            np.clip(image, 0, 255).astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def texture_folder(tmp_path_factory) -> Path:
    return write_texture_folder(tmp_path_factory.mktemp("textures"))


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run `acol-eval` in a fresh process, as a user would."""
    full_env = {**os.environ, "ACOL_EVAL_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def write_wsol_metadata(folder: Path, images: list[tuple[str, str, int, int]],
                        localization: list[str]) -> Path:
    """A wsolevaluation metadata folder: `images` as (path, class id, width, height),
    `localization` as the lines of localization.txt (boxes or OpenImages mask lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "image_ids.txt").write_text("".join(f"{p}\n" for p, _, _, _ in images))
    (folder / "class_labels.txt").write_text("".join(f"{p},{c}\n" for p, c, _, _ in images))
    (folder / "image_sizes.txt").write_text(
        "".join(f"{p},{w},{h}\n" for p, _, w, h in images))
    (folder / "localization.txt").write_text("".join(f"{line}\n" for line in localization))
    return folder
