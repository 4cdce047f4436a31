"""Deep Descriptor Transforming (DDT; Wei et al., IJCAI 2017 / Pattern Recognition 2019)
as a training method: training-free co-localisation from the first principal direction
of a set of images' convolutional descriptors; a positive projection is the object.

- Which layer: the backbone's output (its last convolutional stage) at the run's
  --feature-stride. DDT takes the deepest descriptors that are still a spatial map (the
  paper's last convolution of VGG-16); here they are also the features CAM and the other
  methods map, at the same resolution, so the maps compare like for like.
- The fit (`before_training`): one pass over the train split, each image at the
  evaluation transform (resized to --input-size, no augmentation), the backbone frozen
  in eval mode; every position's descriptor x (C channels) enters the mean m and the
  covariance; w is the covariance's first eigenvector (float64). The map is
  p = w . (x - m) = w . x + b with b = -w . m: a 1x1 convolution with a bias IS DDT, and
  the checkpoint holds it as one (`DDTModel.projection`).
- Sign: an eigenvector's sign is arbitrary. The convention: w points to where the
  descriptors are strongest, i.e. w . E[(x - m) |x|] >= 0 over the fitted descriptors
  (backbone features of the object are larger than the background's).
- Map: ReLU of the projection, min-max normalised per map (all zero where no position is
  positive). A CAM threshold near 0 is thus DDT's own "positive projection" rule; the
  calibrated threshold, chosen on validation like every model's, may be higher.
- `ddt` fits one direction on the whole train split (class-agnostic: every class's map
  is the same). `ddt-class` fits one direction per class on that class's train images
  (the paper's per-category co-localisation); at localize time each requested class's
  map uses its own direction, so the top-1 map uses the predicted class's and the
  label's map the label's.
- Classification: DDT has none. The method trains CAM's linear classifier on the frozen
  backbone (a linear probe, the run's epochs and rates, --weight-decay) on the train
  split's image labels, so Top-1 Loc is defined; the backbone and the projection do not
  change while it trains (and batch norm keeps its ImageNet statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from acol_eval.data.datasets import LabelledImages, collate_skipping, eval_transform
from acol_eval.models.backbones import build_backbone, get_spec
from acol_eval.models.model import ACoL, normalize_maps
from acol_eval.models.trainmethod import TrainingMethod, register_method
from acol_eval.util.errors import AcolError


class DDTModel(ACoL):
    """CAM's network (recipe `p`, linear head) with DDT's projection beside it: a frozen
    1x1 convolution to `directions` channels (1: class-agnostic; one per class)."""

    def __init__(self, backbone: nn.Module, in_channels: int, num_classes: int,
                 per_class: bool) -> None:
        super().__init__(backbone, in_channels, num_classes, "p", (), "linear")
        self.projection = nn.Conv2d(in_channels, num_classes if per_class else 1, 1)
        nn.init.zeros_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)
        self.projection.requires_grad_(False)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))

    def classifier_maps(self, features: Tensor, classes: Tensor) -> Tensor:
        batch, k = classes.shape
        projected = self.projection(features.float()).clamp(min=0)  # (B, P, h, w)
        if projected.shape[1] == 1:
            chosen = projected.expand(batch, k, *projected.shape[-2:])
        else:
            rows = torch.arange(batch, device=classes.device)[:, None]
            chosen = projected[rows, classes]
        return normalize_maps(chosen)[:, :, None]

    def fused_maps(self, features: Tensor, classes: Tensor) -> Tensor:
        return self.classifier_maps(features, classes)[:, :, 0]

    def set_projection(self, directions: np.ndarray, means: np.ndarray) -> None:
        """directions, means (P, C) -> weight w, bias -w . m; marks the model fitted."""
        weight = torch.from_numpy(np.ascontiguousarray(directions)).float()
        bias = -(directions * means).sum(1)
        with torch.no_grad():
            self.projection.weight.copy_(weight[:, :, None, None])
            self.projection.bias.copy_(torch.from_numpy(bias).float())
            self.fitted.fill_(1)


class DescriptorMoments:
    """Running float64 sums of descriptors (n, C): count, sum, scatter, and for the sign
    convention the sum of norms and of each descriptor weighted by its norm."""

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.total = np.zeros(channels)
        self.scatter = np.zeros((channels, channels))
        self.norms = 0.0
        self.weighted = np.zeros(channels)

    def add(self, descriptors: np.ndarray) -> None:
        x = descriptors.astype(np.float64)
        norms = np.linalg.norm(x, axis=1)
        self.count += x.shape[0]
        self.total += x.sum(0)
        self.scatter += x.T @ x
        self.norms += float(norms.sum())
        self.weighted += norms @ x

    def direction(self) -> tuple[np.ndarray, np.ndarray]:
        """(first principal direction w, mean m); w signed so that
        w . E[(x - m) |x|] >= 0."""
        if self.count < 2:
            raise AcolError("DDT needs at least two descriptors to fit a direction")
        mean = self.total / self.count
        covariance = self.scatter / self.count - np.outer(mean, mean)
        _, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
        direction = vectors[:, -1]
        strength = (self.weighted - mean * self.norms) / self.count  # E[(x - m) |x|]
        return (direction if direction.dot(strength) >= 0 else -direction), mean


def ddt_direction(descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The DDT direction and mean of descriptors (n, C), as the fitting pass makes them."""
    moments = DescriptorMoments(descriptors.shape[1])
    moments.add(descriptors)
    return moments.direction()


class _FrozenBackbone(nn.Module):
    """The network trained: the model, whose backbone stays in eval mode (batch norm keeps
    the statistics the projection was fitted with)."""

    def __init__(self, model: ACoL) -> None:
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> _FrozenBackbone:
        super().train(mode)
        self.model.backbone.eval()
        return self

    def forward(self, images: Tensor, guide: Tensor | None = None):
        return self.model(images, guide)


@register_method("ddt")
class DDTMethod(TrainingMethod):
    """DDT, class-agnostic: one principal direction of the train split's descriptors."""

    per_class = False

    def describe(self) -> str:
        scope = "one direction per class" if self.per_class else "one class-agnostic direction"
        return f"method {self.name} ({scope}, frozen backbone, linear classifier probe)"

    def model(self, arch: str, num_classes: int, feature_stride: int,
              backbone_state: dict[str, Tensor] | None = None) -> ACoL:
        if num_classes < 1:
            raise AcolError("the model needs at least one class")
        backbone, _ = build_backbone(arch, feature_stride, backbone_state)
        backbone.requires_grad_(False)
        return DDTModel(backbone, get_spec(arch).channels, num_classes, self.per_class)

    def param_groups(self, model: ACoL, lr: float,
                     head_lr_mult: Sequence[float]) -> list[dict[str, Any]]:
        """The classifier only: the backbone and the projection are DDT's, not trained."""
        return [{"params": list(model.heads.parameters()), "lr": lr * head_lr_mult[0]}]

    def training_model(self, model: ACoL) -> nn.Module:
        return _FrozenBackbone(model)

    def before_training(self, model: ACoL, data: Any, config: Any,
                        log: Callable[[str], None]) -> None:
        if int(model.fitted):  # resumed: last.pt holds the fitted projection
            return
        items = list(data.train_set.items)
        dataset = LabelledImages(data.train_set.root, items, eval_transform(config.input_size))
        log(f"fitting DDT on the descriptors of {len(items)} train images "
            f"({'per class' if self.per_class else 'class-agnostic'})")
        moments = fit_moments(model, dataset, config.batch_size, config.workers,
                              model.num_classes if self.per_class else 1)
        directions, means = zip(*(m.direction() for m in moments))
        model.set_projection(np.stack(directions), np.stack(means))


@register_method("ddt-class")
class ClassDDTMethod(DDTMethod):
    """DDT per class: one principal direction per class, on that class's train images."""

    per_class = True


def fit_moments(model: ACoL, dataset: LabelledImages, batch_size: int, workers: int,
                groups: int) -> list[DescriptorMoments]:
    """One pass of the frozen backbone (eval mode) over `dataset`: the descriptor moments
    of every image (groups 1) or of each class's images (groups = classes)."""
    device = next(model.parameters()).device
    channels = model.projection.in_channels
    moments = [DescriptorMoments(channels) for _ in range(groups)]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_skipping)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for images, labels, _ in loader:
            if images is None:
                continue
            features = model.backbone(images.to(device)).float().cpu()
            for feature, label in zip(features, labels.tolist()):
                descriptors = feature.flatten(1).T.numpy()  # (h*w, C)
                moments[label if groups > 1 else 0].add(descriptors)
    model.train(was_training)
    empty = [k for k, m in enumerate(moments) if m.count < 2]
    if empty:
        raise AcolError(f"DDT: class {empty[0]} has no decodable train image to fit on")
    return moments
