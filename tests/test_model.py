import pytest
import torch
import torchvision
from torch import nn

from acol_eval.models.backbones import SUPPORTED_ARCHS
from acol_eval.models.model import ACoL, build_model, normalize_maps, plain_cam_model
from acol_eval.util.errors import AcolError


def test_normalize_maps_hand_values_constant_and_nan():
    maps = torch.tensor([[[1.0, 3.0], [5.0, 2.0]], [[4.0, 4.0], [4.0, 4.0]],
                         [[1.0, float("nan")], [0.0, 2.0]]])
    out = normalize_maps(maps)
    assert torch.equal(out[0], torch.tensor([[0.0, 0.5], [1.0, 0.25]]))
    assert torch.equal(out[1], torch.zeros(2, 2))
    assert torch.equal(out[2], torch.zeros(2, 2))


def toy_model(recipe: str, deltas, channels: int = 2, classes: int = 2) -> ACoL:
    """Identity backbone: the input *is* the feature map, so erasing can be read off."""
    return ACoL(nn.Identity(), channels, classes, recipe, deltas, "linear").eval()


def set_head(model: ACoL, index: int, weight: list[list[float]], bias=None) -> None:
    head = model.heads[index].classifier
    with torch.no_grad():
        head.weight.copy_(torch.tensor(weight)[:, :, None, None])
        head.bias.copy_(torch.tensor(bias or [0.0] * len(weight)))


def capture_head_inputs(model: ACoL) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    for head in model.heads:
        head.register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    return seen


def test_erasing_zeroes_exactly_the_guide_positions_and_accumulates():
    # deltas hit map values exactly, so `>=` (not `>`) is what is tested at the boundary
    model = toy_model("ppp", [0.6, 8 / 9])
    set_head(model, 0, [[1.0, 0.0], [0.0, 0.0]])  # class 0 map = channel 0
    set_head(model, 1, [[0.0, 1.0], [0.0, 0.0]])  # class 0 map = channel 1
    set_head(model, 2, [[1.0, 1.0], [0.0, 0.0]])
    channel0 = torch.arange(16.0).view(4, 4) / 15  # normalised: itself; >= 0.6 from index 9
    channel1 = torch.tensor([[9.0, 0, 0, 0], [0, 8, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    features = torch.stack([channel0, channel1])[None]
    seen = capture_head_inputs(model)
    model(features, torch.tensor([0]))
    first_erase = torch.zeros(4, 4, dtype=torch.bool)
    first_erase.view(-1)[9:] = True
    assert torch.equal(seen[1][0], features[0] * ~first_erase)  # all channels zeroed there
    # classifier 2's map (channel 1 after erasing) normalised: 1 at (0,0), 8/9 at (1,1)
    second_erase = first_erase.clone()
    second_erase[0, 0] = second_erase[1, 1] = True
    assert torch.equal(seen[2][0], features[0] * ~second_erase)


def test_constant_map_erases_nothing_and_gives_no_nan():
    model = toy_model("pp", [0.5])
    set_head(model, 0, [[0.0, 0.0], [0.0, 0.0]], [1.0, 2.0])  # constant maps
    seen = capture_head_inputs(model)
    features = torch.rand(1, 2, 5, 5)
    out = model(features, torch.tensor([1]))
    assert torch.equal(seen[1], features)
    maps = model.classifier_maps(features, torch.tensor([[0, 1]]))
    assert torch.isfinite(maps).all() and torch.equal(maps[:, :, 0], torch.zeros(1, 2, 5, 5))
    assert all(torch.isfinite(z).all() for z in out.logits)


def test_linear_head_maps_are_the_1x1_weights_applied_to_features():
    torch.manual_seed(0)
    model = build_model("resnet18", 5, "pn", 0.6, "linear", 32).eval()
    images = torch.randn(2, 3, 64, 64)
    features = model.backbone(images)
    head = model.heads[0].classifier
    expected = torch.einsum("bchw,nc->bnhw", features, head.weight[:, :, 0, 0])
    expected = expected + head.bias[None, :, None, None]
    out = model(images, torch.tensor([0, 3]))
    assert torch.allclose(out.maps[0], expected, atol=1e-5)
    assert torch.allclose(out.logits[0], expected.mean((2, 3)), atol=1e-5)
    classes = torch.tensor([[4, 1], [0, 2]])
    chosen = model.heads[0].selected_maps(features, classes)
    assert torch.allclose(chosen, expected[torch.arange(2)[:, None], classes], atol=1e-5)


def manual_chain(model: ACoL, features: torch.Tensor, cls: int) -> list[torch.Tensor]:
    """Class-specific erasing written the slow, obvious way: one class, full heads."""
    maps, current = [], features
    for index, head in enumerate(model.heads):
        norm = normalize_maps(head(current)[:, cls])
        maps.append(norm)
        if index < len(model.heads) - 1:
            current = current * (norm < model.deltas[index]).unsqueeze(1).float()
    return maps


@pytest.mark.parametrize("head", ["linear", "conv"])
def test_classifier_maps_follow_class_specific_erasing(head):
    torch.manual_seed(1)
    model = ACoL(nn.Identity(), 8, 4, "pnp", [0.4, 0.7], head).eval()
    features = torch.rand(2, 8, 6, 6)
    classes = torch.tensor([[0, 3], [2, 1]])
    with torch.no_grad():
        got = model.classifier_maps(features, classes)
        for b in range(2):
            for k in range(2):
                want = manual_chain(model, features[b : b + 1], int(classes[b, k]))
                for level in range(3):
                    assert torch.allclose(got[b, k, level], want[level][0], atol=1e-5)
        fused = model.fused_maps(features, classes)
    assert torch.equal(fused, torch.maximum(got[:, :, 0], got[:, :, 2]))  # n map left out


def test_fused_map_ignores_the_adversarial_map():
    model = toy_model("pn", [0.6])
    set_head(model, 0, [[1.0, 0.0], [0.0, 1.0]])
    set_head(model, 1, [[0.0, 50.0], [50.0, 0.0]])
    features = torch.rand(1, 2, 4, 4)
    with torch.no_grad():
        fused = model.fused_maps(features, torch.tensor([[0]]))
    assert torch.equal(fused[0, 0], normalize_maps(features[0, 0]))


def test_class_specific_maps_differ_between_classes():
    model = toy_model("pp", [0.5])
    set_head(model, 0, [[1.0, 0.0], [0.0, 1.0]])
    set_head(model, 1, [[1.0, 1.0], [1.0, 1.0]])  # same weights for both classes
    features = torch.rand(1, 2, 5, 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        maps = model.classifier_maps(features, torch.tensor([[0, 1]]))
    assert not torch.equal(maps[0, 0, 0], maps[0, 1, 0])
    # the second classifier is identical for both classes; only the erasing differs
    assert not torch.equal(maps[0, 0, 1], maps[0, 1, 1])


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_feature_stride_scales_the_maps(arch):
    sizes = {}
    for stride in (32, 16, 8):
        model = build_model(arch, 3, "pp", 0.6, "linear", stride).eval()
        with torch.no_grad():
            maps = model.class_maps(torch.randn(1, 3, 128, 128), torch.tensor([[0, 2]]))
        sizes[stride] = maps.shape[-2:]
    assert tuple(sizes[32]) == (4, 4)
    assert tuple(sizes[16]) == (8, 8)
    assert tuple(sizes[8]) == (16, 16)


@pytest.mark.parametrize("arch", SUPPORTED_ARCHS)
def test_every_backbone_builds_and_gives_maps(arch):
    torch.manual_seed(0)
    model = build_model(arch, 3, "pn", 0.6, "linear", 32).eval()
    with torch.no_grad():
        maps = model.class_maps(torch.randn(2, 3, 64, 64), torch.tensor([[0, 1], [2, 0]]))
    assert maps.shape == (2, 2, 2, 2)
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


def test_plain_resnet18_as_cam_model_reproduces_its_logits():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    model = plain_cam_model("resnet18", reference.state_dict()).eval()
    images = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        expected = reference(images)
        maps = model.heads[0](model.backbone(images))
    assert torch.allclose(maps.mean((2, 3)), expected, atol=1e-4)
    assert model.recipe == "p"


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"arch": "alexnet"}, "supported: resnet18"),
        ({"arch": "resnet18", "feature_stride": 4}, "cannot give feature stride 4"),
        ({"arch": "resnet18", "recipe": "np"}, "must start with 'p'"),
        ({"arch": "resnet18", "recipe": "pxp"}, "over the letters p and n"),
        ({"arch": "resnet18", "recipe": "ppp", "deltas": [0.5, 0.6, 0.7]}, "2 erasing step"),
        ({"arch": "resnet18", "deltas": 1.5}, "outside (0, 1]"),
    ],
)
def test_bad_model_arguments_are_clear_errors(kwargs, phrase):
    args = {"num_classes": 3, **kwargs}
    with pytest.raises(AcolError, match=None) as info:
        build_model(**args)
    assert phrase in str(info.value)


def test_vgg_is_no_plain_cam_model():
    with pytest.raises(AcolError, match="no linear classifier"):
        plain_cam_model("vgg16", None)


def test_logits_of_a_linear_head_by_hand():
    """Two channels, two positions, two classes: the logits are the pooled class maps,
    worked out on paper. Maps: class 0 = 1*f0 + 2*f1 + 0.5 -> 5.5 and 11.5, mean 8.5;
    class 1 = 3*f0 - f1 - 1 -> 0 and 4, mean 2."""
    model = toy_model("p", ())
    set_head(model, 0, [[1.0, 2.0], [3.0, -1.0]], [0.5, -1.0])
    features = torch.tensor([[[[1.0, 3.0]], [[2.0, 4.0]]]])  # (1, 2, 1, 2)
    with torch.no_grad():
        assert model.logits(features).tolist() == [[8.5, 2.0]]


@pytest.mark.parametrize("head", ["linear", "conv"])
def test_logits_equal_the_pooled_class_maps(head):
    """The logits against the class maps pooled by a plain loop over positions, the maps
    computed from the parameters with torch.nn.functional (the conv head's trunk: conv,
    ReLU, conv, ReLU), in float64, not through the model's own modules."""
    torch.manual_seed(2)
    model = ACoL(nn.Identity(), 6, 5, "pp", [0.5], head).eval()
    features = torch.rand(3, 6, 4, 5)
    state = {k: v.double() for k, v in model.heads[0].state_dict().items()}
    hidden = features.double()
    if head == "conv":
        for n in (0, 2):
            hidden = torch.relu(torch.nn.functional.conv2d(
                hidden, state[f"trunk.{n}.weight"], state[f"trunk.{n}.bias"], padding=1))
    weight, bias = state["classifier.weight"][:, :, 0, 0], state["classifier.bias"]
    expected = torch.zeros(3, 5, dtype=torch.float64)
    for b in range(3):
        for c in range(5):
            total = 0.0
            for y in range(4):
                for x in range(5):
                    total += float(weight[c] @ hidden[b, :, y, x]) + float(bias[c])
            expected[b, c] = total / 20
    with torch.no_grad():
        found = model.logits(features).double()
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=0)
