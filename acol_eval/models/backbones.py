"""Torchvision classification backbones cut before their global pooling.

Each supported architecture is described by one :class:`BackboneSpec`: how to
take its feature extractor out of the torchvision model, how many channels it
gives, and which stages can trade their stride for dilation so that the class
maps come out at stride 16 or 8 instead of 32 (CAM resolution decides box
quality). Nothing here reads files: weights arrive as state dicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from acol_eval.util.errors import AcolError

FEATURE_STRIDES = (32, 16, 8)


@dataclass(frozen=True)
class BackboneSpec:
    """How one torchvision architecture becomes a CAM backbone."""

    family: str
    channels: int
    # Names (inside the torchvision model) of the downsampling stages that can be
    # undone, latest first: undoing the first gives stride 16, both give stride 8.
    stages: tuple[str, ...]
    # Name of the final linear classifier after global pooling in the torchvision
    # model, or None when the classifier is not a 1x1 map over pooled features.
    classifier: str | None


_RESNET_STAGES = ("layer4", "layer3")
SPECS: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet", 512, _RESNET_STAGES, "fc"),
    "resnet34": BackboneSpec("resnet", 512, _RESNET_STAGES, "fc"),
    "resnet50": BackboneSpec("resnet", 2048, _RESNET_STAGES, "fc"),
    "resnet101": BackboneSpec("resnet", 2048, _RESNET_STAGES, "fc"),
    "resnet152": BackboneSpec("resnet", 2048, _RESNET_STAGES, "fc"),
    "resnext50_32x4d": BackboneSpec("resnet", 2048, _RESNET_STAGES, "fc"),
    "wide_resnet50_2": BackboneSpec("resnet", 2048, _RESNET_STAGES, "fc"),
    # VGG: the last two max-pools (indices in `features`), no pooled linear classifier.
    "vgg16": BackboneSpec("vgg", 512, ("features.30", "features.23"), None),
    "vgg16_bn": BackboneSpec("vgg", 512, ("features.43", "features.33"), None),
    "mobilenet_v2": BackboneSpec(
        "mobilenet", 1280, ("features.14", "features.7"), "classifier.1"
    ),
    "densenet121": BackboneSpec(
        "densenet", 1024, ("features.transition3.pool", "features.transition2.pool"), "classifier"
    ),
    "efficientnet_b0": BackboneSpec(
        "efficientnet", 1280, ("features.6", "features.4"), "classifier.1"
    ),
}

SUPPORTED_ARCHS = tuple(SPECS)


def get_spec(arch: str) -> BackboneSpec:
    try:
        return SPECS[arch]
    except KeyError:
        raise AcolError(
            f"unknown architecture {arch!r}; supported: {', '.join(SUPPORTED_ARCHS)}"
        ) from None


def check_stride(arch: str, feature_stride: int) -> None:
    spec = get_spec(arch)
    allowed = FEATURE_STRIDES[: len(spec.stages) + 1]
    if feature_stride not in allowed:
        raise AcolError(
            f"{arch} cannot give feature stride {feature_stride}; "
            f"supported: {', '.join(str(s) for s in sorted(allowed))}"
        )


def build_torchvision(arch: str, num_classes: int = 1000) -> nn.Module:
    """The plain torchvision model, randomly initialised (weights are loaded later)."""
    get_spec(arch)
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def feature_extractor(model: nn.Module, arch: str) -> nn.Module:
    """The part of a torchvision classifier that runs before global pooling."""
    family = get_spec(arch).family
    if family == "resnet":
        return nn.Sequential(
            *(getattr(model, n) for n in ("conv1", "bn1", "relu", "maxpool")),
            *(getattr(model, f"layer{i}") for i in range(1, 5)),
        )
    if family == "densenet":
        # torchvision applies a ReLU between `features` and the pooling.
        return nn.Sequential(model.features, nn.ReLU(inplace=False))
    return model.features


def classifier_layer(model: nn.Module, arch: str) -> nn.Linear:
    """The final linear layer applied after global pooling, for plain CAM models."""
    name = get_spec(arch).classifier
    if name is None:
        raise AcolError(
            f"{arch} has no linear classifier after global pooling, so it cannot be "
            "used as a plain CAM model; train an ACoL head on it instead"
        )
    return model.get_submodule(name)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _is_downsampling(module: nn.Module) -> bool:
    stride = getattr(module, "stride", 1)
    stride = stride if isinstance(stride, int) else max(stride)
    return isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and stride > 1


def undo_stage_stride(model: nn.Module, stage: str) -> None:
    """Remove the stride-2 step of one stage and dilate every later spatial conv by 2.

    The strided conv itself keeps its dilation (as torchvision's own
    `replace_stride_with_dilation` does); pooling layers become identities.
    Shapes of all weights are unchanged, so pretrained state dicts still load.
    """
    names = [name for name, _ in model.named_modules()]
    stage_modules = [
        n for n in names if (n == stage or n.startswith(stage + "."))
        and _is_downsampling(model.get_submodule(n))
    ]
    if not stage_modules:
        raise AcolError(f"internal: stage {stage!r} has no downsampling layer")
    first = names.index(stage_modules[0])
    for name in stage_modules:
        module = model.get_submodule(name)
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
        else:
            _set_submodule(model, name, nn.Identity())
    for name in names[first + 1 :]:
        module = model.get_submodule(name)
        if isinstance(module, nn.Conv2d) and max(module.kernel_size) > 1:
            dilation = module.dilation[0] * 2
            module.dilation = (dilation, dilation)
            module.padding = tuple(dilation * (k - 1) // 2 for k in module.kernel_size)


def build_backbone(
    arch: str,
    feature_stride: int = 32,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> tuple[nn.Module, nn.Linear | None]:
    """Feature extractor at the given stride, and the torchvision classifier if any.

    `state_dict` is a torchvision-format state dict of the whole classifier
    (for example the ImageNet weights); it is loaded before the cut.
    """
    spec = get_spec(arch)
    check_stride(arch, feature_stride)
    num_classes = 1000
    if state_dict is not None and spec.classifier is not None:
        weight = state_dict.get(spec.classifier + ".weight")
        if weight is not None:
            num_classes = weight.shape[0]
    model = build_torchvision(arch, num_classes)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise AcolError(f"the weights do not fit {arch}: {first}") from None
    for stage in spec.stages[: FEATURE_STRIDES.index(feature_stride)]:
        undo_stage_stride(model, stage)
    features = feature_extractor(model, arch)
    classifier = classifier_layer(model, arch) if spec.classifier else None
    return features, classifier


def imagenet_categories(arch: str) -> list[str]:
    """ImageNet class names in torchvision's order (ships with torchvision, no download)."""
    return list(torchvision.models.get_model_weights(arch).DEFAULT.meta["categories"])

