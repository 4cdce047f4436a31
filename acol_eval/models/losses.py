"""Losses of the ACoL classifiers: cross-entropy (`p`) and rest cross-entropy (`n`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def rest_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy against a uniform target over every class except the label.

    Per sample: logsumexp(z) - mean_{j != y} z_j, averaged over the batch. Written
    with logsumexp (no raw exp), so it stays finite for logits of any size. Its
    gradient on the label's logit is softmax(z)_y > 0: descent pushes it down.
    """
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError("rest cross-entropy needs at least two classes")
    label_logit = logits.gather(1, target[:, None]).squeeze(1)
    rest_mean = (logits.sum(1) - label_logit) / (num_classes - 1)
    return (torch.logsumexp(logits, 1) - rest_mean).mean()


def classifier_loss(letter: str, logits: Tensor, target: Tensor) -> Tensor:
    if letter == "p":
        return F.cross_entropy(logits, target)
    if letter == "n":
        return rest_cross_entropy(logits, target)
    raise ValueError(f"unknown recipe letter {letter!r}")


def acol_loss(
    recipe: str,
    logits: Sequence[Tensor],
    target: Tensor,
    weights: Sequence[float] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Weighted sum of the per-classifier losses, and each loss on its own."""
    weights = weights or [1.0] * len(recipe)
    parts = [classifier_loss(letter, z, target) for letter, z in zip(recipe, logits)]
    total = sum(w * part for w, part in zip(weights, parts))
    return total, parts
