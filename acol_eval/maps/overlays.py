"""Writing overlay JPEGs (heatmap over the image, boxes drawn) safely: `localize
--overlays` and `boxes --overlays` both call :func:`write_overlay`.

Names: a JPEG's overlay has the image's own name (`a/b.jpg` -> `DIR/a/b.jpg`), any
other image's the whole name plus '.jpg' (`a/b.png` -> `DIR/a/b.png.jpg`), so `x.png`
and `x.jpg` never share a file. Two rules keep every name distinct: a JPEG whose name
less '.jpg' is itself an image name gets '.jpg' added too (`x.png.jpg` ->
`x.png.jpg.jpg`, not the `x.png.jpg` of `x.png`), and a name with no image extension
gets '.jpg.jpg' (`x` -> `x.jpg.jpg`, not the `x.jpg` of `x.jpg`).

Safe means: a name that tries to leave DIR (`../x.png`, `/etc/x.png`, a link inside DIR
pointing out) cannot, and each JPEG is written atomically (a reader never sees half a
picture).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from acol_eval.data.readers.table import IMAGE_EXTENSIONS
from acol_eval.maps.boxes import upsample_map
from acol_eval.maps.maps import overlay
from acol_eval.util.errors import AcolError
from acol_eval.util.safeio import atomic_write_bytes, contained_name, output_path

OVERLAY_SUFFIX = ".jpg"
JPEG_EXTENSIONS = (".jpg", ".jpeg")
JPEG_QUALITY = 90
# full-resolution colour (4:4:4): with the default 4:2:0 a box line two pixels wide
# turns into a muddy smear of the map's colours
JPEG_OPTIONS = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]


def _is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def overlay_suffix(name: str) -> str:
    """What the overlay of input image `name` adds to its (contained) name: nothing for a
    JPEG, '.jpg' for other images, and more where that would meet another image's
    overlay name (see the module docstring)."""
    name = contained_name(name)
    if PurePosixPath(name).suffix.lower() in JPEG_EXTENSIONS and \
            not _is_image_name(PurePosixPath(name).stem):
        return ""
    return OVERLAY_SUFFIX if _is_image_name(name) else OVERLAY_SUFFIX * 2


def overlay_path(root: str | Path, name: str) -> Path:
    """Where the overlay of input image `name` (relative, '/'-separated) goes under `root`."""
    return output_path(root, name, overlay_suffix(name))


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
    from acol_eval.data.datasets import (
        decode_image,  # Pillow and torch: only when overlays are asked for
    )

    target = overlay_path(root, name)
    picture = np.asarray(decode_image(image_file))
    data = encode_overlay(picture, np.asarray(cam), np.asarray(boxes), gt_boxes, caption)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    return target
