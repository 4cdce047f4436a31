"""Pure functions on class activation maps: upsampling and overlays (arrays in, arrays out)."""

from __future__ import annotations

import cv2
import numpy as np

BOX_COLOUR = (0, 255, 0)  # RGB: green stands out on the JET heatmap's blues and reds


def box_line_width(width: int, height: int) -> int:
    return max(2, round(min(width, height) / 150))


def overlay(
    image: np.ndarray,
    cam: np.ndarray,
    boxes: np.ndarray,
    alpha: float = 0.5,
    colour: tuple[int, int, int] = BOX_COLOUR,
) -> np.ndarray:
    """Heatmap of `cam` (H, W, any range) blended over an RGB uint8 image, boxes drawn.

    Boxes are (n, 4) x0, y0, x1, y1 with x1/y1 exclusive; the line lies inside them.
    """
    cam = np.nan_to_num(np.asarray(cam, np.float32))
    low, high = float(cam.min()), float(cam.max())
    scaled = (cam - low) / (high - low) if high > low else np.zeros_like(cam)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)
    thickness = box_line_width(image.shape[1], image.shape[0])
    for x0, y0, x1, y1 in np.asarray(boxes, int).reshape(-1, 4):
        # cv2 draws a centred line; inset it so the whole line is inside the box
        inset = thickness // 2
        cv2.rectangle(blended, (int(x0) + inset, int(y0) + inset),
                      (int(x1) - 1 - inset, int(y1) - 1 - inset), colour, thickness)
    return blended


def centre_gaussian_map(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """The centre baseline: a Gaussian at the image centre, std `sigma` of each side, max 1.

    Any localisation result should be read against it: it is what a method that
    knows nothing about the image but the photographer's bias would score.
    """
    # offsets from the centre in fractions of the side, exactly symmetric
    ys = (np.arange(height) - (height - 1) / 2) / height
    xs = (np.arange(width) - (width - 1) / 2) / width
    return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)
