"""Hide-and-Seek (Singh and Lee, ICCV 2017) as a training method: every training image
is cut into square cells of `grid` pixels and each cell is hidden with probability
`drop_rate`, so the classifier cannot rely on the most discriminative part alone.

Defaults are wsolevaluation's (`--has_grid_size 4 --has_drop_rate 0.5`), where the grid
size is the cell's side in pixels of the training input. A hidden cell is filled with
the normalised value 0, which is the normalisation mean (ImageNet's mean colour): the
paper fills hidden patches with the mean pixel of the data so that the statistics of
the first layer match between training and test, and wsolevaluation writes 0 into the
normalised tensor, the same fill. Cells are drawn independently per image from the
batch's generator; only training batches are hidden (validation and localize see
whole images).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from acol_eval.models.recipemethod import RecipeMethod, check_fraction, check_whole
from acol_eval.models.trainmethod import register_method

FILL = 0.0  # in normalised units: the normalisation mean
MAX_GRID = 4096


def hide_mask(shape: tuple[int, int, int], grid: int, drop_rate: float,
              generator: torch.Generator) -> Tensor:
    """(B, H, W) bool, True where a pixel is hidden: one draw per `grid` x `grid` cell
    (the last row and column of cells cut at the border), from `generator`."""
    batch, height, width = shape
    rows, cols = -(-height // grid), -(-width // grid)
    cells = torch.rand((batch, rows, cols), generator=generator) < drop_rate
    full = cells.repeat_interleave(grid, 1).repeat_interleave(grid, 2)
    return full[:, :height, :width]


def hide_patches(images: Tensor, grid: int, drop_rate: float,
                 generator: torch.Generator) -> Tensor:
    """The batch with its hidden cells set to FILL in every channel (a new tensor)."""
    batch, _, height, width = images.shape
    mask = hide_mask((batch, height, width), grid, drop_rate, generator)
    return images.masked_fill(mask.to(images.device)[:, None], FILL)


@register_method("has")
class HideAndSeek(RecipeMethod):
    """Hide-and-Seek: random grid cells of each training image hidden."""

    DEFAULTS = {"grid": 4, "drop_rate": 0.5}

    def check(self, values: dict[str, Any], arch: str | None) -> dict[str, Any]:
        return {"grid": check_whole(self.flag("grid"), values["grid"], 1, MAX_GRID),
                "drop_rate": check_fraction(self.flag("drop_rate"), values["drop_rate"])}

    def prepare_batch(self, images: Tensor, labels: Tensor,
                      generator: torch.Generator) -> tuple[Tensor, Any]:
        return hide_patches(images, self.own["grid"], self.own["drop_rate"],
                            generator), labels
