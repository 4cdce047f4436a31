"""Post-hoc CAM methods (`localize --method`) on an acol-eval model, via pytorch-grad-cam.

`method_maps` makes the maps of chosen classes for a batch of images with one
of the library's methods (Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, Score-CAM,
Eigen-CAM, ...) on the first classifier's logits, or the model's own fused maps
(`model`). The library is pytorch-grad-cam (PyPI `grad-cam`): it is the most
used CAM library for PyTorch CNNs, every method there is one small subclass of
`BaseCAM` (weights per channel or a map per image), and it depends on
opencv-python-headless as we do. Maps come out at the target layer's
resolution (what the map store keeps), ReLU'd and min-max normalised per map,
the library's own scaling, with no upsampling.

Batching: one forward pass per batch and one backward pass per class rank (the
library's `BaseCAM.forward` does a forward pass with each backward; below the
target layer nothing depends on the class), then the library's own map making.
Where the library goes per image or repeats work we go around it, each way
tested against the library's output: Eigen-CAM ignores the class, so its map is
made once per batch, not per rank; the library's Score-CAM materialises B x C
masked copies of the batch at once (tens of GB for a batch of 32 on
MobileNetV2), keeps every masked pass's activations and loops per image and
class, so its weights are computed here in bounded chunks of masked images, for
every class rank from the same masked passes. Left as the library has them: the
Eigen methods' SVD per image (numpy), and the min-max scaling per map.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

from acol_eval.models.mapmethods import MapMethod
from acol_eval.models.model import ACoL, normalize_maps
from acol_eval.util.errors import AcolError

DEFAULT_TARGET_LAYER = "backbone"  # the backbone's output: the last feature map, at its stride
LIBRARY = "grad-cam"
# Score-CAM: masked images per forward pass (memory: SCORE_CHUNK x 3 x H x W floats)
SCORE_CHUNK = 64


class _AtLayerResolution:
    """Mixin: the library scales each CAM to this size; the layer's own keeps it unsampled."""

    def get_target_width_height(self, input_tensor: Tensor) -> tuple[int, int]:
        activation = self.activations_and_grads.activations[0]
        return int(activation.shape[-1]), int(activation.shape[-2])


class _SharedScoreCAM(_AtLayerResolution, ScoreCAM):
    """Score-CAM with the library's weights (softmax over channels of the class score of
    the image masked by each normalised, upsampled channel), computed in bounded chunks
    and once for all class ranks: set `wanted` (B, K) and `rank` before each call."""

    wanted: Tensor
    rank: int = 0
    _weights: Tensor | None = None

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        if self._weights is None:
            self._weights = _score_weights(
                self.model, self.activations_and_grads, input_tensor,
                torch.from_numpy(activations), self.wanted)
        return self._weights[:, self.rank].numpy()


_LIBRARY_CLASSES: dict[MapMethod, type[BaseCAM]] = {
    MapMethod.GRADCAM: GradCAM,
    MapMethod.GRADCAM_PLUSPLUS: GradCAMPlusPlus,
    MapMethod.XGRADCAM: XGradCAM,
    MapMethod.LAYERCAM: LayerCAM,
    MapMethod.EIGENCAM: EigenCAM,
    MapMethod.EIGENGRADCAM: EigenGradCAM,
    MapMethod.HIRESCAM: HiResCAM,
    MapMethod.GRADCAM_ELEMENTWISE: GradCAMElementWise,
}
_CAM_CLASSES: dict[MapMethod, type[BaseCAM]] = {
    method: type(f"{cls.__name__}AtLayer", (_AtLayerResolution, cls), {})
    for method, cls in _LIBRARY_CLASSES.items()
}
_CAM_CLASSES[MapMethod.SCORECAM] = _SharedScoreCAM
# methods whose map does not depend on the class: made once per batch, copied to every rank
_CLASS_AGNOSTIC = {MapMethod.EIGENCAM}


def library_class(method: MapMethod) -> type[BaseCAM]:
    """The pytorch-grad-cam class a method stands for (tests compare against it)."""
    return ScoreCAM if method is MapMethod.SCORECAM else _LIBRARY_CLASSES[method]


# --------------------------------------------------------------------------- target layers


def _on_first_path(name: str) -> bool:
    """Modules the first classifier's logits run through: the backbone and head 0."""
    return any(name == root or name.startswith(root + ".") for root in ("backbone", "heads.0"))


def resolve_target_layer(model: ACoL, name: str | None) -> str:
    """The module path of the target layer (None: the backbone's output), checked.

    An unknown name, or a module the first classifier does not use, is a one-line
    AcolError that lists a few valid names.
    """
    name = DEFAULT_TARGET_LAYER if name in (None, "") else name
    modules = dict(model.named_modules())
    if name in modules and _on_first_path(name):
        return name
    backbone_children = [f"backbone.{child}" for child, _ in model.backbone.named_children()]
    examples = ["backbone", *backbone_children[-3:], "heads.0"]
    why = ("is not used by the first classifier" if name in modules
           else "is not a module of this model")
    raise AcolError(f"--target-layer {name!r} {why}; valid names include: "
                    f"{', '.join(examples)}")


# Methods whose map is the class map itself where the first logit's gradient is the same
# at every position of the target layer. With a head that is linear in the layer and
# then averaged (a 1x1 conv and global average pooling: logit_c = sum_k w_ck mean(A_k)
# + b_c) the gradient is w_ck / (h w) everywhere, so
#   Grad-CAM:  weights = mean gradient = w_ck / hw        -> ReLU(sum_k w_ck A_k) / hw
#   HiResCAM:  sum_k gradient * A_k = sum_k w_ck A_k / hw  -> the same
#   XGrad-CAM: weights = sum(A_k * gradient) / (sum(A_k) + 1e-7) = w_ck / hw (up to the
#              1e-7 of the library's guard)                 -> the same
# i.e. the classifier's CAM without its bias, ReLU'd, and after min-max scaling the
# model's own map where that CAM is not negative. Not so for the others: Grad-CAM++ and
# LayerCAM keep only positive gradients' parts and reweight them, Grad-CAM element-wise
# ReLUs each channel's product, Eigen-CAM and Score-CAM use no gradient.
_CAM_WHERE_GRADIENT_IS_CONSTANT = {MapMethod.GRADCAM, MapMethod.HIRESCAM, MapMethod.XGRADCAM}


def _constant_gradient_layers(model: ACoL) -> set[str]:
    """Target layers at which the first logit is the spatial mean of a map linear in the
    layer's output: the class maps (the first head and its last 1x1 conv, any head), and
    with a linear head the head's input, which is the backbone's output and that of the
    last module of each sequential block that ends it (backbone.7, backbone.7.1, ...)."""
    layers = {"heads.0", "heads.0.classifier"}
    if model.heads[0].kind == "linear":
        layers |= {"heads.0.trunk", DEFAULT_TARGET_LAYER}
        module, name = model.backbone, DEFAULT_TARGET_LAYER
        while isinstance(module, nn.Sequential) and len(module):
            child, module = list(module.named_children())[-1]
            name = f"{name}.{child}"
            layers.add(name)
    return layers


def cam_note(model: ACoL, method: MapMethod, target_layer: str | None) -> str | None:
    """A line for the start of a run whose post-hoc maps are the model's own CAM (see
    above), naming a layer that gives a different map; None for every other run."""
    if method not in _CAM_WHERE_GRADIENT_IS_CONSTANT:
        return None
    layer = target_layer or DEFAULT_TARGET_LAYER
    if layer not in _constant_gradient_layers(model):
        return None
    where = ("the class maps" if layer.startswith("heads.0") and layer != "heads.0.trunk"
             else f"the input of a {model.heads[0].kind} head")
    if type(model).classifier_maps is not ACoL.classifier_maps:  # fsl, ddt: maps of their own
        own = ("its classifier's CAM, not the model's own maps (--method model gives "
               "those, which are not a classifier's CAM)")
    elif model.recipe.count("p") == 1:
        own = "the model's own CAM (--method model)"
    else:
        own = "its first classifier's CAM (--method model fuses it with the others')"
    children = [name for name, _ in model.backbone.named_children()]
    other = (f"; --target-layer backbone.{children[-2]} (an earlier layer) gives a "
             "different map" if len(children) > 1 else "")
    return (f"note: {method.value} at {layer} ({where}) equals {own} up to normalisation "
            f"(ReLU, then min-max){other}")


def method_record(method: MapMethod, target_layer: str | None) -> dict[str, str | None]:
    """What the map store must record about how its maps were made (maps.json)."""
    if method is MapMethod.MODEL:
        return {"method": method.value, "target_layer": None, "library": None}
    version = importlib.metadata.version(LIBRARY)
    return {"method": method.value, "target_layer": target_layer or DEFAULT_TARGET_LAYER,
            "library": f"{LIBRARY} {version}", "target": "first classifier logit",
            "scaling": "ReLU, then min-max per map, at the target layer's resolution"}


# ------------------------------------------------------------------- what the library sees


class _FirstLogits(nn.Module):
    """An ACoL model as the library expects it: images -> first classifier's logits.

    The target layer's output is cut from the graph below it and made a leaf that
    requires grad (the model's parameters are frozen meanwhile), so a backward
    pass runs only from the logits down to that layer: no weight gradients, no
    backbone backward below the layer. After the library's hooks have kept that
    leaf, the layers above get a copy: an in-place op there (ResNet's ReLU after
    `bn1`) would otherwise change the kept activation or fail on a leaf.
    """

    def __init__(self, model: ACoL, target_layer: str) -> None:
        super().__init__()
        self.acol = model
        self.target_layer = target_layer
        # a linear head's logits skip its 1x1 conv (pooling first); a target inside the
        # head needs the head run as a map so that its modules are called
        self.full_head = target_layer.startswith("heads.0") or model.heads[0].kind != "linear"
        self.calls = 0
        self.taps = [self.layer.register_forward_hook(self._cut)]

    def guard_after_library(self) -> None:
        """Hand the layers above a copy; call once the library has registered its hooks."""
        self.taps.append(self.layer.register_forward_hook(lambda m, i, output: output.clone()))

    @property
    def layer(self) -> nn.Module:
        return self.acol.get_submodule(self.target_layer)

    def _cut(self, module: nn.Module, inputs, output):
        self.calls += 1
        if not isinstance(output, Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise AcolError(f"--target-layer {self.target_layer!r} gives {shape}, "
                            "not a (batch, channels, height, width) map")
        return output.detach().requires_grad_(torch.is_grad_enabled())

    def forward(self, images: Tensor) -> Tensor:
        self.calls = 0
        features = self.acol.backbone(images)
        logits = (self.acol.heads[0](features).mean((2, 3)) if self.full_head
                  else self.acol.logits(features))
        if self.calls != 1:
            raise AcolError(f"--target-layer {self.target_layer!r} runs {self.calls} times in "
                            "one forward pass (a shared module); name its parent block")
        return logits

    def release(self) -> None:
        for tap in self.taps:
            tap.remove()


@contextlib.contextmanager
def _gradients_for_cam(model: nn.Module) -> Iterator[None]:
    """Autograd on (even inside localize's inference_mode), parameters frozen, restored after;
    float32 even inside an autocast region (the library turns gradients into numpy)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    device = next(model.parameters()).device.type
    with torch.inference_mode(False), torch.enable_grad(), \
            torch.autocast(device, enabled=False):
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        try:
            yield
        finally:
            for parameter, flag in flags:
                parameter.requires_grad_(flag)


# --------------------------------------------------------------------------- maps


def method_maps(model: ACoL, images: Tensor, classes: Tensor, method: MapMethod | str,
                target_layer: str | None = None) -> Tensor:
    """Maps of chosen classes for a batch: images (B, 3, H, W), classes (B, K) -> (B, K, h, w).

    float32 in [0, 1] per map, on the images' device. `model`: the fused maps
    (h, w at the feature stride). Post-hoc methods: the library's map of the
    first classifier's logit of each class at `target_layer` (a module path such
    as 'backbone.7'; None: the backbone's output), ReLU'd and min-max scaled,
    at that layer's resolution (h, w), not upsampled.
    """
    method = MapMethod.parse(method)
    classes = classes.to(images.device).long()
    if classes.dim() != 2 or classes.shape[0] != images.shape[0]:
        raise AcolError(f"classes must be (batch, k), got {tuple(classes.shape)}")
    if method is MapMethod.MODEL:
        with torch.no_grad():
            return model.class_maps(images, classes).float()
    layer = resolve_target_layer(model, target_layer)
    wrapped = _FirstLogits(model, layer)
    try:
        with _gradients_for_cam(model):
            images = images.clone() if images.is_inference() else images
            maps = _library_maps(wrapped, images, classes, method)
    finally:
        wrapped.release()
    return normalize_maps(torch.from_numpy(maps).to(images.device).float())


def _library_maps(wrapped: _FirstLogits, images: Tensor, classes: Tensor,
                  method: MapMethod) -> np.ndarray:
    """(B, K, h, w) numpy maps: one forward pass, then per class rank one backward pass
    and the library's own map making (`compute_cam_per_layer`, `aggregate_multi_layers`).

    These are the steps of the library's `BaseCAM.forward`, less its forward pass per
    call: below the target layer nothing depends on the class, and with the graph
    cut at the layer each backward pass covers only the layers above it.
    """
    cam = _CAM_CLASSES[method](wrapped, [wrapped.layer])
    wrapped.guard_after_library()
    hooks = cam.activations_and_grads
    try:
        if isinstance(cam, _SharedScoreCAM):
            cam.wanted = classes
        with torch.set_grad_enabled(cam.uses_gradients):
            outputs = hooks(images)  # the forward pass; the library's hooks keep the layer
        ranks = 1 if method in _CLASS_AGNOSTIC else classes.shape[1]
        per_rank = []
        for rank in range(ranks):
            cam.rank = rank
            targets = [ClassifierOutputTarget(int(c)) for c in classes[:, rank].tolist()]
            if cam.uses_gradients:
                hooks.gradients = []  # the library's gradient hook prepends each backward's
                loss = sum(target(output) for target, output in zip(targets, outputs))
                loss.backward(retain_graph=rank < ranks - 1)
            per_layer = cam.compute_cam_per_layer(images, targets, False)
            per_rank.append(cam.aggregate_multi_layers(per_layer))
    finally:
        hooks.release()
    maps = np.stack(per_rank, 1)
    return np.repeat(maps, classes.shape[1], 1) if ranks == 1 else maps


@torch.no_grad()
def _score_weights(model: nn.Module, hooks, images: Tensor, activations: Tensor,
                   wanted: Tensor) -> Tensor:
    """Score-CAM channel weights (B, K, C) of every wanted class, on the CPU.

    The library's recipe: each channel upsampled bilinearly (corners aligned) to
    the input size, min-max scaled (1e-8 guard), multiplied into the image; the
    class logit of each masked image, softmax over channels. Here in chunks of
    SCORE_CHUNK masked images over all (image, channel) pairs, all classes at once.
    """
    batch, channels = activations.shape[:2]
    size = images.shape[-2:]
    scores = torch.empty(batch * channels, wanted.shape[1])
    for start in range(0, batch * channels, SCORE_CHUNK):
        pairs = torch.arange(start, min(start + SCORE_CHUNK, batch * channels))
        image_of, channel_of = pairs // channels, pairs % channels
        maps = activations[image_of, channel_of][:, None].to(images.device)
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=True)
        low = maps.amin((2, 3), keepdim=True)
        high = maps.amax((2, 3), keepdim=True)
        masks = (maps - low) / (high - low + 1e-8)
        logits = model(images[image_of.to(images.device)] * masks)
        del hooks.activations[1:]  # the library's hook keeps every pass; only the first counts
        scores[start:start + len(pairs)] = logits.gather(
            1, wanted[image_of.to(wanted.device)]).float().cpu()
    return scores.view(batch, channels, -1).transpose(1, 2).softmax(-1)
