"""Training methods as registered objects: a method defined outside the package (in
tests/toy_method.py) trains, saves, resumes and localizes through the public entry
points, and a batch hook draws the same numbers whatever the worker count."""

from __future__ import annotations

import csv

import pytest
import torch
import toy_method

import acol_eval
from acol_eval.data.datasets import batch_generator
from acol_eval.maps.localization import localize
from acol_eval.maps.localizeconfig import LocalizeConfig
from acol_eval.models.checkpoint import Checkpoint, load_checkpoint
from acol_eval.train.trainconfig import TrainConfig
from acol_eval.train.training import Trainer, train
from acol_eval.util.errors import AcolError
from conftest import assert_one_line_error, run_cli, write_texture_folder

TINY = dict(arch="resnet18", weights="none", input_size=32, resize_size=40,
            feature_stride=16, batch_size=4, lr=0.01, epochs=2, calibrate=False, seed=3,
            workers=0, cache="off")


def quiet(message: str) -> None:
    pass


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny runs are faster, and every run compared alike
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_texture_folder(tmp_path_factory.mktemp("d"), train_per_class=5,
                                val_per_class=2, size=48)


def metrics(run):
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in ("images_per_s", "seconds")}
                for row in csv.DictReader(handle)]


def same_weights(a, b) -> bool:
    a, b = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


def test_the_registry_lists_acol_first_and_a_method_registered_outside():
    assert acol_eval.list_methods()[0] == "acol"
    assert {"toy-smooth", "toy-hide"} <= set(acol_eval.list_methods())
    with pytest.raises(ValueError, match="already registered"):
        toy_method.register_method("acol")(toy_method.SmoothedLabels)
    with pytest.raises(AcolError, match="'nope' is not registered .*acol"):
        TrainConfig(data="d", out="o", method="nope")
    with pytest.raises(AcolError, match="'acol' takes its options as train's own"):
        TrainConfig(data="d", out="o", method_args={"recipe": "pn"})
    with pytest.raises(AcolError, match="toy-smooth.*unexpected keyword.*'smoothness'"):
        TrainConfig(data="d", out="o", method="toy-smooth", method_args={"smoothness": 1})


class Killed(Exception):
    """Stands for a kill right after an epoch's files were written."""


@pytest.mark.slow
def test_a_method_defined_outside_trains_saves_resumes_and_localizes(data, tmp_path,
                                                                   monkeypatch):
    common = dict(data=str(data), method="toy-smooth", method_args={"smoothing": 0.1}, **TINY)
    straight = tmp_path / "straight"
    train(TrainConfig(out=str(straight), **common), log=quiet)
    saved = Checkpoint.load(straight / "last.pt")
    assert (saved.method, saved.method_args) == ("toy-smooth", {"smoothing": 0.1})
    assert (saved.recipe, saved.head, saved.deltas) == ("p", "linear", ())
    assert [c for c in metrics(straight)[0] if "_1" in c] == [
        "train_loss_1p", "train_acc_1p", "val_loss_1p", "val_acc_1p"]

    # the smoothing is what the method changes: at 0 it is the base step, ACoL's `p` run
    plain = tmp_path / "plain"
    train(TrainConfig(out=str(plain), **{**common, "method_args": {"smoothing": 0.0}}),
          log=quiet)
    acol_p = tmp_path / "acol-p"
    train(TrainConfig(out=str(acol_p), **{**common, "method": "acol", "method_args": {},
                                          "recipe": "p"}), log=quiet)
    assert metrics(plain) == metrics(acol_p) and same_weights(plain / "last.pt",
                                                              acol_p / "last.pt")
    assert metrics(straight)[0]["train_loss"] != metrics(plain)[0]["train_loss"]

    # killed after epoch 1, resumed: the same run as the uninterrupted one
    record = Trainer._record

    def record_then_die(self, epoch, row, has_val):
        record(self, epoch, row, has_val)
        raise Killed

    run = tmp_path / "run"
    monkeypatch.setattr(Trainer, "_record", record_then_die)
    with pytest.raises(Killed):
        train(TrainConfig(out=str(run), **common), log=quiet)
    monkeypatch.undo()
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    result = train(TrainConfig(out=str(run), resume=True, **{**common, "workers": 1}),
                   log=quiet)
    assert result.epochs == 1 and metrics(run) == metrics(straight)
    assert same_weights(run / "last.pt", straight / "last.pt")
    with pytest.raises(AcolError, match="was trained with method=toy-smooth, not acol"):
        train(TrainConfig(out=str(run), resume=True, **{**common, "method": "acol",
                                                        "method_args": {}}), log=quiet)

    # localize rebuilds the model through the method the checkpoint names
    found = localize(LocalizeConfig(images=str(data / "val"), out=str(tmp_path / "loc"),
                                    checkpoint=str(run / "best.pt"), workers=0,
                                    device="cpu"), log=quiet)
    with open(found.out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {r["pred_1"] for r in rows} <= {"checker", "stripes"}
    model = Checkpoint.load(run / "best.pt").model()
    assert torch.equal(model.heads[0].classifier.weight,
                       load_checkpoint(run / "best.pt")["state_dict"]
                       ["heads.0.classifier.weight"])


@pytest.mark.slow
def test_a_checkpoint_of_a_method_not_registered_says_so_in_one_line(tmp_path):
    from conftest import make_checkpoint

    make_checkpoint(tmp_path / "m.pt", recipe="p", classes=["a", "b"])
    saved = Checkpoint.load(tmp_path / "m.pt")
    assert saved.method == "acol"  # a file without the entry is ACoL's
    Checkpoint(**{**saved.__dict__, "method": "cutmix-elsewhere",
                  "method_args": {"alpha": 1.0}}).save(tmp_path / "x.pt")
    assert load_checkpoint(tmp_path / "x.pt")["method_args"] == {"alpha": 1.0}
    with pytest.raises(AcolError, match="'cutmix-elsewhere' is not registered"):
        Checkpoint.load(tmp_path / "x.pt").model()
    result = run_cli("localize", str(tmp_path), "--out", str(tmp_path / "loc"),
                     "--checkpoint", str(tmp_path / "x.pt"), "--device", "cpu")
    assert_one_line_error(result, 2, "cutmix-elsewhere", "not registered")


@pytest.mark.slow
def test_a_batch_hook_draws_the_same_numbers_with_any_worker_count(data, tmp_path):
    """The loop hands prepare_batch data.batch_generator(seed, epoch, batch index): the
    draws, the batches they hide and the trained weights are those of 0 and 1 workers."""
    seen = {}
    for workers in (0, 1):
        toy_method.SEEN.clear()
        train(TrainConfig(data=str(data), out=str(tmp_path / f"w{workers}"),
                          method="toy-hide", **{**TINY, "workers": workers}), log=quiet)
        seen[workers] = list(toy_method.SEEN)
    assert len(seen[0]) == 2 * 3  # 10 images in batches of 4, two epochs
    assert seen[0] == seen[1]
    expected = [torch.rand(3, generator=batch_generator(3, epoch, k)).tolist()
                for epoch in (0, 1) for k in range(3)]
    assert [draws for _, draws in seen[0]] == expected
    assert len({tuple(draws) for draws in expected}) == 6  # every batch draws anew
    assert same_weights(tmp_path / "w0" / "last.pt", tmp_path / "w1" / "last.pt")


def test_every_preset_trains_a_registered_method_with_train_options():
    from dataclasses import fields

    from acol_eval.train.presets import PRESETS

    names = {item.name for item in fields(TrainConfig)}
    for spec in PRESETS.values():
        assert spec.options["method"] in acol_eval.list_methods()
        assert set(spec.options) <= names


@pytest.mark.slow
def test_train_help_and_choices_come_from_the_registry(tmp_path):
    result = run_cli("train", "--help")
    assert result.returncode == 0 and "--method [acol|has|cutmix|adl]" in result.stdout
    result = run_cli("train", "--method", "toy-smooth", "--data", "x", "--out",
                     str(tmp_path / "r"))
    assert_one_line_error(result, 2, "--method", "'toy-smooth' is not one of 'acol', "
                          "'has', 'cutmix', 'adl'")
    assert not (tmp_path / "r").exists()
