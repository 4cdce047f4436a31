"""Hide-and-Seek, CutMix and ADL: what each does to a training batch or network (checked
on the batch and on the layers, with real numbers), that they compose with the recipe,
that bad hyperparameters are one-line errors before anything is written, and that each
trains, saves, resumes bit for bit, localises and scores through the public entry
points."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F

from acol_eval.data.datasets import batch_generator
from acol_eval.maps.localization import localize
from acol_eval.maps.localizeconfig import LocalizeConfig
from acol_eval.models.adl_method import AttentionDropout, stage_paths
from acol_eval.models.checkpoint import Checkpoint, load_checkpoint
from acol_eval.models.cutmix_method import MixedTargets
from acol_eval.models.has_method import FILL
from acol_eval.models.trainmethod import get_method
from acol_eval.report.htmlreport import write_score_html
from acol_eval.scoring.scoring import ScoreConfig, score
from acol_eval.training.trainconfig import TrainConfig
from acol_eval.training.trainer import train
from acol_eval.util.errors import AcolError
from conftest import assert_one_line_error, run_cli, train_until_killed

TINY = dict(arch="resnet18", weights="none", input_size=32, resize_size=40,
            feature_stride=16, batch_size=4, lr=0.01, epochs=2, calibrate=False, seed=5,
            workers=0, cache="off")


def quiet(message: str) -> None:
    pass


def method(name: str, recipe: str = "p", arch: str = "resnet18", **args):
    return TrainConfig(data="d", out="o", method=name, recipe=recipe, arch=arch,
                       method_args=args).training_method()


# one torch thread: the runs compared bit for bit and the machine shared with others
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- HaS


def test_hide_and_seek_hides_grid_cells_with_the_mean_and_nothing_else():
    has = method("has", grid=4, drop_rate=0.5)
    images = torch.rand(6, 3, 30, 36) + 1.0  # every pixel above 1: FILL (0) stands out
    labels = torch.arange(6)
    hidden, targets = has.prepare_batch(images.clone(), labels, batch_generator(5, 0, 0))
    assert torch.equal(targets, labels)
    changed = (hidden != images).any(1)  # (B, H, W)
    # a pixel is either untouched or FILL in all three channels
    assert torch.equal(hidden[changed[:, None].expand_as(hidden)],
                       torch.full((int(changed.sum()) * 3,), FILL))
    assert torch.equal(hidden[~changed[:, None].expand_as(hidden)],
                       images[~changed[:, None].expand_as(images)])
    # grid-aligned: one decision per 4 x 4 cell (the last row and column cut at 30, 36)
    cells = changed[:, ::4, ::4]
    assert torch.equal(changed, cells.repeat_interleave(4, 1).repeat_interleave(4, 2)
                       [:, :30, :36])
    # the same generator draws the same cells; another batch other ones
    again, _ = has.prepare_batch(images.clone(), labels, batch_generator(5, 0, 0))
    other, _ = has.prepare_batch(images.clone(), labels, batch_generator(5, 0, 1))
    assert torch.equal(again, hidden) and not torch.equal(other, hidden)


def test_hide_and_seek_hides_half_the_cells_over_many_draws_and_follows_its_rate():
    images = torch.ones(4, 3, 64, 64)
    fractions = {}
    for rate in (0.0, 0.5, 1.0):
        has = method("has", drop_rate=rate)
        hidden = [has.prepare_batch(images, images[:, 0, 0, 0].long(),
                                    batch_generator(1, 0, k))[0] for k in range(50)]
        fractions[rate] = float(torch.stack(hidden).eq(FILL).float().mean())
    assert fractions[0.0] == 0.0 and fractions[1.0] == 1.0
    assert abs(fractions[0.5] - 0.5) < 0.01  # 50 x 4 x 256 cells


# --------------------------------------------------------------------------- CutMix


def test_cutmix_pastes_one_box_of_the_paired_image_and_mixes_labels_by_its_area():
    cutmix = method("cutmix", recipe="pn")
    images = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 24, 32).clone()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    areas = []
    for k in range(20):
        mixed, targets = cutmix.prepare_batch(images, labels, batch_generator(2, 1, k))
        assert isinstance(targets, MixedTargets) and torch.equal(targets.a, labels)
        source = mixed[:, 0]  # which image each pixel comes from
        pasted = source != torch.arange(8.0).view(8, 1, 1)
        rows, cols = pasted.any(0).any(1), pasted.any(0).any(0)
        if pasted.any():  # one rectangle, the same in every image
            box = torch.zeros(24, 32, dtype=torch.bool)
            box[rows.nonzero().min():rows.nonzero().max() + 1,
                cols.nonzero().min():cols.nonzero().max() + 1] = True
            partner = targets.b
            order = [int(source[i][box][0]) for i in range(8)]
            assert torch.equal(partner, labels[order])  # y_b is the pasted image's label
            assert all(bool((source[i][box] == order[i]).all()) for i in range(8))
            assert all(bool((source[i][~box] == i).all()) for i in range(8))
            area = float(box.float().mean())
        else:
            area = 0.0
        assert targets.lam == pytest.approx(1.0 - area)  # lam: the unpasted share
        areas.append(area)
    assert 0.15 < sum(areas) / len(areas) < 0.6  # Beta(1, 1): about a third, clipped
    # the loss: lam * L(y_a) + (1 - lam) * L(y_b), each head by its letter
    logits = [torch.randn(8, 3), torch.randn(8, 3)]
    total, parts = cutmix.loss(logits, targets)
    plain = get_method("acol")("pn")
    ta, pa = plain.loss(logits, targets.a)
    tb, pb = plain.loss(logits, targets.b)
    assert total.item() == pytest.approx((targets.lam * ta + (1 - targets.lam) * tb).item())
    assert parts[0].item() == pytest.approx(
        targets.lam * F.cross_entropy(logits[0], labels).item()
        + (1 - targets.lam) * F.cross_entropy(logits[0], targets.b).item())
    assert len(pb) == len(pa) == 2


def test_cutmix_mixes_a_batch_with_its_probability():
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    out, targets = method("cutmix", prob=0.0).prepare_batch(images, labels,
                                                            batch_generator(0, 0, 0))
    assert out is images and targets is labels  # unmixed: the batch and its labels
    half = method("cutmix", prob=0.5)
    mixed = [isinstance(half.prepare_batch(images, labels, batch_generator(0, 0, k))[1],
                        MixedTargets) for k in range(2000)]
    assert 0.47 < sum(mixed) / 2000 < 0.53


# --------------------------------------------------------------------------- ADL


def test_the_adl_layer_drops_the_salient_region_or_reweights_and_is_off_in_eval():
    layer = AttentionDropout(gamma=0.9)
    features = torch.zeros(1, 2, 2, 2)
    features[0, :, 0, 0] = 10.0  # the salient position: attention 10
    features[0, :, 1, 1] = 9.5  # above 0.9 x 10: dropped too
    features[0, :, 0, 1] = 6.0  # below 9: kept
    layer.train()
    layer.drop = True
    dropped = layer(features)
    assert dropped[0, 0].tolist() == [[0.0, 6.0], [0.0, 0.0]]
    layer.drop = False
    assert torch.allclose(layer(features), features * torch.sigmoid(features.mean(1, True)))
    layer.eval()
    assert layer(features) is features


def test_adl_lives_in_the_training_network_only(tmp_path):
    adl = method("adl", recipe="pp", drop_rate=1.0)
    torch.manual_seed(0)
    model = adl.model("resnet18", 3, 16)
    keys = list(model.state_dict())
    net = adl.training_model(model)
    assert len(adl.layers) == 3 and list(model.state_dict()) == keys  # model untouched
    assert sum(isinstance(m, AttentionDropout) for m in net.modules()) == 3
    assert not any(isinstance(m, AttentionDropout) for m in model.modules())
    assert {id(p) for p in net.parameters()} == {id(p) for p in model.parameters()}
    assert net.backbone[7][0][1] is adl.layers[1] or net.backbone[7][1] in adl.layers
    images, classes = torch.rand(2, 3, 32, 32), torch.tensor([[0, 1], [2, 0]])
    net.eval(), model.eval()
    with torch.no_grad():
        assert torch.equal(net.class_maps(images, classes), model.class_maps(images, classes))
        net.train()
        adl.prepare_batch(images, classes[:, 0], batch_generator(0, 0, 0))
        assert all(layer.drop for layer in adl.layers)  # drop_rate 1: every layer drops
        trained = net(images, classes[:, 0]).logits[0]
        model.train()
        assert not torch.equal(trained, model(images, classes[:, 0]).logits[0])


def test_adl_draws_its_choice_per_layer_and_batch_from_the_batch_generator():
    adl = method("adl", stages="layer3,layer4")
    adl.training_model(adl.model("resnet18", 2, 32))
    seen = []
    for k in range(40):
        adl.prepare_batch(torch.zeros(1), torch.zeros(1), batch_generator(9, 0, k))
        seen.append([layer.drop for layer in adl.layers])
    expected = [(torch.rand(2, generator=batch_generator(9, 0, k)) < 0.75).tolist()
                for k in range(40)]
    assert seen == expected and 0.6 < sum(map(sum, seen)) / 80 < 0.9


def test_adl_default_stages_are_on_every_backbones_main_path():
    from acol_eval.models.adl_method import DEFAULT_STAGES
    from acol_eval.models.backbones import SPECS

    assert set(DEFAULT_STAGES) == set(SPECS)
    for arch, stages in DEFAULT_STAGES.items():
        assert set(stages) <= set(stage_paths(arch)), arch
    assert stage_paths("resnet50")["layer4.0"] == "7.0"
    assert stage_paths("vgg16")["features.29"] == "29"


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("name, args, phrase", [
    ("has", {"grid": 0}, "--has-grid 0 must be a whole number from 1"),
    ("has", {"drop_rate": 1.5}, "--has-drop-rate 1.5 must be a number in [0, 1]"),
    ("has", {"drop_rate": -0.1}, "--has-drop-rate -0.1 must be a number in [0, 1]"),
    ("cutmix", {"prob": 2}, "--cutmix-prob 2 must be a number in [0, 1]"),
    ("cutmix", {"beta": 0}, "--cutmix-beta 0 must be a number above 0"),
    ("adl", {"drop_rate": 1.01}, "--adl-drop-rate 1.01 must be a number in [0, 1]"),
    ("adl", {"gamma": float("nan")}, "--adl-gamma nan is not a finite number"),
    ("adl", {"stages": "layer5"}, "--adl-stages: resnet18 has no stage 'layer5'"),
    ("adl", {"stages": "layer4.0.conv1"}, "has no stage 'layer4.0.conv1'"),
    ("adl", {"grid": 4}, "'adl' has no hyperparameter 'grid'"),
])
def test_bad_hyperparameters_are_refused_by_the_config(name, args, phrase):
    with pytest.raises(AcolError) as caught:
        TrainConfig(data="d", out="o", method=name, arch="resnet18", method_args=args)
    assert phrase in str(caught.value) and "\n" not in str(caught.value)


def test_each_method_records_its_hyperparameters_with_the_recipe():
    has = method("has", recipe="pp")
    assert has.hyperparameters() == {"recipe": "pp", "deltas": [0.6], "head": "linear",
                                     "loss_weights": None, "grid": 4, "drop_rate": 0.5}
    assert method("cutmix").own == {"beta": 1.0, "prob": 1.0}
    assert method("adl").own == {"drop_rate": 0.75, "gamma": 0.9,
                                 "stages": ["layer3.0", "layer4.0", "layer4"]}
    assert method("adl", arch="mobilenet_v2").own["stages"] == [
        "features.7", "features.14", "features.18"]
    assert "--has-grid 4" in has.describe() and "recipe pp" in has.describe()


@pytest.mark.slow
def test_the_cli_refuses_bad_method_flags_in_one_line_before_writing(tmp_path):
    for args, phrase in ((["--method", "has", "--has-grid", "0"], "--has-grid 0"),
                         (["--method", "cutmix", "--cutmix-prob", "1.5"], "--cutmix-prob"),
                         (["--method", "adl", "--adl-stages", "layer9"], "no stage 'layer9'"),
                         (["--has-grid", "3"], "--has-grid is an option of --method has")):
        result = run_cli("train", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                         "--arch", "resnet18", "--weights", "none", *args)
        assert_one_line_error(result, 2, phrase)
        assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- whole runs


def metrics(run):
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in ("images_per_s", "seconds")}
                for row in csv.DictReader(handle)]


@pytest.mark.slow
@pytest.mark.parametrize("name, recipe, args", [
    ("has", "p", {"grid": 8}), ("cutmix", "pn", {}), ("adl", "pp", {"drop_rate": 0.5})])
def test_each_method_trains_resumes_exactly_localises_and_scores(tiny_boxes, tmp_path,
                                                                monkeypatch, name,
                                                                recipe, args):
    common = dict(data=f"cub:{tiny_boxes}", method=name, recipe=recipe, method_args=args, **TINY)
    straight = tmp_path / "straight"
    train(TrainConfig(out=str(straight), **common), log=quiet)
    saved = Checkpoint.load(straight / "last.pt")
    assert saved.method == name and saved.recipe == recipe
    assert {k: saved.method_args[k] for k in args} == args
    assert not any("AttentionDropout" in k for k in saved.state_dict)
    plain = get_method("acol")(recipe).model("resnet18", 2, 16)
    assert list(saved.state_dict) == list(plain.state_dict())  # the inference model only

    run = tmp_path / "run"
    train_until_killed(TrainConfig(out=str(run), **common), monkeypatch)
    result = train(TrainConfig(out=str(run), resume=True, **common), log=quiet)
    assert result.epochs == 1 and metrics(run) == metrics(straight)
    a, b = (load_checkpoint(p / "last.pt")["state_dict"] for p in (run, straight))
    assert all(torch.equal(v, b[k]) for k, v in a.items())

    lines = []
    found = localize(LocalizeConfig(images=f"cub:{tiny_boxes}", split="test",
                                    out=str(tmp_path / "loc"), checkpoint=str(run / "best.pt"),
                                    workers=0, device="cpu"), log=lines.append)
    assert found.images == 6
    assert any(f"method {name}" in line and f"recipe {recipe}" in line for line in lines)
    report = score(ScoreConfig(run=str(tmp_path / "loc"), annotations=f"cub:{tiny_boxes}",
                               split="test", out=str(tmp_path / "report"), interval=0.05,
                               workers=0))
    with open(tmp_path / "report" / "summary.csv", newline="") as handle:
        values = {r["metric"]: r["value"] for r in csv.DictReader(handle)}
    assert report is not None and 0.0 <= float(values["max_box_acc_v2"]) <= 100.0
    # report.html links the training run's curves (run.json -> checkpoint -> its folder)
    page = (tmp_path / "report" / "report.html").read_text()
    assert 'href="../run/curves.png"' in page
    (run / "curves.png").unlink()
    write_score_html(tmp_path / "report")
    assert "curves.png" not in (tmp_path / "report" / "report.html").read_text()


def test_a_resume_that_types_out_a_default_is_the_same_run(tiny_boxes, tmp_path, monkeypatch):
    """--has-grid 4 is HaS's default: a resume that types it (or leaves it out) continues
    the run; another value is refused, naming the flag and both values."""
    common = dict(data=f"cub:{tiny_boxes}", method="has", **{**TINY, "epochs": 3})
    run = tmp_path / "run"
    train_until_killed(TrainConfig(out=str(run), **common), monkeypatch)
    train_until_killed(TrainConfig(out=str(run), resume=True, method_args={"grid": 4},
                                   **common), monkeypatch)
    assert Checkpoint.load(run / "last.pt").epoch == 2
    with pytest.raises(AcolError, match=r"other has settings: --has-grid 4 \(now 8\);"):
        train(TrainConfig(out=str(run), resume=True, method_args={"grid": 8}, **common),
              log=quiet)
    result = train(TrainConfig(out=str(run), resume=True, **common), log=quiet)
    assert result.epochs == 1 and Checkpoint.load(run / "last.pt").method_args["grid"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adl", "cutmix"])
def test_each_method_trains_under_torchrun_with_two_processes(tmp_path, name):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from conftest import write_texture_folder

    data = write_texture_folder(tmp_path / "data", train_per_class=4, val_per_class=1,
                                size=40)
    run = tmp_path / "ddp"
    env = {**os.environ, "ACOL_EVAL_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", str(Path(__file__).resolve().parents[1] / "cli.py"), "train", "--data",
         str(data), "--out", str(run), "--epochs", "1", "--device", "cpu", "--arch",
         "resnet18", "--weights", "none", "--input-size", "32", "--batch-size", "2",
         "--workers", "0", "--method", name, "--recipe", "pp"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    saved = Checkpoint.load(run / "best.pt")
    assert (saved.method, saved.world_size) == (name, 2)
