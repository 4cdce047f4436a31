"""The wsoleval protocol: clovaai/wsolevaluation's box and mask evaluators.

Frame: the 224x224 uint8 map (bicubic, min-max, x255, truncated); threshold t keeps
pixels > int(t * max); boxes are the bounding rectangles of OpenCV's RETR_TREE contours,
x1 = x + w clipped to 223; ground truth is scaled into the frame with int() truncation
(boxformats.BoxFormat.WSOLEVAL_224); IoU counts pixels inclusively (x1 - x0 + 1).
"""

from __future__ import annotations

import cv2
import numpy as np

from acol_eval.data.boxformats import WSOLEVAL_SIZE, BoxFormat
from acol_eval.maps.boxes import normalise_map, upsample_map, wsoleval_levels, wsoleval_uint8
from acol_eval.metrics.metrics import wsoleval_level_results
from acol_eval.metrics.sweep import WSOLEVAL_LEVELS
from acol_eval.scoring.protocols.base import ScoringProtocol, _read_grey


class WsolevalProtocol(ScoringProtocol):
    name = "wsoleval"
    frame = "224x224 inclusive"  # per_image.csv: where x0..y1 are
    box_format = BoxFormat.WSOLEVAL_224  # ground truth in, boxes out: boxformats.convert
    inclusive = True

    def slot_count(self, n_thresholds: int) -> int:
        return WSOLEVAL_LEVELS  # one slot per uint8 level: thresholds read them via map_max

    def extra_fields(self, n_slots: int) -> list[tuple]:
        return [("box", np.int16, (n_slots, 4))]  # the largest contour's box per level

    def prepare(self, values, width, height):
        return wsoleval_uint8(values)

    def sweep(self, prepared, gt_frame, thresholds, record) -> None:
        record["map_max"] = int(prepared.max())
        record["all"], record["largest"], record["box"] = wsoleval_level_results(
            prepared, gt_frame)

    def slots(self, record, thresholds):
        return wsoleval_levels(thresholds, int(record["map_max"]))

    def box_at(self, record, thresholds, index, prepared):
        level = self.slots(record, thresholds)[index]
        return record["box"][level].astype(np.int64)[None]

    def pxap_scores(self, values, mask_shape):
        return normalise_map(upsample_map(values, WSOLEVAL_SIZE, WSOLEVAL_SIZE))

    def read_mask(self, files, ignore):
        """As wsolevaluation's get_mask: every instance mask and the ignore mask resized
        to 224x224 (nearest) then > 0.5; a missing ignore file means no ignore region."""
        size = (WSOLEVAL_SIZE, WSOLEVAL_SIZE)
        parts = [_read_grey(f) for f in files]
        if not parts or any(p is None for p in parts):
            return None
        foreground = np.any([cv2.resize(p, size, interpolation=cv2.INTER_NEAREST) > 0.5
                             for p in parts], axis=0)
        mask = foreground.astype(np.uint8)
        region = _read_grey(ignore) if ignore else None
        if region is not None:
            region = cv2.resize(region, size, interpolation=cv2.INTER_NEAREST) > 0.5
            mask[region & ~foreground] = 255
        return mask
