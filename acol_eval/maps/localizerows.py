"""One batch of `acol-eval localize`, without files: inference (`infer`: images -> top-k
classes and low-resolution maps), boxes (`image_boxes`, pure: a map -> boxes in image
pixels) and the rows and stored maps of each image (`prediction_row`, `stored_maps`,
`label_name` for its overlay). Split from localization.py so that these pure steps,
which tests and benchmarks call alone, read apart from the sweep that runs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from acol_eval.maps.boxes import native_boxes, upsample_map
from acol_eval.maps.shards import BOX_FIELDS
from acol_eval.models.methods import MapMethod, method_maps
from acol_eval.models.model import ACoL

# --------------------------------------------------------------------------- inference


@dataclass(frozen=True)
class BatchMaps:
    """One batch through the model: `scores` (B, k) softmax and `predicted` (B, k) class
    ids of the top k, `fused` (B, k + 1, h, w) float16 low-resolution maps of those
    classes and then of the label's class (class 0 where the label is unknown)."""

    scores: np.ndarray
    predicted: np.ndarray
    fused: np.ndarray


def infer(model: ACoL, images: torch.Tensor, label_ids: list[int], top_k: int,
          method: MapMethod = MapMethod.MODEL, target_layer: str | None = None) -> BatchMaps:
    """Top-k classes and their maps (bfloat16 autocast for the backbone on CUDA): the
    model's fused maps, which reuse the features already computed, or a post-hoc
    method's at `target_layer` (one more forward, one backward per class rank)."""
    use_cuda = images.device.type == "cuda"
    # channels_last on every device: the model is in it (sweep_shard), and oneDNN's CPU
    # convolutions run 1.4-1.5x faster in it too (mobilenet_v2, resnet50 forward)
    images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda):
        features = model.backbone(images)
    features = features.float()
    probabilities = model.logits(features).softmax(1)
    scores, predicted = probabilities.topk(top_k, 1)
    labels = torch.tensor(label_ids, device=predicted.device).clamp(min=0)
    wanted = torch.cat([predicted, labels[:, None]], 1)
    if method is MapMethod.MODEL:
        maps = model.fused_maps(features, wanted)
    else:
        maps = method_maps(model, images, wanted, method, target_layer)
    fused = maps.to(torch.float16).cpu().numpy()
    return BatchMaps(scores.cpu().numpy(), predicted.cpu().numpy(), fused)


# --------------------------------------------------------------------------- boxes, rows


def image_boxes(top1_map: np.ndarray, width: int, height: int, threshold: float,
                all_boxes: bool) -> tuple[np.ndarray, np.ndarray]:
    """The map upsampled to the image (width x height) and its boxes at `threshold`:
    (n, 4) x0, y0, x1, y1 in original-image pixels, x1/y1 exclusive, largest component
    first (only it unless `all_boxes`). The same upsampling as `score --protocol native`,
    so the two agree."""
    cam = upsample_map(top1_map, width, height)
    return cam, native_boxes(cam, threshold, all_boxes=all_boxes)


def stored_maps(predicted: np.ndarray, label: int, classes: list[str]
                ) -> list[tuple[int, int, str, int, int]]:
    """Which maps of one image the store keeps, as (slot in BatchMaps.fused, class_id,
    class_name, pred_rank, is_label): the top k, then the label's when not among them
    (pred_rank 0)."""
    entries = [(rank - 1, int(c), classes[c], rank, int(c == label))
               for rank, c in enumerate(predicted, start=1)]
    if label >= 0 and label not in predicted:
        entries.append((len(predicted), label, classes[label], 0, 1))
    return entries


def prediction_row(global_id: int, image: str, size: tuple[int, int], label: int,
                   classes: list[str], predicted: np.ndarray, scores: np.ndarray,
                   boxes: np.ndarray, threshold: float) -> list[Any]:
    """predictions.csv's row (after the merge key): the first box, or empty fields."""
    box = [int(v) for v in boxes[0]] if len(boxes) else ["", "", "", ""]
    return [global_id, image, size[0], size[1], "" if label < 0 else classes[label],
            *(classes[c] for c in predicted), *(f"{s:.6f}" for s in scores), *box, threshold]


def prediction_header(top_k: int) -> list[str]:
    return ["image", "width", "height", "label", *(f"pred_{i}" for i in range(1, top_k + 1)),
            *(f"score_{i}" for i in range(1, top_k + 1)), *BOX_FIELDS, "cam_threshold"]


# --------------------------------------------------------------------------- overlays


def label_name(raw: str | None, label: int, classes: list[str]) -> str | None:
    """An image's true label for its overlay: the model's class name where the label is
    one of its classes (wsolevaluation's class ids become names), else the label as the
    annotations give it; None where there is none."""
    if label >= 0:
        return classes[label]
    if raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw) == "":
        return None
    return str(raw)
