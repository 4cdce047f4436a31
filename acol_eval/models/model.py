"""The ACoL model: a backbone, one classifier head per recipe letter, erasing between them.

Recipe letters (seed notation): ``p`` is a classifier trained with cross-entropy
whose map joins the fused map; ``n`` is an adversarial classifier trained with
the rest cross-entropy whose map is left out of the fusion. Classifier k+1 sees
the features with every position erased where classifier k's normalised map of
the guide class reaches delta_k; erasing accumulates along the chain.

The model is pure: no file I/O. Weights arrive as state dicts (see `weights.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import NamedTuple

import torch
from torch import Tensor, nn

from acol_eval.models.backbones import build_backbone, get_spec
from acol_eval.util.errors import AcolError


class Head(str, Enum):
    """`--head`: linear = a 1x1 conv (the seed); conv = 3x3-3x3-1x1 (the official code)."""

    LINEAR = "linear"
    CONV = "conv"


HEADS = tuple(head.value for head in Head)
DEFAULT_DELTA = 0.6


def check_recipe(recipe: str) -> str:
    if not recipe or set(recipe) - {"p", "n"}:
        raise AcolError(f"recipe {recipe!r} must be a non-empty string over the letters p and n")
    if recipe[0] != "p":
        raise AcolError(f"recipe {recipe!r} must start with 'p': the first classifier classifies")
    return recipe


def expand_deltas(deltas: float | Sequence[float], recipe: str) -> tuple[float, ...]:
    """One erasing threshold per erasing step (len(recipe) - 1 of them)."""
    values = [float(deltas)] if isinstance(deltas, (int, float)) else [float(d) for d in deltas]
    steps = len(recipe) - 1
    if not values:
        values = [DEFAULT_DELTA]
    if len(values) == 1:
        values = values * steps
    if len(values) != steps:
        raise AcolError(
            f"recipe {recipe!r} has {steps} erasing step(s) but {len(values)} deltas were given"
        )
    for value in values:
        if not 0.0 < value <= 1.0:
            raise AcolError(f"delta {value} is outside (0, 1]")
    return tuple(values)


def normalize_maps(maps: Tensor) -> Tensor:
    """Min-max normalise each map over its last two dims; constant or non-finite maps -> 0."""
    flat = maps.flatten(-2)
    low = flat.amin(-1, keepdim=True)
    high = flat.amax(-1, keepdim=True)
    span = high - low
    valid = torch.isfinite(flat).all(-1, keepdim=True) & (span > 0)
    scaled = (flat - low) / torch.where(valid, span, torch.ones_like(span))
    return torch.where(valid, scaled, torch.zeros_like(scaled)).view_as(maps)


class ClassifierHead(nn.Module):
    """A fully convolutional classifier: class maps, then global average pooling.

    ``linear``: a 1x1 conv to the classes (the seed). ``conv``: 3x3 conv to 1024,
    ReLU, 3x3 conv to 1024, ReLU, 1x1 conv to the classes (the official code).
    """

    def __init__(self, in_channels: int, num_classes: int, kind: str = "linear") -> None:
        super().__init__()
        if kind not in HEADS:
            raise AcolError(f"head {kind!r} is not one of {', '.join(HEADS)}")
        self.kind = Head(kind).value  # a plain string: compared and stored as one
        if kind == "conv":
            self.trunk: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, 1024, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(1024, 1024, 3, padding=1),
                nn.ReLU(inplace=True),
            )
            in_channels = 1024
        else:
            self.trunk = nn.Identity()
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, features: Tensor) -> Tensor:
        """Class maps for every class, (B, N, h, w)."""
        return self.classifier(self.trunk(features))

    def selected_maps(self, features: Tensor, classes: Tensor) -> Tensor:
        """Maps of chosen classes only: features (B, C, h, w), classes (B, K) -> (B, K, h, w)."""
        hidden = self.trunk(features)
        weight = self.classifier.weight[:, :, 0, 0][classes]  # (B, K, C)
        bias = self.classifier.bias[classes]  # (B, K)
        return torch.einsum("bchw,bkc->bkhw", hidden, weight) + bias[..., None, None]


class ACoLOutput(NamedTuple):
    logits: list[Tensor]  # one (B, N) tensor per classifier
    maps: list[Tensor]  # one (B, N, h, w) tensor of raw class maps per classifier


class ACoL(nn.Module):
    """Backbone features -> chain of classifiers with adversarial erasing."""

    def __init__(
        self,
        backbone: nn.Module,
        in_channels: int,
        num_classes: int,
        recipe: str = "pp",
        deltas: float | Sequence[float] = DEFAULT_DELTA,
        head: str = "linear",
    ) -> None:
        super().__init__()
        self.recipe = check_recipe(recipe)
        self.deltas = expand_deltas(deltas, recipe)
        if "n" in recipe and num_classes < 2:
            raise AcolError("the adversarial classifier 'n' needs at least two classes")
        self.num_classes = num_classes
        self.head_kind = str(getattr(head, "value", head))
        self.backbone = backbone
        self.heads = nn.ModuleList(
            ClassifierHead(in_channels, num_classes, head) for _ in recipe
        )

    def forward(self, images: Tensor, guide: Tensor | None = None) -> ACoLOutput:
        """Training pass: logits and raw maps of every classifier.

        `guide` (B,) is the class whose map drives erasing: the label in
        training; when None, the first classifier's prediction.
        """
        features = self.backbone(images)
        logits, maps = [], []
        for index, head in enumerate(self.heads):
            raw = head(features)
            logits.append(raw.mean((2, 3)))
            maps.append(raw)
            if index < len(self.heads) - 1:
                if guide is None:
                    guide = logits[0].argmax(1)
                guided = raw[torch.arange(raw.shape[0], device=raw.device), guide]
                erase = normalize_maps(guided.detach()) >= self.deltas[index]
                features = features * (~erase).unsqueeze(1).to(features.dtype)
        return ACoLOutput(logits, maps)

    def logits(self, features: Tensor) -> Tensor:
        """The first classifier's logits (the model's prediction) from backbone features."""
        head = self.heads[0]
        if head.kind == "linear":
            # GAP(W F + b) = W GAP(F) + b: pool first, 1/(h*w) of the work (1000 classes
            # on a 7x7 map would cost ~2.5% of a ResNet-50 forward pass)
            weight = head.classifier.weight[:, :, 0, 0]
            return torch.nn.functional.linear(features.mean((2, 3)), weight,
                                              head.classifier.bias)
        return head(features).mean((2, 3))

    def classifier_maps(self, features: Tensor, classes: Tensor) -> Tensor:
        """Normalised maps of every classifier for chosen classes, class-specific erasing.

        features (B, C, h, w), classes (B, K) -> (B, K, L, h, w) for L classifiers.
        Each requested class guides its own erasing chain.
        """
        batch, k = classes.shape
        height, width = features.shape[-2:]
        keep = None  # (B, K, h, w) accumulated erasing mask, as 0/1
        expanded = None  # per-class erased features, only for non-linear heads
        out = []
        for index, head in enumerate(self.heads):
            if keep is None:
                raw = head.selected_maps(features, classes)
            elif head.kind == "linear":
                # A 1x1 head is linear, so W_c . (F * keep) + b_c = (W_c . F) * keep + b_c:
                # no need to materialise one erased feature tensor per class.
                bias = head.classifier.bias[classes][..., None, None]
                raw = (head.selected_maps(features, classes) - bias) * keep + bias
            else:
                if expanded is None:
                    expanded = features.unsqueeze(1).expand(batch, k, *features.shape[1:])
                erased = (expanded * keep.unsqueeze(2)).flatten(0, 1)
                raw = head.selected_maps(erased, classes.reshape(-1, 1)).view(
                    batch, k, height, width
                )
            normalised = normalize_maps(raw)
            out.append(normalised)
            if index < len(self.heads) - 1:
                step_keep = (normalised < self.deltas[index]).to(features.dtype)
                keep = step_keep if keep is None else keep * step_keep
        return torch.stack(out, 2)

    def fused_maps(self, features: Tensor, classes: Tensor) -> Tensor:
        """Element-wise max of the `p` classifiers' normalised maps, (B, K, h, w)."""
        per_classifier = self.classifier_maps(features, classes)
        p_index = [i for i, letter in enumerate(self.recipe) if letter == "p"]
        return per_classifier[:, :, p_index].amax(2)

    def class_maps(self, images: Tensor, classes: Tensor) -> Tensor:
        """Fused maps of chosen classes (B, K) straight from images."""
        return self.fused_maps(self.backbone(images), classes)


def build_model(
    arch: str,
    num_classes: int,
    recipe: str = "pp",
    deltas: float | Sequence[float] = DEFAULT_DELTA,
    head: str = "linear",
    feature_stride: int = 32,
    backbone_state: dict[str, Tensor] | None = None,
) -> ACoL:
    """An ACoL model on a torchvision backbone (optionally with pretrained weights)."""
    check_recipe(recipe)
    if num_classes < 1:
        raise AcolError("the model needs at least one class")
    backbone, _ = build_backbone(arch, feature_stride, backbone_state)
    return ACoL(backbone, get_spec(arch).channels, num_classes, recipe, deltas, head)


def plain_cam_model(
    arch: str, state_dict: dict[str, Tensor] | None, feature_stride: int = 32
) -> ACoL:
    """A plain torchvision classifier as a CAM model (recipe `p`, linear head).

    Its final linear layer after global pooling becomes the 1x1 classifier, so
    the global average of the class maps equals the original logits.
    """
    backbone, fc = build_backbone(arch, feature_stride, state_dict)
    if fc is None:
        raise AcolError(f"{arch} has no linear classifier after global pooling")
    model = ACoL(backbone, fc.in_features, fc.out_features, "p", (), "linear")
    with torch.no_grad():
        model.heads[0].classifier.weight.copy_(fc.weight[:, :, None, None])
        model.heads[0].classifier.bias.copy_(fc.bias)
    return model
