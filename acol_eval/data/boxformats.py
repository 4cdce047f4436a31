"""Box formats and the one conversion between them: every box that changes format or
frame anywhere in the package goes through :func:`convert`.

A box is a row of four numbers; an array of boxes is (n, 4). The formats:

- ``XYXY``: x0 y0 x1 y1 in original pixels of the image, x0/y0 inclusive, x1/y1
  exclusive (a box of one pixel at (3, 5) is 3 5 4 6). Every reader's table, the
  native protocol, `localize`'s predictions.csv and the gallery use it: it is the hub
  every other format converts through.
- ``WSOLEVAL_224``: x0 y0 x1 y1 in the 224 x 224 frame of clovaai/wsolevaluation.
  Into the frame, each coordinate is scaled by 224 / side and truncated (int()), as the
  reference scales ground truth; out of it, each is scaled back by side / 224. x1/y1
  are the exclusive ends scaled (the reference's contour boxes are x + w of OpenCV's
  rectangle, one past the last pixel), though the protocol's IoU counts them
  inclusively (width x1 - x0 + 1) for the boxes it compares; a predicted box equal to
  a ground-truth box in the frame is therefore drawn where that ground truth is.
  Needs the image size.
- ``XYWH``: x y w h, x1 = x + w exclusive, in the pixels of the frame the box lives
  in (OpenCV's rectangles and component statistics).
- ``CUB_XYWH``: CUB-200-2011's bounding_boxes.txt, x y w h in original pixels
  (float text), x + w the exclusive end.
- ``COCO_XYWH``: a COCO instances file's bbox, [x, y, w, h] JSON numbers in original
  pixels, x + w the exclusive end.
- ``VOC``: Pascal VOC's bndbox as the format defines it, xmin ymin xmax ymax with
  1-based inclusive pixels (a box of one pixel at 0-based (3, 5) is 4 6 4 6).

Conversions between the x y w h formats and XYXY, and between VOC and XYXY, are exact
(up to float rounding of x + w); into WSOLEVAL_224 they truncate, so a round trip
through the frame lands within one frame pixel (side / 224 original pixels).
"""

from __future__ import annotations

from enum import Enum

import numpy as np

WSOLEVAL_SIZE = 224  # side of the wsolevaluation frame, in pixels


class BoxFormat(str, Enum):
    """How the four numbers of a box are written (see the module's description)."""

    XYXY = "xyxy"
    WSOLEVAL_224 = "wsoleval_224"
    XYWH = "xywh"
    CUB_XYWH = "cub_xywh"
    COCO_XYWH = "coco_xywh"
    VOC = "voc"

    @property
    def text(self) -> str:
        """One line saying how the format writes a box."""
        return FORMAT_TEXT[self]


FORMAT_TEXT = {
    BoxFormat.XYXY: "x0 y0 x1 y1, original pixels, x1/y1 exclusive",
    BoxFormat.WSOLEVAL_224: "x0 y0 x1 y1 in the 224 x 224 frame, scaled with int() truncation",
    BoxFormat.XYWH: "x y w h, x + w exclusive",
    BoxFormat.CUB_XYWH: "x y w h (CUB bounding_boxes.txt), original pixels",
    BoxFormat.COCO_XYWH: "bbox [x, y, w, h] (COCO), original pixels",
    BoxFormat.VOC: "bndbox xmin ymin xmax ymax, 1-based inclusive pixels (Pascal VOC)",
}

_XYWH_FORMATS = (BoxFormat.XYWH, BoxFormat.CUB_XYWH, BoxFormat.COCO_XYWH)


def convert(boxes, source: BoxFormat, target: BoxFormat,
            size: tuple[float, float] | None = None) -> np.ndarray:
    """Boxes (n, 4) (or one box of 4) from format `source` into format `target`.

    `size` is the image's (width, height) in original pixels, needed to enter or leave
    WSOLEVAL_224. Returns float64 (n, 4), except into WSOLEVAL_224: int64, truncated as
    the reference truncates. Formats: see the module's description.
    """
    values = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if source is target:
        return values.astype(np.int64) if target is BoxFormat.WSOLEVAL_224 else values
    return _from_xyxy(_to_xyxy(values, source, size), target, size)


def _to_xyxy(b: np.ndarray, source: BoxFormat, size) -> np.ndarray:
    if source is BoxFormat.XYXY:
        return b
    if source in _XYWH_FORMATS:
        with np.errstate(invalid="ignore"):  # inf + -inf: a bad box the readers count
            return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)
    if source is BoxFormat.VOC:
        return np.stack([b[:, 0] - 1, b[:, 1] - 1, b[:, 2], b[:, 3]], axis=1)
    if source is BoxFormat.WSOLEVAL_224:
        width, height = _size(size)
        return b * np.array([width, height, width, height]) / float(WSOLEVAL_SIZE)
    raise ValueError(f"unknown box format {source!r}")


def _from_xyxy(b: np.ndarray, target: BoxFormat, size) -> np.ndarray:
    if target is BoxFormat.XYXY:
        return b
    if target in _XYWH_FORMATS:
        return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    if target is BoxFormat.VOC:
        return np.stack([b[:, 0] + 1, b[:, 1] + 1, b[:, 2], b[:, 3]], axis=1)
    if target is BoxFormat.WSOLEVAL_224:
        width, height = _size(size)
        # x * new / old in that order, as the reference computes it (float rounding matters)
        scaled = b * float(WSOLEVAL_SIZE) / np.array([width, height, width, height],
                                                     dtype=np.float64)
        return np.trunc(scaled).astype(np.int64)
    raise ValueError(f"unknown box format {target!r}")


def _size(size) -> tuple[float, float]:
    if size is None:
        raise ValueError("the wsoleval frame needs the image size (width, height)")
    return float(size[0]), float(size[1])


def rectangles_to_frame(rects, width: int, height: int) -> np.ndarray:
    """OpenCV rectangles (n, 4) x y w h on a map of width x height into x0 y0 x1 y1 of
    that map, x1/y1 clipped to the last column/row as wsolevaluation clips its contour
    boxes (int64). An x1 of width - 1 may so be the last pixel or one past it."""
    boxes = convert(rects, BoxFormat.XYWH, BoxFormat.XYXY).astype(np.int64)
    boxes[:, 2] = np.minimum(boxes[:, 2], width - 1)
    boxes[:, 3] = np.minimum(boxes[:, 3], height - 1)
    return boxes
