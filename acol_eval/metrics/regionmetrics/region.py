"""An image's ground-truth region in the frame a protocol scores in: its mask's
foreground where it has one (ignored pixels count as outside, as they are not the
object), else the union of its boxes."""

from __future__ import annotations

import cv2
import numpy as np


def boxes_region(boxes: np.ndarray, shape: tuple[int, int], inclusive: bool) -> np.ndarray:
    """The union of boxes (g, 4: x0 y0 x1 y1 in the frame) as a bool (h, w) region.
    inclusive: x1/y1 are the last pixel (the wsoleval frame counts them so); else a
    pixel is in when its centre lies in [x0, x1) x [y0, y1) (original pixels)."""
    height, width = shape
    region = np.zeros(shape, bool)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        if inclusive:
            left, top, right, bottom = int(x0), int(y0), int(x1) + 1, int(y1) + 1
        else:
            left, top = int(np.ceil(x0 - 0.5)), int(np.ceil(y0 - 0.5))
            right, bottom = int(np.ceil(x1 - 0.5)), int(np.ceil(y1 - 0.5))
        region[max(top, 0):min(bottom, height), max(left, 0):min(right, width)] = True
    return region


def mask_region(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A protocol's mask (1 foreground, 0 background, 255 ignored) as a bool region of
    `shape`, resized (nearest) where the mask file has another size than the frame."""
    if mask.shape != tuple(shape):
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask == 1
