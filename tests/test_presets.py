"""`train --preset`: a named recipe fills what the command line leaves out."""

from __future__ import annotations

import json

import pytest

from acol_eval.data.synth import SynthConfig, write_synth
from acol_eval.training.presets import PRESETS, Preset, apply_preset, flag_text
from acol_eval.util.errors import AcolError
from conftest import assert_one_line_error, run_cli

DEFAULTS = {"arch": "resnet50", "recipe": "pp", "epochs": 10, "lr": 0.001,
            "val_fraction": 0.0, "val_split": None, "data": "cub:X", "images": None}


def no_splits_read():
    raise AssertionError("the source's splits were read though --val-* was given")


def test_preset_fills_only_what_the_command_line_left_out():
    options = {**DEFAULTS, "epochs": 3}
    merged, applied = apply_preset("wsol-cub", options, {"epochs", "data", "val_fraction"},
                                   no_splits_read)
    spec = PRESETS[Preset.WSOL_CUB].options
    assert merged["epochs"] == 3 and "epochs" not in applied.applied
    assert applied.overridden == ("epochs",)
    assert merged["arch"] == spec["arch"] == "mobilenet_v2"
    assert merged["recipe"] == spec["recipe"] and merged["lr"] == spec["lr"]
    assert merged["val_fraction"] == 0.0  # given explicitly: the preset leaves it alone
    assert "--epochs" not in " ".join(applied.flags())
    assert "(given on the command line: --epochs)" in applied.summary()


@pytest.mark.parametrize(("splits", "fraction", "phrase"), [
    (["train", "test"], 0.2, "held out of the train split, never the test split"),
    (["train", "val", "test"], 0.0, "validation on the source's 'val' split"),
    (["train", "validation"], 0.0, "'validation' split"),
])
def test_preset_holds_out_validation_only_when_the_source_has_no_val_split(
        splits, fraction, phrase):
    merged, applied = apply_preset(Preset.WSOL_CUB, dict(DEFAULTS), {"data"}, lambda: splits)
    assert merged["val_fraction"] == fraction
    assert phrase in applied.note
    assert ("--val-fraction 0.2" in applied.flags()) == bool(fraction)


def test_flags_read_as_a_user_would_type_them():
    assert flag_text("head_lr_mult", (10.0, 20.0)) == "--head-lr-mult 10,20"
    assert flag_text("delta", (0.8,)) == "--delta 0.8"
    assert flag_text("lr", 0.001) == "--lr 0.001"
    assert flag_text("feature_stride", 16) == "--feature-stride 16"


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(AcolError, match="'wsol-imagenet' is not a preset .*wsol-cub"):
        apply_preset("wsol-imagenet", dict(DEFAULTS), set(), lambda: [])


def test_cli_prints_writes_and_lets_flags_override_the_preset(tmp_path):
    data = tmp_path / "s"
    write_synth(data, SynthConfig(classes=2, train_per_class=10, val_per_class=2, size=64))
    run = tmp_path / "run"
    # the preset's backbone and size overridden to keep the test fast; the rest is its own
    result = run_cli("train", "--preset", "wsol-cub", "--data", f"cub:{data}", "--out",
                     str(run), "--arch", "resnet18", "--weights", "none", "--input-size",
                     "64", "--epochs", "1", "--workers", "0", "--no-calibrate")
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("preset wsol-cub: ") and "--recipe pp" in first
    assert "--val-fraction 0.2" in first and "--arch" not in first.split("(")[0]
    assert "given on the command line: --arch, --weights, --input-size, --epochs" in first
    assert "4 images held out of the train split" in result.stderr  # 20 * 0.2
    record = json.loads((run / "preset.json").read_text())
    assert record["preset"] == "wsol-cub" and "--recipe pp" in record["flags"]
    assert record["overridden"] == ["--arch", "--weights", "--input-size", "--epochs"]
    from acol_eval.models.checkpoint import load_checkpoint
    args = load_checkpoint(run / "best.pt")["args"]
    assert (args["recipe"], args["arch"], args["epochs"], args["val_fraction"]) == \
        ("pp", "resnet18", 1, 0.2)


def test_a_preset_command_refused_by_its_data_prints_only_the_error(tmp_path):
    """The preset's line comes after the data and the box budget are checked: a refused
    command is one line on stderr, as every refusal is."""
    data = tmp_path / "s"
    write_synth(data, SynthConfig(classes=2, train_per_class=10, val_per_class=2, size=64))
    result = run_cli("train", "--preset", "wsol-cub-fsl", "--data", f"cub:{data}", "--out",
                     str(tmp_path / "r"), "--boxes-per-class", "3", "--arch", "resnet18",
                     "--weights", "none")
    assert_one_line_error(result, 2, "--boxes-per-class 3")
    assert not (tmp_path / "r").exists()


def test_a_refusal_of_a_flag_the_preset_set_says_where_it_came_from(tmp_path):
    data = tmp_path / "s"
    write_synth(data, SynthConfig(classes=2, train_per_class=4, val_per_class=1, size=64))
    result = run_cli("train", "--preset", "wsol-cub-fsl", "--data", f"cub:{data}", "--out",
                     str(tmp_path / "r"), "--method", "acol")
    assert_one_line_error(result, 2, "--boxes-per-class is for methods that train on boxes",
                          "(--boxes-per-class came from --preset wsol-cub-fsl, not from the "
                          "command line)")
    assert not (tmp_path / "r").exists()


def test_cli_refuses_an_unknown_preset_in_one_line(tmp_path):
    result = run_cli("train", "--preset", "nope", "--data", "x", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, 2, "--preset")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("source", ["cub:{data}/cub10", "wsol:{data}/wsol-metadata/CUB/train"])
def test_preset_on_real_sources_as_shipped_holds_validation_out_of_train(source):
    """Real CUB (cub10, official train/test split) and wsolevaluation's CUB train
    metadata, as they ship: neither has a val split train could use, so the preset holds
    20% of train out instead of letting train fall back to the test split."""
    from acol_eval.training.trainingdata import source_splits
    from conftest import shared_data

    data = source.format(data=shared_data())
    merged, applied = apply_preset("wsol-cub", {**DEFAULTS, "data": data}, {"data"},
                                   lambda: source_splits(data))
    assert merged["val_fraction"] == 0.2 and "never the test split" in applied.note


def test_train_replaces_no_preset_json_or_calibration_folder_it_did_not_write(tmp_path):
    """The run folder may hold a user's files: train refuses to replace a preset.json
    that is not its own record, or a calibration/ folder (cleared by calibration),
    and leaves them as they were; its own record from a killed run may be replaced."""
    from acol_eval.training.trainconfig import TrainConfig, check_out_folder

    out = tmp_path / "run"
    out.mkdir()
    config = TrainConfig(data="cub:x", out=str(out))
    (out / "preset.json").write_text('{"mine": 1}\n')
    with pytest.raises(AcolError, match="preset.json is not a preset record acol-eval wrote"):
        check_out_folder(config)
    assert (out / "preset.json").read_text() == '{"mine": 1}\n'
    (out / "preset.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(AcolError, match="not a preset record"):
        check_out_folder(config)
    _, applied = apply_preset("wsol-cub", dict(DEFAULTS), {"data"}, lambda: ["train"])
    (out / "preset.json").write_text(json.dumps(applied.record()))
    check_out_folder(config)  # a killed run's own record: the rerun goes on
    (out / "calibration").mkdir()
    (out / "calibration" / "notes.txt").write_text("keep")
    with pytest.raises(AcolError, match=r"already holds a training run \(calibration\)"):
        check_out_folder(config)
    assert (out / "calibration" / "notes.txt").read_text() == "keep"
