"""ACoL as a training method: a recipe of `p` and `n` classifiers with adversarial
erasing between them (model.ACoL), trained with cross-entropy (`p`) and rest
cross-entropy (`n`), weighted by --loss-weights (losses.acol_loss).

Its options are `train`'s own flags (--recipe, --delta, --head, --loss-weights,
--head-lr-mult per letter), so they live on `TrainConfig`, and the checkpoint's model
fields (recipe, deltas, head) describe its network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from acol_eval.models.losses import acol_loss
from acol_eval.models.model import DEFAULT_DELTA, ACoL, build_model, check_recipe, expand_deltas
from acol_eval.models.trainmethod import TrainingMethod, register_method
from acol_eval.util.errors import AcolError


@register_method("acol")
class ACoLMethod(TrainingMethod):
    """ACoL (`p`/`n` recipes); recipe `p` alone is CAM."""

    recipe_options = True

    def __init__(self, recipe: str = "pp", deltas: float | Sequence[float] = DEFAULT_DELTA,
                 head: str = "linear", loss_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.recipe = check_recipe(recipe)
        self.deltas = expand_deltas(deltas, recipe)
        self.head = str(getattr(head, "value", head))
        self.loss_weights = None if loss_weights is None else [float(w) for w in loss_weights]

    @classmethod
    def from_config(cls, config: Any) -> ACoLMethod:
        if config.method_args:
            raise AcolError("training method 'acol' takes its options as train's own "
                            "(recipe, delta, head, loss_weights), not method_args")
        return cls(config.recipe, config.delta, config.head, config.loss_weights)

    @classmethod
    def from_checkpoint(cls, checkpoint: Any) -> ACoLMethod:
        # the model fields are the network's own record (every checkpoint has them)
        return cls(checkpoint.recipe, checkpoint.deltas or (), checkpoint.head,
                   (checkpoint.method_args or {}).get("loss_weights"))

    def describe(self) -> str:
        return f"recipe {self.recipe}"

    def hyperparameters(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "deltas": list(self.deltas), "head": self.head,
                "loss_weights": self.loss_weights}

    def model(self, arch: str, num_classes: int, feature_stride: int,
              backbone_state: dict[str, Tensor] | None = None) -> ACoL:
        return build_model(arch, num_classes, self.recipe, self.deltas, self.head,
                           feature_stride, backbone_state)

    def param_groups(self, model: ACoL, lr: float,
                     head_lr_mult: Sequence[float]) -> list[dict[str, Any]]:
        """One group for all heads when one multiplier is given (as checkpoints from
        before per-letter multipliers hold), else one group per head."""
        if len(head_lr_mult) == 1:
            return super().param_groups(model, lr, head_lr_mult)
        return [{"params": list(model.backbone.parameters()), "lr": lr}] + [
            {"params": list(head.parameters()), "lr": lr * mult}
            for head, mult in zip(model.heads, head_lr_mult)]

    def loss(self, logits: list[Tensor], targets: Any) -> tuple[Tensor, list[Tensor]]:
        return acol_loss(self.recipe, logits, targets, self.loss_weights)
