"""benchmarks/bench_preset_time.py builds the N-image CUB-layout folder it times a preset on."""

from __future__ import annotations

import sys
from pathlib import Path

from acol_eval.data.readers import read_source
from acol_eval.data.synth import SynthConfig, write_synth

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_preset_time import build_folder  # noqa: E402


def test_the_folder_cycles_the_source_into_n_train_images_and_one_test_image_per_class(tmp_path):
    source = tmp_path / "source"
    write_synth(source, SynthConfig(classes=3, train_per_class=2, val_per_class=1, size=64))
    build_folder(source, tmp_path / "big", 25)  # 9 source images, so each comes 2-3 times
    built = read_source(f"cub:{tmp_path / 'big'}").images
    original = read_source(f"cub:{source}").images
    assert built["split"].value_counts().to_dict() == {"train": 25, "test": 3}
    train = built[built["split"] == "train"].reset_index(drop=True)
    assert train["label"].value_counts().to_dict() == {"disc_stripes": 9, "square_checker": 8,
                                                       "triangle_dots": 8}
    # image 10 is the source's first image again, under its own name, with its box and size
    first = original.iloc[0]
    tenth = train.iloc[9]
    assert tenth["image"] != first["image"] and tenth["image"].endswith(
        Path(first["image"]).name)
    assert (tenth["width"], tenth["height"], tenth["label"]) == (
        first["width"], first["height"], first["label"])
    assert (tmp_path / "big" / "images" / tenth["image"]).read_bytes() == (
        source / "images" / first["image"]).read_bytes()
