"""Writing overlay JPEGs (heatmap over the image, boxes drawn) safely: `localize
--overlays` and `boxes --overlays` both call :func:`write_overlay`.

Safe means: the file for input name `a/b.png` is `DIR/a/b.png.jpg` (the whole name plus
'.jpg', so `x.png` and `x.jpg` never share a file), a name that tries to leave DIR
(`../x.png`, `/etc/x.png`, a link inside DIR pointing out) cannot, and each JPEG is
written atomically (a reader never sees half a picture).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .boxes import upsample_map
from .errors import AcolError
from .maps import overlay
from .safeio import atomic_write_bytes, output_path

OVERLAY_SUFFIX = ".jpg"
JPEG_QUALITY = 90
# full-resolution colour (4:4:4): with the default 4:2:0 a box line two pixels wide
# turns into a muddy smear of the map's colours
JPEG_OPTIONS = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]


def overlay_path(root: str | Path, name: str) -> Path:
    """Where the overlay of input image `name` (relative, '/'-separated) goes under `root`."""
    return output_path(root, name, OVERLAY_SUFFIX)


def encode_overlay(picture: np.ndarray, cam: np.ndarray, boxes: np.ndarray,
                   gt_boxes: np.ndarray | None = None, caption: str | None = None) -> bytes:
    """JPEG bytes of `cam` (any size, any range; upsampled to the picture) over `picture`
    (H, W, 3 RGB uint8), with the predicted `boxes` and the ground-truth `gt_boxes`
    ((n, 4) x0 y0 x1 y1, x1/y1 exclusive, in the picture's pixels) and `caption` drawn
    (maps.overlay)."""
    if picture.shape[:2] != cam.shape:
        cam = upsample_map(cam, picture.shape[1], picture.shape[0])
    drawn = overlay(picture, cam, boxes, gt_boxes=gt_boxes, caption=caption)
    ok, encoded = cv2.imencode(OVERLAY_SUFFIX, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR),
                               JPEG_OPTIONS)
    if not ok:
        raise AcolError(f"could not encode an overlay of {picture.shape[1]}x{picture.shape[0]}")
    return encoded.tobytes()


def write_overlay(root: str | Path, name: str, image_file: str | Path, cam: np.ndarray,
                  boxes: np.ndarray, gt_boxes: np.ndarray | None = None,
                  caption: str | None = None) -> Path:
    """Decode `image_file` (EXIF-oriented RGB), draw `cam`, the predicted `boxes` (green),
    the ground-truth `gt_boxes` (magenta; both x0 y0 x1 y1, x1/y1 exclusive,
    original-image pixels) and `caption` (the class name and score) over it and write
    it atomically to `overlay_path(root, name)`; returns that path. Raises OSError or
    PIL's errors when the image cannot be read (the caller counts it), AcolError when
    `name` would leave `root`."""
    from .data import decode_image  # Pillow and torch: only when overlays are asked for

    target = overlay_path(root, name)
    picture = np.asarray(decode_image(image_file))
    data = encode_overlay(picture, np.asarray(cam), np.asarray(boxes), gt_boxes, caption)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    return target
