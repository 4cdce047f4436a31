"""CutMix (Yun et al., ICCV 2019) as a training method: with probability `prob` a batch
gets, in every image, a box pasted from another image of the same batch (a random
pairing), and the loss mixes the two labels by area: lam * L(y_a) + (1 - lam) * L(y_b),
lam the share of the image left unpasted.

Defaults are wsolevaluation's (`--cutmix_beta 1.0 --cutmix_prob 1.0`): the box's
planned area share 1 - lam0 with lam0 ~ Beta(beta, beta), its sides sqrt(1 - lam0)
times the image's, its centre uniform over the image, clipped at the border; lam is
recomputed from the clipped box. All draws (whether to mix, lam0, the pairing, the
centre) come from the batch's generator. Accuracy is counted against the base image's
label; erasing between ACoL classifiers is guided by it too.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from acol_eval.models.recipemethod import RecipeMethod, check_fraction, check_positive
from acol_eval.models.trainmethod import register_method


class Box(NamedTuple):
    """Rows y0:y1 and columns x0:x1 (exclusive ends) of the pasted region."""

    y0: int
    y1: int
    x0: int
    x1: int

    def area(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


class MixedTargets(NamedTuple):
    """The loss's targets of a mixed batch: lam * L(a) + (1 - lam) * L(b)."""

    a: Tensor
    b: Tensor
    lam: float


def cut_box(height: int, width: int, lam0: float, generator: torch.Generator) -> Box:
    """A box of planned area share 1 - lam0, its centre drawn uniformly, clipped."""
    ratio = float(np.sqrt(1.0 - lam0))
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    return Box(int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height)),
               int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width)))


def cutmix_batch(images: Tensor, labels: Tensor, beta: float, prob: float,
                 generator: torch.Generator) -> tuple[Tensor, Tensor | MixedTargets]:
    """(images, targets): the batch unchanged with probability 1 - prob, else mixed."""
    if float(torch.rand((), generator=generator)) >= prob:
        return images, labels
    # Beta has no torch sampler taking a generator: numpy's, seeded from this one
    seed = int(torch.randint(2**62, (1,), generator=generator))
    lam0 = float(np.random.default_rng(seed).beta(beta, beta))
    order = torch.randperm(images.shape[0], generator=generator).to(images.device)
    box = cut_box(images.shape[-2], images.shape[-1], lam0, generator)
    mixed = images.clone()
    mixed[..., box.y0:box.y1, box.x0:box.x1] = images[order, :, box.y0:box.y1, box.x0:box.x1]
    lam = 1.0 - box.area() / (images.shape[-2] * images.shape[-1])
    return mixed, MixedTargets(labels, labels[order], lam)


@register_method("cutmix")
class CutMix(RecipeMethod):
    """CutMix: a box of another image pasted in, labels mixed by area."""

    DEFAULTS = {"beta": 1.0, "prob": 1.0}

    def check(self, values: dict[str, Any], arch: str | None) -> dict[str, Any]:
        return {"beta": check_positive(self.flag("beta"), values["beta"]),
                "prob": check_fraction(self.flag("prob"), values["prob"])}

    def prepare_batch(self, images: Tensor, labels: Tensor,
                      generator: torch.Generator) -> tuple[Tensor, Any]:
        return cutmix_batch(images, labels, self.own["beta"], self.own["prob"], generator)

    def loss(self, logits: list[Tensor], targets: Any) -> tuple[Tensor, list[Tensor]]:
        if not isinstance(targets, MixedTargets):
            return super().loss(logits, targets)
        total_a, parts_a = super().loss(logits, targets.a)
        total_b, parts_b = super().loss(logits, targets.b)
        lam = targets.lam
        return (lam * total_a + (1 - lam) * total_b,
                [lam * a + (1 - lam) * b for a, b in zip(parts_a, parts_b)])
