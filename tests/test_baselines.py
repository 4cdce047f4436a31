"""The baselines a WSOL result is read against, as training methods: FSL (a foreground
head trained on K box masks per class from the validation split) and DDT (the first
principal direction of the train split's descriptors as a 1x1 projection). Both train,
save, load, localize and score like any model; FSL's box budget and its three disjoint
image sets (head training, calibration, test) are on record; bad budgets are one-line
errors before anything is written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from acol_eval.data.readers import read_source
from acol_eval.data.synth import SynthConfig, write_synth
from acol_eval.models.checkpoint import Checkpoint
from acol_eval.models.ddt_method import DDTModel, DescriptorMoments, ddt_direction
from acol_eval.models.fsl_method import FSLMethod, FSLTargets, foreground_loss
from acol_eval.models.trainmethod import get_method
from acol_eval.scoring.scoring import ScoreConfig, score
from acol_eval.training.boxbudget import BOXES_FILE, box_masks, draw_budget
from acol_eval.training.trainconfig import TrainConfig
from acol_eval.training.trainer import train
from acol_eval.util.errors import AcolError
from conftest import (
    assert_one_line_error,
    run_cli,
    run_localize,
    train_until_killed,
    write_texture_folder,
)

TINY = dict(arch="resnet18", weights="none", input_size=32, resize_size=40,
            feature_stride=16, batch_size=4, lr=0.01, epochs=1, seed=3, workers=0,
            cache="off", val_fraction=0.4)


def quiet(message: str) -> None:
    pass


# one torch thread: the runs compared bit for bit and the machine shared with others
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """CUB layout, 3 classes, 10 train images each (4 held out per class at 0.4)."""
    folder = tmp_path_factory.mktemp("synth")
    write_synth(folder, SynthConfig(classes=3, train_per_class=10, val_per_class=4, size=64))
    return folder


@pytest.fixture(scope="module")
def fsl_run(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fsl") / "run"
    train(TrainConfig(data=f"cub:{synth}", out=str(out), method="fsl", boxes_per_class=2,
                      **TINY), log=quiet)
    return out


def split_images(synth: Path, split: str) -> set[str]:
    table = read_source(f"cub:{synth}").images
    return set(table[table["split"] == split]["image"])


# --------------------------------------------------------------------------- FSL


@pytest.mark.slow
def test_fsl_spends_its_box_budget_on_validation_images_apart_from_calibration_and_test(
        fsl_run, synth):
    record = json.loads((fsl_run / BOXES_FILE).read_text())
    assert record["boxes_per_class"] == 2 and record["images"] == 6
    assert record["per_class"] == {"disc_stripes": 2, "square_checker": 2, "triangle_dots": 2}
    boxes = read_source(f"cub:{synth}").boxes
    assert record["boxes"] == int(boxes["image"].isin(record["head_images"]).sum()) == 6
    head, calibration = set(record["head_images"]), set(record["calibration_images"])
    test = split_images(synth, "test")
    assert len(head) == 6 and len(calibration) == 6  # 4 held out per class, 2 drawn
    assert not head & calibration and not head & test and not calibration & test
    assert head | calibration <= split_images(synth, "train")
    # calibration localised exactly the calibration images, none of the head's
    with open(fsl_run / "calibration" / "run" / "predictions.csv", newline="") as handle:
        calibrated = {Path(row["image"]).relative_to(synth.resolve() / "images").as_posix()
                      for row in csv.DictReader(handle)}
    assert calibrated == calibration
    # best.pt's training arguments say the budget
    assert Checkpoint.load(fsl_run / "best.pt").args["boxes_per_class"] == 2


@pytest.mark.slow
def test_fsl_checkpoint_round_trips_localizes_and_scores(fsl_run, synth, tmp_path):
    saved = Checkpoint.load(fsl_run / "best.pt")
    assert saved.method == "fsl" and saved.recipe == "p"
    assert "foreground.weight" in saved.state_dict
    model = saved.model()
    assert all(torch.equal(v, saved.state_dict[k]) for k, v in model.state_dict().items())
    # every class's map is the one foreground map
    features = model.backbone(torch.randn(2, 3, 32, 32))
    maps = model.fused_maps(features, torch.tensor([[0, 1, 2], [2, 1, 0]]))
    assert maps.shape == (2, 3, 2, 2) and torch.equal(maps[:, 0], maps[:, 2])
    run = run_localize(f"cub:{synth}", tmp_path / "run", split="test",
                       checkpoint=str(fsl_run / "best.pt"), top_k=2)
    assert run.images == 12
    result = score(ScoreConfig(run=str(tmp_path / "run"), annotations=f"cub:{synth}",
                               split="test", out=str(tmp_path / "report"), workers=0))
    values = result.summary.set_index("metric")["value"]
    assert 0.0 <= values["max_box_acc_v2"] <= 100.0 and values["cls_top1"] >= 0.0


def test_the_budget_draw_is_stratified_seeded_and_takes_all_on_request(synth):
    annotations = read_source(f"cub:{synth}")
    classes = annotations.classes
    index = {name: i for i, name in enumerate(classes)}
    validation = [(image, index[label]) for image, label, split in zip(
        annotations.images["image"], annotations.images["label"], annotations.images["split"])
        if split == "test"]
    first = draw_budget(annotations, validation, classes, 3, seed=0)
    assert first.counts() == {name: 3 for name in classes}
    assert first == draw_budget(annotations, validation, classes, 3, seed=0)
    others = [draw_budget(annotations, validation, classes, 3, seed=s).head for s in (1, 2)]
    assert any(head != first.head for head in others)
    assert sorted(first.head + first.calibration) == sorted(validation)
    everything = draw_budget(annotations, validation, classes, "all", seed=0)
    assert len(everything.head) == 12 and everything.calibration == []


def test_box_masks_cover_the_scaled_boxes(synth):
    annotations = read_source(f"cub:{synth}")
    image = annotations.images["image"].iloc[0]
    masks = box_masks(annotations, [(image, 0)], side=32)
    box = annotations.boxes[annotations.boxes["image"] == image].iloc[0]
    width = float(annotations.images["width"].iloc[0])  # synth images are 64 x 64
    assert width == 64.0 and masks.images.shape == (1, 3, 32, 32)
    rows, cols = np.nonzero(masks.masks[0].numpy())
    assert rows.min() == int(box.y0) // 2 and cols.min() == int(box.x0) // 2
    assert rows.max() + 1 == -(-int(box.y1) // 2) and cols.max() + 1 == -(-int(box.x1) // 2)


def test_the_foreground_loss_falls_on_a_tiny_set(synth):
    torch.manual_seed(0)
    annotations = read_source(f"cub:{synth}")
    items = [(image, 0) for image in annotations.images["image"].iloc[:8]]
    method = FSLMethod(box_batch=8)
    model = method.model("resnet18", 3, 16)
    method.use_boxes(box_masks(annotations, items, side=40), crop=32)
    optimizer = torch.optim.SGD(method.param_groups(model, 0.01, (10.0,)), lr=0.01,
                                momentum=0.9)
    labels = torch.zeros(2, dtype=torch.long)
    losses = []
    for step in range(25):
        images, targets = method.prepare_batch(torch.zeros(2, 3, 32, 32), labels,
                                               torch.Generator().manual_seed(step))
        assert isinstance(targets, FSLTargets) and images.shape[0] == 10
        logits = method.forward(model, images, labels).logits
        bce = foreground_loss(logits[1], targets.masks)
        total, parts = method.loss(logits, targets)
        ce = torch.nn.functional.cross_entropy(logits[0], labels)
        assert len(parts) == 1 and torch.allclose(total, ce + bce)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(bce.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


@pytest.mark.parametrize("options, phrase", [
    (dict(boxes_per_class=5), "class 'disc_stripes' has 4 validation image(s) with boxes"),
    (dict(boxes_per_class=0), "--boxes-per-class 0 must be a finite number at least 1"),
    (dict(boxes_per_class="some"), "--boxes-per-class 'some' is not a number"),
    (dict(), "trains on boxes: give --boxes-per-class K"),
    (dict(boxes_per_class=1, val_fraction=0.0), "would be its test split"),
    (dict(boxes_per_class=1, method="acol"), "for methods that train on boxes"),
])
def test_bad_budgets_are_refused_before_any_output(synth, tmp_path, options, phrase):
    out = tmp_path / "out"
    settings = {**TINY, "method": "fsl", **options}
    with pytest.raises(AcolError) as caught:
        train(TrainConfig(data=f"cub:{synth}", out=str(out), **settings), log=quiet)
    assert phrase in str(caught.value) and "\n" not in str(caught.value)
    assert not out.exists()


def test_a_boxes_json_train_did_not_write_is_never_replaced(synth, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / BOXES_FILE).write_text("my notes\n")
    with pytest.raises(AcolError, match="is not a box budget acol-eval wrote"):
        train(TrainConfig(data=f"cub:{synth}", out=str(out), method="fsl",
                          boxes_per_class=1, **TINY), log=quiet)
    assert (out / BOXES_FILE).read_text() == "my notes\n"


def test_a_source_without_boxes_cannot_pay_a_budget(tmp_path):
    folder = write_texture_folder(tmp_path / "tex", train_per_class=3, val_per_class=2)
    with pytest.raises(AcolError, match="needs an annotation source with boxes"):
        train(TrainConfig(data=str(folder), out=str(tmp_path / "out"), method="fsl",
                          boxes_per_class=1, arch="resnet18", weights="none"), log=quiet)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_bad_budget_on_the_command_line_is_one_line_exit_2(synth, tmp_path):
    out = tmp_path / "out"
    result = run_cli("train", "--data", f"cub:{synth}", "--out", str(out), "--method", "fsl",
                     "--val-fraction", "0.4", "--arch", "resnet18", "--weights", "none",
                     "--boxes-per-class", "5")
    assert_one_line_error(result, 2, "--boxes-per-class 5", "has 4 validation image(s)")
    assert not out.exists()


# --------------------------------------------------------------------------- DDT


def test_ddt_direction_is_numpy_pca_signed_towards_strong_descriptors():
    rng = np.random.default_rng(0)
    # a strong object direction along a random axis plus noise, all values >= 0 like ReLU
    axis = np.abs(rng.normal(size=16))
    strength = rng.random(500) < 0.3
    descriptors = np.abs(rng.normal(size=(500, 16)) * 0.3) + np.outer(strength * 3.0, axis)
    direction, mean = ddt_direction(descriptors)
    centred = descriptors - descriptors.mean(0)
    values, vectors = np.linalg.eigh(np.cov(centred.T, bias=True))
    first = vectors[:, -1]
    assert np.allclose(mean, descriptors.mean(0))
    assert np.allclose(abs(direction.dot(first)), 1.0, atol=1e-9)
    # sign: strong (object) descriptors project positive, weak ones negative
    projection = centred @ direction
    assert projection[strength].mean() > 0 > projection[~strength].mean()
    # the same moments added in two halves give the same direction
    halves = DescriptorMoments(16)
    halves.add(descriptors[:200])
    halves.add(descriptors[200:])
    assert np.allclose(halves.direction()[0], direction)


def test_the_ddt_projection_is_w_dot_x_minus_mean():
    torch.manual_seed(0)
    model = get_method("ddt-class")().model("resnet18", 3, 16)
    assert isinstance(model, DDTModel) and model.projection.out_channels == 3
    directions = np.random.default_rng(1).normal(size=(3, 512))
    means = np.random.default_rng(2).random((3, 512))
    model.set_projection(directions, means)
    features = torch.rand(1, 512, 2, 2)
    raw = model.projection(features)[0, 2].double().numpy()
    x = features[0].double().numpy().reshape(512, -1).T
    assert np.allclose(raw.ravel(), (x - means[2]) @ directions[2], atol=1e-3)
    maps = model.fused_maps(features, torch.tensor([[2, 0]]))
    expected = np.clip(raw, 0, None)
    expected = (expected - expected.min()) / max(expected.max() - expected.min(), 1e-12)
    assert np.allclose(maps[0, 0].numpy(), expected, atol=1e-5)
    assert not torch.equal(maps[0, 0], maps[0, 1])  # per class: each class its own direction


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ddt", "ddt-class"])
def test_ddt_fits_on_train_round_trips_localizes_and_scores(synth, tmp_path, method):
    out = tmp_path / "run"
    config = TrainConfig(data=f"cub:{synth}", out=str(out), method=method, **TINY)
    train(config, log=quiet)
    saved = Checkpoint.load(out / "best.pt")
    assert saved.method == method and int(saved.state_dict["fitted"]) == 1
    model = saved.model()
    # the fitted projection: what the backbone's ImageNet-free features say on the train
    # images, equal to a fresh fit (the backbone is frozen: training moved only the head)
    last = Checkpoint.load(out / "last.pt").state_dict
    assert torch.equal(last["projection.weight"], saved.state_dict["projection.weight"])
    assert torch.equal(model.projection.weight, saved.state_dict["projection.weight"])
    backbone = {k: v for k, v in saved.state_dict.items() if k.startswith("backbone.")}
    torch.manual_seed(config.seed)
    fresh = get_method(method)().model("resnet18", 3, 16).state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in backbone.items())  # untouched
    run_localize(f"cub:{synth}", tmp_path / "loc", split="test",
                 checkpoint=str(out / "best.pt"), top_k=1)
    result = score(ScoreConfig(run=str(tmp_path / "loc"), annotations=f"cub:{synth}",
                               split="test", out=str(tmp_path / "report"), workers=0))
    summary = result.summary.set_index("metric")["value"]
    assert pd.notna(summary["max_box_acc_v2"]) and pd.notna(summary["top1_loc"])


@pytest.mark.slow
@pytest.mark.parametrize("method, extra", [("fsl", {"boxes_per_class": 2}), ("ddt", {})])
def test_a_killed_baseline_resumes_into_the_uninterrupted_run(synth, tmp_path, monkeypatch,
                                                               method, extra):
    common = dict(data=f"cub:{synth}", method=method, **{**TINY, "epochs": 2}, **extra)
    straight, run = tmp_path / "straight", tmp_path / "run"
    train(TrainConfig(out=str(straight), **common), log=quiet)
    train_until_killed(TrainConfig(out=str(run), **common), monkeypatch)
    train(TrainConfig(out=str(run), resume=True, **common), log=quiet)
    a = Checkpoint.load(straight / "last.pt").state_dict
    b = Checkpoint.load(run / "last.pt").state_dict
    assert a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


@pytest.mark.parametrize("method", ["fsl", "ddt", "ddt-class"])
@pytest.mark.parametrize("option, flag", [
    ({"recipe": "pn"}, "--recipe"), ({"delta": 0.3}, "--delta"), ({"head": "conv"}, "--head"),
    ({"loss_weights": (1.0, 1.0)}, "--loss-weights")])
def test_recipe_options_the_baselines_do_not_use_are_refused(method, option, flag):
    """fsl and ddt build CAM's recipe p with a linear head: a recipe option would be
    ignored and recorded in the checkpoint's args as if it had been used."""
    budget = {"boxes_per_class": 1} if method == "fsl" else {}
    with pytest.raises(AcolError, match=f"--method {method} builds its own heads .*: leave "
                                        f"out {flag}$"):
        TrainConfig(data="d", out="o", method=method, **budget, **option)
    config = TrainConfig(data="d", out="o", method=method, recipe="p", **budget)
    assert (config.recipe, config.delta, config.loss_weights) == ("p", (), None)
    assert TrainConfig(data="d", out="o", method=method, **budget).recipe == "p"  # recorded
