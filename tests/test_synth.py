import hashlib

import numpy as np
from PIL import Image

from acol_eval.data.readers import read_source
from acol_eval.data.synth import SynthConfig, write_synth

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


# ---------------------------------------------------------------- odd input and existing files

import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from acol_eval.util.errors import AcolError  # noqa: E402
from cli import main  # noqa: E402

BAD = [
    ({"classes": 1}, "2 to 6 classes"), ({"classes": 9}, "2 to 6 classes"),
    ({"train_per_class": 0}, "--train-per-class 0"), ({"train_per_class": -1}, "-1"),
    ({"train_per_class": 10**7}, "--train-per-class"), ({"val_per_class": 0}, "--val-per-class"),
    ({"size": 0}, "--size 0"), ({"size": 10}, "--size 10"), ({"size": 10**5}, "--size"),
    ({"size": 64.5}, "--size 64.5"), ({"min_scale": 0.0}, "--min-scale"),
    ({"max_scale": float("nan")}, "--max-scale nan"), ({"max_scale": 2.0}, "--max-scale 2.0"),
    ({"min_scale": 0.6, "max_scale": 0.3}, "above --max-scale"),
    ({"size": 32, "min_scale": 0.1}, "raise --size or --min-scale"), ({"seed": -1}, "--seed -1"),
    ({"classes": True}, "--classes True"),
]


@pytest.mark.parametrize(("fields", "phrase"), BAD, ids=[str(f) for f, _ in BAD])
def test_config_refuses_odd_values_with_acol_errors(fields, phrase):
    with pytest.raises(AcolError) as info:
        SynthConfig(**fields)
    assert phrase in str(info.value) and "\n" not in str(info.value)


def test_existing_files_are_never_replaced_without_overwrite(tmp_path):
    out = tmp_path / "s"
    write_synth(out, SMALL)
    before = digest(out)
    other = SynthConfig(**{**SMALL.__dict__, "seed": 5})
    with pytest.raises(AcolError, match="not empty.*--overwrite"):
        write_synth(out, other)
    assert digest(out) == before
    write_synth(out, SynthConfig(**{**other.__dict__, "overwrite": True}))
    assert digest(out) != before and digest(out).keys() == before.keys()
    (tmp_path / "file").write_text("x")
    with pytest.raises(AcolError, match="not a folder"):
        write_synth(tmp_path / "file", SMALL)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(AcolError, match="not empty"):
        write_synth(tmp_path / "notes", SMALL)
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["mine.txt"]


def test_cli_refuses_a_non_empty_out_in_one_line_and_leaves_it(tmp_path):
    out = tmp_path / "s"
    write_synth(out, SMALL)
    before = digest(out)
    result = CliRunner().invoke(main, ["synth", str(out), "--size", "64"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--overwrite" in lines[0]
    assert digest(out) == before
    result = CliRunner().invoke(main, ["synth", str(out), "--size", "0"])
    assert result.exit_code == 2 and "--size 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
