"""Pure functions on class activation maps: upsampling and overlays (arrays in, arrays out)."""

from __future__ import annotations

import cv2
import numpy as np

# RGB. The same colours as report.html's gallery: green stands out on the JET heatmap's
# blues and reds; magenta is in no JET colour and is not the prediction's green.
BOX_COLOUR = (0, 255, 0)  # the predicted box
GT_COLOUR = (255, 0, 255)  # the ground-truth boxes
CAPTION_INK = (255, 255, 255)  # caption text, on a filled CAPTION_FILL band
CAPTION_FILL = (0, 0, 0)
CAPTION_FONT = cv2.FONT_HERSHEY_SIMPLEX


def box_line_width(width: int, height: int) -> int:
    return max(2, round(min(width, height) / 150))


def draw_boxes(canvas: np.ndarray, boxes: np.ndarray, colour: tuple[int, int, int],
               thickness: int) -> None:
    """Draw (n, 4) boxes x0, y0, x1, y1 (x1/y1 exclusive, the canvas's pixels) in place:
    each side a filled strip `thickness` wide inside the box, so the line never leaves
    the box and the corners are square (cv2's thick rectangles round them off)."""
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        if not np.all(np.isfinite([x0, y0, x1, y1])) or x1 <= x0 or y1 <= y0:
            continue
        x0, y0, x1, y1 = int(x0), int(y0), int(x1) - 1, int(y1) - 1
        t = thickness - 1
        for a, b in (((x0, y0), (x1, y0 + t)), ((x0, y1 - t), (x1, y1)),
                     ((x0, y0), (x0 + t, y1)), ((x1 - t, y0), (x1, y1))):
            cv2.rectangle(canvas, a, b, colour, cv2.FILLED)


def caption_layout(text: str, width: int, height: int) -> tuple[float, int, int, int]:
    """(font scale, thickness, padding, band height) of a caption on a width x height
    image: text about 4.5% of the shorter side tall (8 to 48 pixels), narrowed to fit
    the width down to a floor where it stays legible (longer text is cut by the edge)."""
    (_, unit_h), _ = cv2.getTextSize(text or " ", CAPTION_FONT, 1.0, 1)
    target = float(np.clip(min(width, height) * 0.045, 8, 48))
    scale = target / unit_h
    (unit_w, _), _ = cv2.getTextSize(text or " ", CAPTION_FONT, scale, 1)
    pad = max(2, round(target * 0.3))
    if unit_w > width - 2 * pad:
        scale = max(scale * (width - 2 * pad) / max(unit_w, 1), 7 / unit_h)
    thickness = max(1, round(scale * 1.6))
    (_, text_h), baseline = cv2.getTextSize(text or " ", CAPTION_FONT, scale, thickness)
    return scale, thickness, pad, text_h + baseline + 2 * pad


def draw_caption(canvas: np.ndarray, text: str) -> int:
    """Write `text` (non-ASCII shown as '?': OpenCV's fonts are ASCII) in CAPTION_INK on
    a filled CAPTION_FILL band across the canvas's top left corner, in place, so it
    reads on any image. Returns the band's height in pixels."""
    text = text.encode("ascii", "replace").decode("ascii")
    height, width = canvas.shape[:2]
    scale, thickness, pad, band = caption_layout(text, width, height)
    (text_w, text_h), _ = cv2.getTextSize(text, CAPTION_FONT, scale, thickness)
    cv2.rectangle(canvas, (0, 0), (min(width, text_w + 2 * pad) - 1, min(height, band) - 1),
                  CAPTION_FILL, cv2.FILLED)
    cv2.putText(canvas, text, (pad, pad + text_h), CAPTION_FONT, scale, CAPTION_INK,
                thickness, cv2.LINE_AA)
    return band


def overlay(
    image: np.ndarray,
    cam: np.ndarray,
    boxes: np.ndarray,
    alpha: float = 0.5,
    colour: tuple[int, int, int] = BOX_COLOUR,
    gt_boxes: np.ndarray | None = None,
    caption: str | None = None,
) -> np.ndarray:
    """Heatmap of `cam` (H, W, any range) blended over an RGB uint8 image, ground-truth
    boxes drawn in GT_COLOUR, the predicted `boxes` in `colour` on top, and `caption`
    (e.g. the class name and score) on a filled band at the top left.

    Boxes are (n, 4) x0, y0, x1, y1 in the image's pixels, x1/y1 exclusive; the line
    lies inside them.
    """
    cam = np.nan_to_num(np.asarray(cam, np.float32))
    low, high = float(cam.min()), float(cam.max())
    scaled = (cam - low) / (high - low) if high > low else np.zeros_like(cam)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)
    thickness = box_line_width(image.shape[1], image.shape[0])
    if gt_boxes is not None:
        draw_boxes(blended, gt_boxes, GT_COLOUR, thickness)
    draw_boxes(blended, boxes, colour, thickness)
    if caption:
        draw_caption(blended, caption)
    return blended


def overlay_caption(class_name: str, score: float | None, label: str | None = None) -> str:
    """The caption of an overlay: the predicted class and its softmax score, and beside
    them the true label where it is known ('tabby 0.51 | true: tiger')."""
    caption = class_name if score is None or not np.isfinite(score) else \
        f"{class_name} {score:.2f}"
    return f"{caption} | true: {label}" if label else caption


def centre_gaussian_map(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """The centre baseline: a Gaussian at the image centre, std `sigma` of each side, max 1.

    Any localisation result should be read against it: it is what a method that
    knows nothing about the image but the photographer's bias would score.
    """
    # offsets from the centre in fractions of the side, exactly symmetric
    ys = (np.arange(height) - (height - 1) / 2) / height
    xs = (np.arange(width) - (width - 1) / 2) / width
    return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)
