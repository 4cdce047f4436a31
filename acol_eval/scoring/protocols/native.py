"""The native protocol: original pixels.

Frame: the map upsampled (bicubic) to the image size; threshold t keeps pixels >=
min + t * (max - min); boxes of 8-connected components, x1/y1 exclusive; IoU is
intersection area over union area.
"""

from __future__ import annotations

import numpy as np

from acol_eval.data.boxformats import BoxFormat
from acol_eval.maps.boxes import native_boxes, normalise_map, upsample_map
from acol_eval.metrics.metrics import native_image_ious
from acol_eval.scoring.protocols.base import ScoringProtocol

# an annotation cannot make score allocate more than this per map (float64 map and the
# sweep's work arrays, ~60 bytes a pixel): 64 Mpx, 4 GB, larger than any real photo set
MAX_NATIVE_PIXELS = 64_000_000


class NativeProtocol(ScoringProtocol):
    name = "native"
    frame = "image exclusive"  # per_image.csv: where x0..y1 are
    box_format = BoxFormat.XYXY
    inclusive = False

    def check_size(self, width, height):
        if float(width) * float(height) > MAX_NATIVE_PIXELS:
            return "image_too_large_for_native"
        return None

    def image_record(self, values, gt, width, height, thresholds, record,
                     prepared=None) -> None:
        if len(gt):  # the native sweep needs boxes to score and the image size to upsample
            super().image_record(values, gt, width, height, thresholds, record, prepared)

    def prepare(self, values, width, height):
        return upsample_map(values, int(width), int(height))

    def sweep(self, prepared, gt_frame, thresholds, record) -> None:
        if len(gt_frame):
            record["all"], record["largest"] = native_image_ious(prepared, gt_frame, thresholds)

    def slots(self, record, thresholds):
        return np.arange(len(thresholds))

    def box_at(self, record, thresholds, index, prepared):
        return native_boxes(prepared(), float(thresholds[index]), False)

    def pxap_scores(self, values, mask_shape):
        return normalise_map(upsample_map(values, mask_shape[1], mask_shape[0]))
