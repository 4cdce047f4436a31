"""Training methods defined outside the package, as a third party would write them:
each subclasses `TrainingMethod`, overrides one hook and registers itself on import."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from acol_eval.models.trainmethod import TrainingMethod, register_method


@register_method("toy-smooth")
class SmoothedLabels(TrainingMethod):
    """CAM (one `p` head) trained with label-smoothed cross-entropy."""

    def __init__(self, smoothing: float = 0.1) -> None:
        super().__init__()
        self.smoothing = float(smoothing)

    def hyperparameters(self) -> dict:
        return {"smoothing": self.smoothing}

    def loss(self, logits, targets):
        parts = [F.cross_entropy(z, targets, label_smoothing=self.smoothing) for z in logits]
        return parts[0], parts


# every prepare_batch call of the toy-hide method: (first pixel's value, draws)
SEEN: list[tuple[float, list[float]]] = []


@register_method("toy-hide")
class HideOneQuarter(TrainingMethod):
    """Hides a random quarter of each training batch (a Hide-and-Seek in miniature),
    drawn from the generator the loop gives, and records what it drew."""

    def prepare_batch(self, images, labels, generator):
        draws = torch.rand(3, generator=generator)
        quarter = int(draws[0] * 4)
        h, w = images.shape[-2] // 2, images.shape[-1] // 2
        top, left = (quarter // 2) * h, (quarter % 2) * w
        images = images.clone()
        images[..., top:top + h, left:left + w] = 0.0
        SEEN.append((float(images[0, 0, 0, 0]), draws.tolist()))
        return images, labels
