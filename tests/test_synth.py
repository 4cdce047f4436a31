import hashlib

import numpy as np
from PIL import Image

from acol_eval.readers import read_source
from acol_eval.synth import SynthConfig, write_synth

SMALL = SynthConfig(classes=3, train_per_class=3, val_per_class=2, size=64)


def digest(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_files(tmp_path):
    write_synth(tmp_path / "a", SMALL)
    write_synth(tmp_path / "b", SMALL)
    write_synth(tmp_path / "c", SynthConfig(**{**SMALL.__dict__, "seed": 1}))
    first, second, other = (digest(tmp_path / n) for n in "abc")
    assert first == second
    assert first.keys() == other.keys() and first != other


def test_boxes_are_the_tight_boxes_of_the_masks(tmp_path):
    write_synth(tmp_path, SMALL)
    table = read_source(f"cub:{tmp_path}")
    assert table.classes == ["disc_stripes", "square_checker", "triangle_dots"]
    assert len(table.images) == 15 and len(table.boxes) == 15
    for _, box in table.boxes.iterrows():
        mask = np.asarray(Image.open(tmp_path / "masks" / box["image"])) > 0
        ys, xs = np.nonzero(mask)
        assert (box["x0"], box["y0"], box["x1"], box["y1"]) == (
            xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    folder = read_source(str(tmp_path / "images"))
    assert folder.splits == ["train", "val"] and len(folder.images) == 15
