"""The few-shot learning (FSL) baseline as a training method: a class-agnostic foreground
head trained on the box masks of K box-labelled validation images per class, beside the
usual classification head trained on the train split's image labels.

Choe et al.'s fair WSOL protocol (CVPR 2020) found that using the few box-labelled images
that WSOL already spends on choosing models and thresholds to *train* a localiser beats
every WSOL method; this is that baseline, so a WSOL result can be read against it.

- Network (`ForegroundACoL`): the backbone, a `p` classifier (a linear 1x1 head, as CAM's:
  its prediction makes Top-1 Loc defined) and a 1x1 convolution of the same features to
  one foreground channel. Its map for every class is the foreground map: sigmoid of the
  foreground logits, min-max normalised like every map. So localize, calibration, boxes
  and score read it like a CAM, and the top-1 map and the label's map are the same.
- Loss: cross-entropy on the classification batch plus `foreground_weight` times the
  pixel-wise binary cross-entropy between the foreground logits, upsampled bilinearly to
  the input, and the box mask (1 inside any box of the image). Pixel-wise BCE is the
  paper's loss; it scores every pixel of the image as object or not, which is what a box
  mask labels, and needs no class.
- Schedule: every training step appends `box_batch` box images (drawn without replacement
  from the K x classes, with their own random crop and flip, all from the step's seeded
  generator) to the classification batch; one forward, one backward, the run's optimiser
  and schedule. The foreground head learns at the heads' rate (--head-lr-mult).
- metrics.csv: `train_loss_1p` is the step's whole loss (cross-entropy + weighted BCE);
  accuracy is the classifier's on the train images only; validation has no box term.

The box images arrive through `before_training` as a `BoxMasks` (train draws them: which
images, how many, and that none is a test or calibration image is train's business).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acol_eval.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from acol_eval.models.backbones import build_backbone, get_spec
from acol_eval.models.model import ACoL, ACoLOutput, normalize_maps
from acol_eval.models.trainmethod import TrainingMethod, register_method
from acol_eval.util.errors import AcolError


@dataclass(frozen=True)
class BoxMasks:
    """Box-labelled images for the foreground head: `images` (n, 3, S, S) uint8 RGB, each
    resized to a square of side S (train's resize size), and `masks` (n, S, S) uint8, 1
    inside any of the image's boxes."""

    images: Tensor
    masks: Tensor

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dim() != 4 or self.masks.shape != (n, *self.images.shape[2:]):
            raise AcolError(f"box images {tuple(self.images.shape)} and masks "
                            f"{tuple(self.masks.shape)} do not match")

    def __len__(self) -> int:
        return int(self.images.shape[0])


class ForegroundACoL(ACoL):
    """CAM's network (recipe `p`, linear head) with a foreground head beside it; every
    class's map is the foreground map."""

    def __init__(self, backbone: nn.Module, in_channels: int, num_classes: int) -> None:
        super().__init__(backbone, in_channels, num_classes, "p", (), "linear")
        self.foreground = nn.Conv2d(in_channels, 1, 1)

    def forward(self, images: Tensor, guide: Tensor | None = None) -> ACoLOutput:
        """logits [classifier]; maps [class maps, foreground logits (B, 1, h, w)]."""
        features = self.backbone(images)
        raw = self.heads[0](features)
        return ACoLOutput([raw.mean((2, 3))], [raw, self.foreground(features)])

    def foreground_map(self, features: Tensor) -> Tensor:
        """(B, 1, h, w) in [0, 1]: the foreground probability, min-max normalised."""
        return normalize_maps(torch.sigmoid(self.foreground(features).float()))

    def classifier_maps(self, features: Tensor, classes: Tensor) -> Tensor:
        batch, k = classes.shape
        fg = self.foreground_map(features)
        return fg[:, None].expand(batch, k, 1, *fg.shape[-2:])

    def fused_maps(self, features: Tensor, classes: Tensor) -> Tensor:
        return self.classifier_maps(features, classes)[:, :, 0]


class FSLTargets(NamedTuple):
    """A training step's targets: the classification labels of the first images of the
    batch, and the masks of the box images appended after them."""

    labels: Tensor
    masks: Tensor


@register_method("fsl")
class FSLMethod(TrainingMethod):
    """The few-shot learning baseline: a foreground head trained on K box masks per
    class, and CAM's classifier on the image labels."""

    uses_boxes = True

    def __init__(self, box_batch: int = 16, foreground_weight: float = 1.0) -> None:
        super().__init__()
        if isinstance(box_batch, bool) or int(box_batch) != box_batch or box_batch < 1:
            raise AcolError(f"fsl: box_batch {box_batch!r} must be a whole number above 0")
        if not 0 < float(foreground_weight) < float("inf"):
            raise AcolError(f"fsl: foreground_weight {foreground_weight!r} must be above 0")
        self.box_batch, self.foreground_weight = int(box_batch), float(foreground_weight)
        self.boxes: BoxMasks | None = None
        self.crop = 0  # the input size: box images are cropped to it like train's

    def describe(self) -> str:
        # a method rebuilt from a checkpoint (localize) holds no box images: the budget
        # is the checkpoint's --boxes-per-class, so say only what this object knows
        shown = "" if self.boxes is None else f"{len(self.boxes)} box images, "
        return f"method fsl ({shown}{self.box_batch} box images per step)"

    def hyperparameters(self) -> dict[str, Any]:
        return {"box_batch": self.box_batch, "foreground_weight": self.foreground_weight}

    def model(self, arch: str, num_classes: int, feature_stride: int,
              backbone_state: dict[str, Tensor] | None = None) -> ACoL:
        if num_classes < 1:
            raise AcolError("the model needs at least one class")
        backbone, _ = build_backbone(arch, feature_stride, backbone_state)
        return ForegroundACoL(backbone, get_spec(arch).channels, num_classes)

    def param_groups(self, model: ACoL, lr: float,
                     head_lr_mult: Sequence[float]) -> list[dict[str, Any]]:
        heads = [*model.heads.parameters(), *model.foreground.parameters()]
        return [{"params": list(model.backbone.parameters()), "lr": lr},
                {"params": heads, "lr": lr * head_lr_mult[0]}]

    def before_training(self, model: ACoL, data: Any, config: Any,
                        log: Callable[[str], None]) -> None:
        boxes = getattr(data, "box_masks", None)
        if boxes is None or not len(boxes):
            raise AcolError("training method 'fsl' needs box-labelled images "
                            "(--boxes-per-class K)")
        self.use_boxes(boxes, config.input_size)

    def use_boxes(self, boxes: BoxMasks, crop: int) -> None:
        if boxes.images.shape[-1] < crop:
            raise AcolError(f"box images of side {boxes.images.shape[-1]} are smaller than "
                            f"the input size {crop}")
        self.boxes, self.crop = boxes, int(crop)

    # ----------------------------------------------------------------- the step's hooks

    def box_batch_of(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(images (m, 3, crop, crop) normalised float, masks (m, crop, crop) float) of one
        step: m box images without replacement, each with a random crop and flip, drawn
        from `generator` in that order (indices, then top, left, flip per image)."""
        assert self.boxes is not None
        count = len(self.boxes)
        chosen = torch.randperm(count, generator=generator)[:min(self.box_batch, count)]
        side, crop = self.boxes.images.shape[-1], self.crop
        offsets = torch.randint(0, side - crop + 1, (len(chosen), 2), generator=generator)
        flips = torch.rand(len(chosen), generator=generator) < 0.5
        images, masks = [], []
        for index, (top, left), flip in zip(chosen.tolist(), offsets.tolist(), flips.tolist()):
            image = self.boxes.images[index, :, top:top + crop, left:left + crop]
            mask = self.boxes.masks[index, top:top + crop, left:left + crop]
            if flip:
                image, mask = image.flip(-1), mask.flip(-1)
            images.append(image)
            masks.append(mask)
        mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        std = torch.tensor(IMAGENET_STD)[:, None, None]
        pixels = (torch.stack(images).float() / 255.0 - mean) / std
        return pixels, torch.stack(masks).float()

    def prepare_batch(self, images: Tensor, labels: Tensor,
                      generator: torch.Generator) -> tuple[Tensor, Any]:
        if self.boxes is None:
            return images, labels
        boxes, masks = self.box_batch_of(generator)
        boxes = boxes.to(images.device, images.dtype)
        return torch.cat([images, boxes]), FSLTargets(labels, masks.to(images.device))

    def forward(self, net: nn.Module, images: Tensor, labels: Tensor) -> ACoLOutput:
        """The classifier's logits of the labelled images, then (training with boxes) the
        foreground logits of the box images appended to them."""
        output = net(images, None)
        n = labels.shape[0]
        logits = [output.logits[0][:n]]
        if images.shape[0] > n:
            logits.append(output.maps[1][n:])
        return ACoLOutput(logits, output.maps)

    def loss(self, logits: list[Tensor], targets: Any) -> tuple[Tensor, list[Tensor]]:
        """Cross-entropy, plus the weighted pixel-wise BCE of the foreground when the
        batch carries box images; one part (the whole), the classifier's."""
        labels = targets.labels if isinstance(targets, FSLTargets) else targets
        total = F.cross_entropy(logits[0], labels)
        if len(logits) > 1 and isinstance(targets, FSLTargets):
            total = total + self.foreground_weight * foreground_loss(logits[1], targets.masks)
        return total, [total]


def foreground_loss(foreground: Tensor, masks: Tensor) -> Tensor:
    """Pixel-wise binary cross-entropy of foreground logits (m, 1, h, w), upsampled
    bilinearly to the masks' (m, H, W) size, against the 0/1 masks."""
    upsampled = F.interpolate(foreground.float(), size=masks.shape[-2:], mode="bilinear",
                              align_corners=False)[:, 0]
    return F.binary_cross_entropy_with_logits(upsampled, masks.float())
