"""The interface every scoring protocol implements.

A protocol says how a map and an image's ground truth become boxes and IoUs:
- prepare: the raw map into the protocol's frame (what is thresholded);
- box_format: how boxes are written in that frame (boxformats.BoxFormat); scale_gt
  and to_original convert ground truth into it and boxes out of it;
- sweep: the first-pass record of one image, every CAM threshold at once;
- slots: where each CAM threshold reads that record;
- box_at: the reported box at one threshold, in the frame;
- iou: IoU in the frame's convention (x1/y1 counted inclusively or not);
- pxap_scores / read_mask: the score map and mask PxAP compares, pixel for pixel.
`scoring` only ever talks to this interface; a new protocol is a new module here and
a line in the registry (protocols/__init__.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import cv2
import numpy as np

from acol_eval.data.boxformats import BoxFormat, convert
from acol_eval.metrics.metrics import iou_exclusive, iou_inclusive


class ScoringProtocol(ABC):
    """One protocol. Subclasses set `name`, `box_format` (how boxes are written in the
    protocol's frame), `inclusive` (its IoU counts x1/y1 as inclusive) and implement
    the abstract methods."""

    name: str = ""
    frame: str = ""
    box_format: BoxFormat = BoxFormat.XYXY
    inclusive: bool = False

    # ---------------------------------------------------------------- the record
    def slot_count(self, n_thresholds: int) -> int:
        """How many slots a record holds (one per threshold unless the protocol maps
        thresholds onto fewer levels)."""
        return n_thresholds

    def extra_fields(self, n_slots: int) -> list[tuple]:
        """Protocol-specific fields of the record, beside ok/map_max/all/largest."""
        return []

    def record_dtype(self, n_thresholds: int) -> np.dtype:
        """One image's first-pass results, kept on disk between the passes: per slot the
        best IoU of all boxes and of the largest box; map_max: the map's maximum in the
        protocol's units (wsoleval turns thresholds into levels with it)."""
        slots = self.slot_count(n_thresholds)
        return np.dtype([("ok", np.int8), ("map_max", np.int32), ("all", np.float64, (slots,)),
                         ("largest", np.float64, (slots,)), *self.extra_fields(slots)])

    # ---------------------------------------------------------------- per image
    def image_record(self, values: np.ndarray, gt: np.ndarray, width: float, height: float,
                     thresholds: np.ndarray, record, prepared: np.ndarray | None = None
                     ) -> None:
        """The first pass of one image (what `score` runs): prepare the map, scale the
        ground truth (g, 4, original pixels, x1/y1 exclusive) and sweep every threshold
        into `record`. Without boxes the IoUs stay 0 and no image size is needed.
        prepared: the map already prepared (score's region metrics read it too)."""
        gt_frame = self.scale_gt(gt, width, height) if len(gt) else np.zeros((0, 4), np.int64)
        if prepared is None:
            prepared = self.prepare(values, width, height)
        self.sweep(prepared, gt_frame, thresholds, record)

    def threshold_ious(self, record, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(all boxes, largest box) best IoU at every CAM threshold from a record: the
        MaxBoxAccV2 and the MaxBoxAcc / GT-known inputs."""
        slots = self.slots(record, thresholds)
        return record["all"][slots], record["largest"][slots]

    def check_size(self, width: float, height: float) -> str | None:
        """Why an image of this size cannot be scored (an issue name), or None."""
        return None

    @abstractmethod
    def prepare(self, values: np.ndarray, width: float, height: float) -> np.ndarray:
        """The raw 2-D map in the protocol's frame."""

    def scale_gt(self, gt: np.ndarray, width: float, height: float) -> np.ndarray:
        """Ground truth (g, 4) in original pixels (XYXY) into the frame's box format."""
        return convert(gt, BoxFormat.XYXY, self.box_format, (width, height))

    @abstractmethod
    def sweep(self, prepared: np.ndarray, gt_frame: np.ndarray, thresholds: np.ndarray,
              record) -> None:
        """Fill `record` (map_max, all, largest, extras) from the prepared map."""

    @abstractmethod
    def slots(self, record, thresholds: np.ndarray) -> np.ndarray:
        """Index into the record's slots of every CAM threshold."""

    @abstractmethod
    def box_at(self, record, thresholds: np.ndarray, index: int,
               prepared: Callable[[], np.ndarray]) -> np.ndarray:
        """The reported box (0 or 1 rows, x0 y0 x1 y1 in the frame) at threshold index
        `index`; `prepared()` gives the prepared map when the record is not enough."""

    def to_original(self, box: np.ndarray, width: float, height: float) -> np.ndarray:
        """Frame boxes (n, 4) in original pixels, x1/y1 exclusive (XYXY), float64."""
        return convert(box, self.box_format, BoxFormat.XYXY, (width, height))

    def iou(self, boxes: np.ndarray, gt_frame: np.ndarray) -> np.ndarray:
        """(n, g) IoU in the frame's box convention."""
        return iou_inclusive(boxes, gt_frame) if self.inclusive else iou_exclusive(
            boxes, gt_frame)

    # ---------------------------------------------------------------- PxAP
    @abstractmethod
    def pxap_scores(self, values: np.ndarray, mask_shape: tuple[int, int]) -> np.ndarray:
        """The [0, 1] score map compared with a mask of `mask_shape` (h, w)."""

    def read_mask(self, files: list[str], ignore: str) -> np.ndarray | None:
        """1 foreground, 0 background, 255 ignored (ignore region minus foreground);
        None when a mask file cannot be read. Instance masks of other sizes are
        resized (nearest) to the first one's size."""
        parts = [_read_grey(f) for f in files]
        if not parts or any(p is None for p in parts):
            return None
        height, width = parts[0].shape
        parts = [p if p.shape == (height, width) else
                 cv2.resize(p, (width, height), interpolation=cv2.INTER_NEAREST) for p in parts]
        foreground = np.any([p > 127 if p.max() > 1 else p > 0 for p in parts], axis=0)
        mask = foreground.astype(np.uint8)
        region = _read_grey(ignore) if ignore else None
        if region is not None:
            if region.shape != mask.shape:
                region = cv2.resize(region, (width, height), interpolation=cv2.INTER_NEAREST)
            mask[(region > 127) & ~foreground] = 255
        return mask


def _read_grey(path: str) -> np.ndarray | None:
    """A greyscale image as uint8, None when missing or unreadable (no OpenCV warning:
    the file is read by numpy and decoded from memory)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError):
        return None
    if not data.size:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return image if image is not None and image.size else None
