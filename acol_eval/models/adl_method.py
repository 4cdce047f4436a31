"""ADL, the attention-based dropout layer (Choe and Shim, CVPR 2019), as a training
method: a parameter-free layer after chosen backbone stages that, in training, takes
the channel mean of the feature map as self-attention and multiplies the features by
either the drop mask (attention < gamma * the sample's maximum attention: the most
salient region hidden) or the importance map (sigmoid of the attention), the drop mask
with probability `drop_rate`, chosen once per layer and batch from the batch's
generator. In evaluation it is the identity, and it lives only in the training network
(`training_model`): the checkpoint and localize hold the plain model.

Defaults are wsolevaluation's (`--adl_drop_rate 0.75 --adl_threshold 0.9`). Stages are
torchvision module names of the backbone; a stage is any module on the backbone's
main path (a child of a Sequential chain from the feature extractor down). Where
wsolevaluation places ADL it is placed alike: ResNet-50 after layer3's first block and
after layer4's first and last blocks (every ResNet here alike), VGG16 after pool3,
conv4_3 and conv5_3. For the backbones wsolevaluation has not, the same pattern: after
the first block of the two last downsampling stages and at the end of the features.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import torch
from torch import Tensor, nn

from acol_eval.models.backbones import build_torchvision, feature_extractor, get_spec
from acol_eval.models.model import ACoL
from acol_eval.models.recipemethod import RecipeMethod, check_fraction
from acol_eval.models.trainmethod import register_method
from acol_eval.util.errors import AcolError

_RESNET = ("layer3.0", "layer4.0", "layer4")
DEFAULT_STAGES: dict[str, tuple[str, ...]] = {
    **{arch: _RESNET for arch in ("resnet18", "resnet34", "resnet50", "resnet101",
                                  "resnet152", "resnext50_32x4d", "wide_resnet50_2")},
    "vgg16": ("features.16", "features.22", "features.29"),  # pool3, relu4_3, relu5_3
    "vgg16_bn": ("features.23", "features.32", "features.42"),
    "mobilenet_v2": ("features.7", "features.14", "features.18"),
    "densenet121": ("features.transition2", "features.transition3", "features.norm5"),
    "efficientnet_b0": ("features.4.0", "features.6.0", "features.8"),
}


class AttentionDropout(nn.Module):
    """The ADL layer. `drop` is set before each training forward pass (by the method's
    prepare_batch): True applies the drop mask, False the importance map."""

    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.gamma = gamma
        self.drop = False

    def forward(self, features: Tensor) -> Tensor:
        if not self.training:
            return features
        attention = features.mean(1, keepdim=True)
        if self.drop:
            peak = attention.flatten(1).amax(1).view(-1, 1, 1, 1)
            return features * (attention < self.gamma * peak).to(features.dtype)
        return features * torch.sigmoid(attention)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


@cache
def stage_paths(arch: str) -> dict[str, str]:
    """torchvision name -> path inside the model's backbone, for every module on the
    backbone's main path (built on the meta device: no weights, no time)."""
    with torch.device("meta"):
        model = build_torchvision(arch)
    names = {id(module): name for name, module in model.named_modules()}
    found: dict[str, str] = {}

    def walk(module: nn.Module, prefix: str) -> None:
        for child_name, child in module.named_children():
            path = f"{prefix}{child_name}"
            if id(child) in names:
                found[names[id(child)]] = path
            if isinstance(child, nn.Sequential):
                walk(child, path + ".")

    walk(feature_extractor(model, arch), "")
    return found


def check_stages(arch: str, stages: Any, flag: str) -> list[str]:
    """The stage names, each a module of `arch`'s backbone main path, else AcolError."""
    if isinstance(stages, str):
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    if not isinstance(stages, (list, tuple)) or not stages or not all(
            isinstance(s, str) for s in stages):
        raise AcolError(f"{flag} {stages!r} is not a list of backbone stage names")
    known = stage_paths(arch)
    for stage in stages:
        if stage not in known:
            raise AcolError(f"{flag}: {arch} has no stage {stage!r} (a stage is a "
                            f"torchvision module name on the backbone's main path, e.g. "
                            f"{','.join(DEFAULT_STAGES[arch])})")
    if len(set(stages)) != len(stages):
        raise AcolError(f"{flag} {','.join(stages)} names a stage twice")
    return list(stages)


def _with_module(root: nn.Module, path: list[str], make: Any) -> nn.Module:
    """A shallow copy of `root` whose module at `path` is make(that module); every
    other module (and so every parameter and buffer) is shared with `root`."""
    clone = copy.copy(root)
    clone.__dict__["_modules"] = dict(root._modules)
    clone._modules[path[0]] = (make(root._modules[path[0]]) if len(path) == 1 else
                               _with_module(root._modules[path[0]], path[1:], make))
    return clone


@register_method("adl")
class AttentionDropoutMethod(RecipeMethod):
    """ADL: attention-based dropout after chosen backbone stages, in training only."""

    DEFAULTS = {"drop_rate": 0.75, "gamma": 0.9, "stages": None}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layers: list[AttentionDropout] = []  # those of the last training_model

    def check(self, values: dict[str, Any], arch: str | None) -> dict[str, Any]:
        stages = values["stages"]
        if arch is not None:
            get_spec(arch)
            if stages is None:
                stages = list(DEFAULT_STAGES[arch])
            stages = check_stages(arch, stages, self.flag("stages"))
        elif stages is None:
            raise AcolError("training method 'adl': the checkpoint names no stages")
        return {"drop_rate": check_fraction(self.flag("drop_rate"), values["drop_rate"]),
                "gamma": check_fraction(self.flag("gamma"), values["gamma"]),
                "stages": list(stages)}

    def training_model(self, model: ACoL) -> nn.Module:
        if self.arch is None:
            raise AcolError("internal: ADL builds its training network from a TrainConfig")
        paths = stage_paths(self.arch)
        backbone = model.backbone
        self.layers = []
        # deepest first: wrapping layer4 first would move layer4.0 one level down
        for stage in sorted(self.own["stages"], key=lambda s: -paths[s].count(".")):
            layer = AttentionDropout(self.own["gamma"])
            self.layers.append(layer)
            backbone = _with_module(backbone, paths[stage].split("."),
                                    lambda module, layer=layer: nn.Sequential(module, layer))
        net = copy.copy(model)
        net.__dict__["_modules"] = {**model._modules, "backbone": backbone}
        return net

    def prepare_batch(self, images: Tensor, labels: Tensor,
                      generator: torch.Generator) -> tuple[Tensor, Any]:
        draws = torch.rand(len(self.layers), generator=generator)
        for layer, draw in zip(self.layers, draws.tolist()):
            layer.drop = draw < self.own["drop_rate"]
        return images, labels

