"""Post-hoc CAM methods (acol_eval.models.methods) against pytorch-grad-cam's own output."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from acol_eval.data.datasets import ImagesForModel, collate_positions
from acol_eval.models.methods import (
    DEFAULT_TARGET_LAYER,
    MapMethod,
    library_class,
    method_maps,
    method_record,
    resolve_target_layer,
)
from acol_eval.models.model import ACoL, plain_cam_model
from acol_eval.models.weights import resolve_weights
from acol_eval.util.errors import AcolError
from conftest import shared_data

# float16 resolution near 1.0 is 2**-11; maps are stored as float16
FLOAT16_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Three real CUB photos (different species), as the model sees them (224 x 224)."""
    root = shared_data() / "cub10" / "images"
    species = sorted(p for p in root.iterdir() if p.is_dir())[:3]
    paths = [sorted(folder.glob("*.jpg"))[0] for folder in species]
    _, images, _, failed = collate_positions([ImagesForModel(paths, 224)[i] for i in range(3)])
    assert not failed
    return images


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    return resolve_weights("imagenet", "mobilenet_v2")


@pytest.fixture(scope="module")
def mobilenet(imagenet_state) -> ACoL:
    return plain_cam_model("mobilenet_v2", imagenet_state).eval()


def tiny_model(num_classes: int = 5) -> ACoL:
    """A small ACoL (8 feature channels, stride 4, recipe pp) that every method runs fast on."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
    return ACoL(backbone, 8, num_classes, "pp", 0.6, "linear").eval()


def library_scale(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Our layer-resolution maps brought to the library's output: resize, then min-max."""
    out = []
    for cam in maps:
        big = cv2.resize(np.float32(cam), size)
        out.append((big - big.min()) / (big.max() - big.min() + 1e-7))
    return np.stack(out)


def top_classes(model: ACoL, images: torch.Tensor, k: int) -> torch.Tensor:
    with torch.no_grad():
        return model.logits(model.backbone(images)).topk(k, 1).indices


@pytest.mark.slow
def test_gradcam_equals_the_library_on_real_photos(photos, mobilenet, imagenet_state):
    """Ours on the acol-eval model at its default layer = the library on torchvision's own
    MobileNetV2 at features[-1], for the top-1 and the top-2 class of each photo."""
    classes = top_classes(mobilenet, photos, 2)
    with torch.inference_mode():  # as localize calls it
        ours = method_maps(mobilenet, photos, classes, MapMethod.GRADCAM)
    assert ours.shape == (3, 2, 7, 7) and ours.dtype == torch.float32

    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(imagenet_state)
    reference.eval()
    for rank in range(2):
        targets = [ClassifierOutputTarget(int(c)) for c in classes[:, rank]]
        with GradCAM(reference, [reference.features[-1]]) as cam:
            expected = cam(photos, targets)
        assert expected.shape == (3, 224, 224)
        found = library_scale(ours[:, rank].numpy(), (224, 224))
        np.testing.assert_allclose(found, expected, atol=FLOAT16_TOLERANCE)
    # the two classes' maps differ: the class reaches the library
    assert (ours[:, 0] - ours[:, 1]).abs().amax() > 0.1


@pytest.mark.parametrize("method", ["gradcam++", "xgradcam", "layercam", "eigencam",
                                    "eigengradcam", "hirescam", "gradcamelementwise"])
def test_other_methods_equal_the_library(photos, mobilenet, method):
    method = MapMethod(method)
    classes = top_classes(mobilenet, photos[:2], 1)
    ours = method_maps(mobilenet, photos[:2], classes, method, "backbone.18")
    wrapped = torch.nn.Sequential(mobilenet.backbone, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(1280, 1000))
    wrapped[3].weight.data = mobilenet.heads[0].classifier.weight.data[:, :, 0, 0]
    wrapped[3].bias.data = mobilenet.heads[0].classifier.bias.data
    cam = library_class(method)(wrapped, [mobilenet.backbone[18]])
    try:
        expected = cam(photos[:2], [ClassifierOutputTarget(int(c)) for c in classes[:, 0]])
    finally:
        cam.activations_and_grads.release()
    found = library_scale(ours[:, 0].numpy(), (224, 224))
    np.testing.assert_allclose(found, expected, atol=FLOAT16_TOLERANCE)


def test_gradcam_at_the_head_input_is_the_cam(photos, mobilenet):
    """With a linear head, Grad-CAM at the head's input is ReLU(sum_k w_k^c A_k) up to
    scale: Zhou et al.'s CAM (their class map has no bias term)."""
    classes = top_classes(mobilenet, photos, 2)
    ours = method_maps(mobilenet, photos, classes, "gradcam", "heads.0.trunk")
    with torch.no_grad():
        head = mobilenet.heads[0]
        features = mobilenet.backbone(photos)
        cam = head.selected_maps(features, classes) - head.classifier.bias[classes][..., None, None]
    relu_cam = cam.clamp(min=0)
    for b in range(3):
        for k in range(2):
            correlation = np.corrcoef(ours[b, k].flatten(), relu_cam[b, k].flatten())[0, 1]
            assert correlation > 0.99, (b, k, correlation)
    # the model's own fused maps are the same CAM min-max scaled (the bias drops out)
    fused = method_maps(mobilenet, photos, classes, "model")
    for b in range(3):
        for k in range(2):
            assert np.corrcoef(fused[b, k].flatten(), cam[b, k].flatten())[0, 1] > 0.999


@pytest.mark.parametrize("method", [m.value for m in MapMethod])
def test_every_method_gives_finite_maps_of_a_batch(method):
    model = tiny_model()
    images = torch.rand(2, 3, 32, 40)
    classes = torch.tensor([[1, 3], [4, 0]])
    maps = method_maps(model, images, classes, method)
    assert maps.shape == (2, 2, 8, 10) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    # min-max scaled: each map peaks at 1, or is all 0 (a map that ReLU left constant)
    peaks = maps.flatten(2).amax(-1)
    assert ((peaks == 1) | (maps.flatten(2).amin(-1) == peaks)).all() and (peaks == 1).any()
    if method != "eigencam":
        assert not torch.equal(maps[:, 0], maps[:, 1])  # the class reaches the method


class FirstClassifier(nn.Module):
    """The first classifier's logits of an ACoL model, written the plain way for the library."""

    def __init__(self, model: ACoL) -> None:
        super().__init__()
        self.acol = model

    def forward(self, images):
        return self.acol.heads[0](self.acol.backbone(images)).mean((2, 3))


def library_maps(model: ACoL, layer: nn.Module, method: str, images, classes) -> np.ndarray:
    """(B, K, H, W): the library's own class on the model, one call per class rank."""
    out = []
    for rank in range(classes.shape[1]):
        cam = library_class(MapMethod(method))(FirstClassifier(model), [layer])
        try:
            out.append(cam(images, [ClassifierOutputTarget(int(c)) for c in classes[:, rank]]))
        finally:
            cam.activations_and_grads.release()
    return np.stack(out, 1)


@pytest.mark.parametrize(("method", "head"), [("scorecam", "linear"), ("gradcam", "conv"),
                                              ("gradcam++", "conv")])
def test_acol_models_equal_the_library(method, head):
    """An ACoL model's first classifier (recipe pp; a conv head too); Score-CAM chunked and
    shared by the class ranks here, per image and rank in the library."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
    model = ACoL(backbone, 8, 5, "pp", 0.6, head).eval()
    images = torch.rand(2, 3, 32, 32)
    classes = torch.tensor([[1, 3], [4, 0]])
    ours = method_maps(model, images, classes, method)
    expected = library_maps(model, model.backbone, method, images, classes)
    for rank in range(2):
        found = library_scale(ours[:, rank].numpy(), (32, 32))
        np.testing.assert_allclose(found, expected[:, rank], atol=FLOAT16_TOLERANCE)


@pytest.mark.parametrize(("method", "passes"), [("gradcam", 1), ("layercam", 1),
                                               ("eigencam", 1), ("scorecam", 1 + 2)])
def test_one_forward_pass_per_batch(method, passes):
    """3 images x 2 class ranks: the backbone runs once for the batch, not per image or rank;
    Score-CAM adds its 3 x 8 masked images (8 channels) in two chunks of 16, for both ranks."""
    model = tiny_model()
    calls = []
    handle = model.backbone.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("acol_eval.models.methods.SCORE_CHUNK", 16)
            method_maps(model, torch.rand(3, 3, 32, 32), torch.tensor([[1, 2]] * 3), method)
    finally:
        handle.remove()
    assert len(calls) == passes and calls[0] == 3
    assert sum(calls[1:]) == (3 * 8 if method == "scorecam" else 0)


def test_maps_follow_the_target_layer_resolution(mobilenet):
    images = torch.rand(1, 3, 224, 224)
    classes = torch.tensor([[0]])
    assert method_maps(mobilenet, images, classes, "gradcam", "backbone.13").shape[-2:] == (14, 14)
    strided = plain_cam_model("mobilenet_v2", None, feature_stride=16).eval()
    assert method_maps(strided, images, classes, "gradcam").shape[-2:] == (14, 14)


def test_the_model_is_left_as_it_was():
    mobilenet = plain_cam_model("mobilenet_v2", None).eval()  # not the fixture: others' grads
    mobilenet.heads[0].classifier.weight.requires_grad_(False)
    before = [p.requires_grad for p in mobilenet.parameters()]
    images = torch.rand(1, 3, 96, 96)
    with torch.inference_mode():
        method_maps(mobilenet, images, torch.tensor([[5]]), "gradcam++")
    assert [p.requires_grad for p in mobilenet.parameters()] == before
    assert all(p.grad is None for p in mobilenet.parameters())
    assert not any(m._forward_hooks for m in mobilenet.modules())


def test_inside_inference_mode_and_autocast():
    """As localize calls it: under inference_mode, maybe in a bfloat16 autocast region."""
    model = tiny_model()
    images = torch.rand(2, 3, 32, 32)
    classes = torch.tensor([[1, 2], [3, 4]])
    expected = method_maps(model, images, classes, "gradcam")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        found = method_maps(model, images, classes, "gradcam")
    assert found.dtype == torch.float32
    torch.testing.assert_close(found, expected)


def hand_fused_cam(model: ACoL, images: torch.Tensor, classes: torch.Tensor,
                   classifiers: int = 2) -> np.ndarray:
    """ACoL's fused CAM of recipe 'pp' worked out in numpy (float64) from the heads'
    weights: each classifier's class map W_c . F + b_c over the features it sees,
    min-max normalised; the second classifier sees F with every position erased where
    the first one's normalised map reaches delta; the fused map is their maximum."""
    with torch.no_grad():
        features = model.backbone(images).double().numpy()
    heads = [(h.classifier.weight[:, :, 0, 0].detach().double().numpy(),
              h.classifier.bias.detach().double().numpy()) for h in model.heads[:classifiers]]
    (delta,) = model.deltas
    out = np.zeros((*classes.shape, *features.shape[-2:]))
    for b in range(classes.shape[0]):
        for k, c in enumerate(classes[b].tolist()):
            keep = np.ones(features.shape[-2:])
            for weight, bias in heads:
                raw = np.tensordot(weight[c], features[b] * keep, axes=1) + bias[c]
                norm = (raw - raw.min()) / (raw.max() - raw.min())
                out[b, k] = np.maximum(out[b, k], norm)
                keep = keep * (norm < delta)
    return out


def test_model_method_is_the_fused_map():
    model = tiny_model()
    assert model.recipe == "pp" and len(model.deltas) == 1
    images = torch.rand(2, 3, 32, 32)
    classes = torch.tensor([[1, 2], [3, 4]])
    expected = torch.from_numpy(hand_fused_cam(model, images, classes)).float()
    found = method_maps(model, images, classes, "model")
    assert found.shape == (2, 2, 8, 8)
    # the second, erased classifier shows in the fused map: it is not the first one's
    first = hand_fused_cam(model, images, classes, classifiers=1)
    assert np.abs(first - expected.numpy()).max() > 0.1
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=0)


def test_bad_names_are_one_line_errors():
    model = tiny_model()
    with pytest.raises(AcolError, match=r"--method 'gradcam\+\+\+' is not one of model, gradcam"):
        MapMethod.parse("gradcam+++")
    with pytest.raises(AcolError, match="is not a module of this model; valid names include: "
                                        "backbone, backbone.1, backbone.2, backbone.3, heads.0"):
        resolve_target_layer(model, "backbone.9")
    with pytest.raises(AcolError, match="'heads.1' is not used by the first classifier"):
        resolve_target_layer(model, "heads.1")
    assert resolve_target_layer(model, None) == DEFAULT_TARGET_LAYER == "backbone"


@pytest.mark.parametrize("method", ["gradcam", "layercam", "scorecam"])
def test_a_layer_followed_by_an_inplace_op(method):
    """The target layer's activation is the one before an in-place ReLU above it."""
    maps = []
    for inplace in (False, True):
        torch.manual_seed(0)
        backbone = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(inplace),
                                 nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(inplace))
        model = ACoL(backbone, 8, 4, "p", (), "linear").eval()
        maps.append(method_maps(model, torch.rand(2, 3, 32, 32), torch.tensor([[1], [2]]),
                                method, "backbone.0"))
    assert maps[0].shape == (2, 1, 16, 16)
    torch.testing.assert_close(maps[1], maps[0])


def test_a_shared_module_is_refused():
    """torchvision's BasicBlock calls its one ReLU twice: its activation is ambiguous."""
    model = plain_cam_model("resnet18", None).eval()
    with pytest.raises(AcolError, match="runs 2 times in one forward pass"):
        method_maps(model, torch.rand(1, 3, 64, 64), torch.tensor([[0]]), "gradcam",
                    "backbone.7.1.relu")


def test_method_record():
    assert method_record(MapMethod.MODEL, None)["method"] == "model"
    record = method_record(MapMethod.LAYERCAM, None)
    assert record["method"] == "layercam" and record["target_layer"] == "backbone"
    assert record["library"].startswith("grad-cam 1.5")


# --------------------------------------------------------------------------- in localize


def test_localize_method_stores_the_methods_maps_and_records_it(tmp_path):
    """`localize --method gradcam`: the map store holds the method's maps of the top-k
    classes (float16 of method_maps on the same input) and maps.json names the method
    and the layer, so `score` reads them like any store."""
    import json

    from acol_eval.maps.mapstore import open_maps
    from conftest import make_checkpoint, run_localize, write_images

    model = make_checkpoint(tmp_path / "model.pt").eval()
    write_images(tmp_path / "images", ["a.png", "b.png"])
    run_localize(tmp_path / "images", tmp_path / "run", checkpoint=str(tmp_path / "model.pt"),
                 top_k=2, method="gradcam")
    meta = json.loads((tmp_path / "run" / "maps.json").read_text())
    assert (meta["method"], meta["target_layer"]) == ("gradcam", "backbone")
    store = open_maps(tmp_path / "run")
    image = ImagesForModel([tmp_path / "images" / "b.png"], 64)[0][1]
    rows = store.index[store.index["image"] == "b.png"].sort_values("pred_rank")
    classes = torch.tensor([rows["class_id"].tolist()])
    expected = method_maps(model, image[None], classes, MapMethod.GRADCAM, "backbone")[0]
    stored = torch.from_numpy(np.asarray(store.maps[rows["row"].to_numpy()], np.float32))
    assert stored.shape == expected.shape == (2, 4, 4)
    assert torch.allclose(stored, expected, atol=2e-3)


def test_localize_refuses_a_target_layer_for_the_model_method(tmp_path):
    from acol_eval.maps.localizeconfig import LocalizeConfig
    from acol_eval.util.errors import AcolError

    with pytest.raises(AcolError, match="--target-layer applies to post-hoc methods"):
        LocalizeConfig(images="x", out=str(tmp_path / "o"), arch="resnet18",
                       target_layer="backbone.7")
