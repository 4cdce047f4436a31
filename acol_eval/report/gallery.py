"""The gallery of the HTML report: which images to show and their thumbnails.

Pure functions, tables and arrays in, tables and arrays out; reading maps and images
is the report writer's (acol_eval.report.htmlreport). Box format everywhere here, unless a
docstring says otherwise: (x0, y0, x1, y1) in original image pixels, x1/y1 exclusive
(boxformats.BoxFormat.XYXY).
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from acol_eval.data.boxformats import WSOLEVAL_SIZE, BoxFormat, convert
from acol_eval.maps.maps import BOX_COLOUR, GT_COLOUR

# RGB: ground truth magenta (no JET colour), prediction green, as in localize's overlays
PREDICTED_COLOUR = BOX_COLOUR
THUMB_SIDE = 200  # the longer side of a thumbnail, pixels
LINE_WIDTH = 2
# the error types of metrics.error_type, in the order the report lists them
ERROR_TYPES = ["wrong_class", "multiple_instances", "part", "too_large", "mislocated"]
WSOLEVAL_SIDE = WSOLEVAL_SIZE  # the wsoleval protocol's box frame: 224 x 224
FOUND_IOU = 0.5  # a box counts as found from this IoU (GT-known Loc, MaxBoxAcc)


def pick_gallery(per_image: pd.DataFrame, worst: int = 6, best: int = 6,
                 per_error: int = 3, limit: int = 36) -> pd.DataFrame:
    """The rows of per_image.csv worth looking at, at most `limit`, each once.

    The `worst` lowest IoUs among the images that were missed, and the `best` highest
    among those that were found (per_image.csv's `correct`; without it, IoU below or
    at least 0.5), so that no found image is shown as a worst case; then `per_error`
    images of each error type (ERROR_TYPES) spread over that type's IoU range. Ties
    break on the image name so the pick is the same however the rows were ordered.
    Returns those rows with a `reason` column ('worst IoU', 'best IoU', 'error: part',
    ...), in display order.
    """
    if "image" not in per_image or "iou" not in per_image or not len(per_image):
        return per_image.iloc[:0].assign(reason=pd.Series(dtype=str))
    table = per_image.assign(iou=pd.to_numeric(per_image["iou"], errors="coerce"))
    table = table[table["iou"].notna()].sort_values(["iou", "image"], kind="stable")
    chosen: dict[int, str] = {}

    def take(index, reason: str) -> None:
        for i in index:
            if len(chosen) < limit and i not in chosen:
                chosen[i] = reason

    if "correct" in table:
        found = pd.to_numeric(table["correct"], errors="coerce").fillna(0).to_numpy() > 0
    else:
        found = table["iou"].to_numpy() >= FOUND_IOU
    take(table.index[~found][:worst], "worst IoU")
    take(table.index[found][::-1][:best], "best IoU")
    if "error" in table:
        for kind in ERROR_TYPES:
            rows = table.index[(table["error"] == kind).to_numpy()]
            rows = rows[~rows.isin(list(chosen))]
            if len(rows):
                spread = np.unique(np.linspace(0, len(rows) - 1, min(per_error, len(rows)))
                                   .round().astype(int))
                take(rows[spread], f"error: {kind}")
    picked = table.loc[list(chosen)]
    return picked.assign(reason=list(chosen.values()))


def pick_disagreements(ious: pd.DataFrame, limit: int = 8) -> list[str]:
    """The images on which methods disagree most: the largest spread (max - min) of IoU.

    ious: one row per image (index: image name), one column per method, NaN where a
    method has no row for the image (those images are not compared). Ties break on the
    name. Returns at most `limit` image names, largest spread first.
    """
    complete = ious.apply(pd.to_numeric, errors="coerce").dropna()
    if complete.empty or complete.shape[1] < 2:
        return []
    order = pd.DataFrame({"image": complete.index.astype(str),
                          "spread": (complete.max(axis=1) - complete.min(axis=1)).to_numpy()})
    order = order.sort_values(["spread", "image"], ascending=[False, True], kind="stable")
    return order["image"].iloc[:limit].tolist()


def wsoleval_to_original(box: np.ndarray, width: float, height: float) -> np.ndarray:
    """(n, 4) boxes of the wsoleval frame (WSOLEVAL_224) in original pixels (XYXY),
    as `score` converts the box it judged into per_image.csv's orig_x0..orig_y1: the
    inverse of the frame's int() scaling of ground truth, to within a frame pixel."""
    return convert(box, BoxFormat.WSOLEVAL_224, BoxFormat.XYXY, (width, height))


def thumbnail_size(width: float, height: float, side: int = THUMB_SIDE) -> tuple[int, int]:
    """(width, height) of a thumbnail whose longer side is `side`, aspect kept."""
    scale = side / max(width, height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))


def heat_colours(cam: np.ndarray, width: int, height: int) -> np.ndarray:
    """The map, upsampled (bilinear) to width x height and min-max scaled, as JET RGB
    uint8 (constant or non-finite maps: the colour of zero)."""
    cam = np.nan_to_num(np.asarray(cam, np.float32).squeeze(), nan=0.0, posinf=0.0,
                        neginf=0.0)
    if cam.ndim != 2 or not cam.size:
        cam = np.zeros((1, 1), np.float32)
    cam = cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
    low, high = float(cam.min()), float(cam.max())
    scaled = (cam - low) / (high - low) if high > low else np.zeros_like(cam)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)


def draw_boxes(canvas: np.ndarray, boxes: np.ndarray, scale: float,
               colour: tuple[int, int, int]) -> None:
    """Draw (n, 4) original-pixel boxes (x1/y1 exclusive) scaled by `scale` onto the
    canvas in place, the line inside the box and clipped to the canvas."""
    height, width = canvas.shape[:2]
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        if not np.all(np.isfinite([x0, y0, x1, y1])):
            continue
        left = int(np.clip(round(x0 * scale), 0, width - 1))
        top = int(np.clip(round(y0 * scale), 0, height - 1))
        right = int(np.clip(round(x1 * scale) - 1, left, width - 1))
        bottom = int(np.clip(round(y1 * scale) - 1, top, height - 1))
        for inset in range(LINE_WIDTH):
            cv2.rectangle(canvas, (min(left + inset, right), min(top + inset, bottom)),
                          (max(right - inset, left), max(bottom - inset, top)), colour, 1)


def thumbnail(image: np.ndarray | None, cam: np.ndarray | None, frame: tuple[float, float],
              gt_boxes: np.ndarray, predicted: np.ndarray, side: int = THUMB_SIDE,
              alpha: float = 0.45) -> np.ndarray:
    """One gallery thumbnail, RGB uint8, its longer side `side`.

    image: RGB uint8 (H, W, 3) or None; cam: the low-resolution map or None; frame:
    (width, height) of the original image, the frame of both box arrays (original
    pixels, x1/y1 exclusive). The map is laid over the image (alone without image;
    grey without either), ground-truth boxes in GT_COLOUR, the predicted box in
    PREDICTED_COLOUR on top.
    """
    width, height = thumbnail_size(frame[0], frame[1], side)
    base = None
    if image is not None:
        base = cv2.resize(np.ascontiguousarray(image[..., :3], np.uint8), (width, height),
                          interpolation=cv2.INTER_AREA)
    if cam is not None:
        heat = heat_colours(cam, width, height)
        canvas = heat if base is None else cv2.addWeighted(base, 1 - alpha, heat, alpha, 0)
    else:
        canvas = base if base is not None else np.full((height, width, 3), 128, np.uint8)
    canvas = np.ascontiguousarray(canvas)
    scale = width / max(frame[0], 1)
    draw_boxes(canvas, gt_boxes, scale, GT_COLOUR)
    draw_boxes(canvas, predicted, scale, PREDICTED_COLOUR)
    return canvas
