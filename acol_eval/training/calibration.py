"""Calibrating the CAM threshold of a trained model.

`localize` boxes the top-1 map at a CAM threshold. A fixed 0.2 of the map's range is
far too low for the diffuse maps of fine-tuned models (most boxes become the whole
image), so `train`, when its data has boxes, ends by choosing the threshold that gives
the best GT-known localisation on its validation split, with the tool itself, in
memory (the annotations and the image list are never written out and read back):

    validation images with boxes       -> a CalibrationSet (annotations + image list)
    localize them with best.pt         -> OUT/calibration/run   (a LocalizeRun)
    score the images it localized, --protocol native -> OUT/calibration/report
    the score's best_gt_known_loc threshold (its summary, in memory) -> the checkpoint

An image localize could not decode has no map: the score is given the localized images
as its subset (as an --image-list names them), so it is not refused as partial, and its
report says "N of M".

The native protocol is the one localize's boxes use (a fraction of the range of the map
upsampled to the image, in original pixels), so the threshold means there exactly what
it means in localize. The value stored is score's own grid double (not the rounded
figure of summary.csv), so `localize` with the calibrated threshold reproduces the
calibration report's boxes image for image. The calibration folder is kept: its
report.html shows how the threshold was chosen.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.data.imagelist import ImageList
from acol_eval.data.readers import Annotations
from acol_eval.data.readers.table import BOX_COLUMNS, finish

CALIBRATION_FOLDER = "calibration"
METRIC = "best_gt_known_loc"
AGNOSTIC_METRIC = "best_agnostic_loc"  # where some label is not a class of the model


@dataclass(frozen=True)
class Calibration:
    """threshold: the CAM threshold (fraction of the native map's range); gt_known: the
    GT-known Loc (percent) it gives on `images` validation images; source: one line
    saying where it came from, as the checkpoint and run.json record it."""

    threshold: float
    gt_known: float
    images: int
    source: str


def calibration_rows(annotations: Annotations, images: list[str]) -> list[list]:
    """Rows (image, label, x0, y0, x1, y1), one per box, of the validation `images`
    (relative to annotations.root) that have boxes and a label; image paths made
    absolute, as the calibration run names them."""
    root = Path(annotations.root).resolve()
    wanted = set(images)
    labels = annotations.images.drop_duplicates("image").set_index("image")["label"]
    boxes = annotations.boxes[annotations.boxes["image"].isin(wanted)]
    rows = []
    for box in boxes.itertuples(index=False):
        if box.image not in labels.index:
            continue
        rows.append([str(root / box.image), str(labels[box.image]),
                     *(float(v) for v in (box.x0, box.y0, box.x1, box.y1))])
    return rows


@dataclass(frozen=True)
class CalibrationSet:
    """The validation images with boxes, in memory: the annotations score reads and
    the image list localize sweeps, image names absolute."""

    annotations: Annotations
    listing: ImageList

    @classmethod
    def of(cls, annotations: Annotations, images: list[str]) -> CalibrationSet | None:
        rows = calibration_rows(annotations, images)
        if not rows:
            return None
        root = Path(annotations.root).resolve()
        names = sorted({r[0] for r in rows})
        label = {r[0]: r[1] for r in rows}
        # sizes are left to localize, which reads every image it sweeps (predictions.csv)
        table = pd.DataFrame({"image": names, "label": [label[n] for n in names],
                              "split": "", "width": np.nan, "height": np.nan})
        boxes = pd.DataFrame([[r[0], *r[2:]] for r in rows], columns=BOX_COLUMNS)
        clean = finish(root, table, boxes, [], {}, read_sizes=False)
        return cls(clean, ImageList(root, names, [label[n] for n in names]))

    @property
    def count(self) -> int:
        return len(self.listing.images)


def calibrate(checkpoint: str | Path, annotations: Annotations, images: list[str],
              out: str | Path, device: str = "auto", workers: int | None = None,
              log: Callable[[str], None] = lambda message: None,
              images_are: str = "validation images") -> Calibration | None:
    """The best GT-known CAM threshold of `checkpoint` on the validation `images`, or None
    when none of them has a box (then localize keeps the uncalibrated default). Works in
    OUT/calibration/ (replaced if a previous calibration left one)."""
    chosen = CalibrationSet.of(annotations, images)
    if chosen is None:
        return None
    folder = Path(out) / CALIBRATION_FOLDER
    log(f"calibrating the CAM threshold on {chosen.count} validation images with boxes "
        f"({folder})")
    summary = localize_and_score(checkpoint, chosen, folder, "native", device, workers)
    if summary is None:
        log("calibration: no validation image could be localized; the threshold stays "
            "uncalibrated")
        return None
    return _from_summary(summary, checkpoint, images_are)


def localize_and_score(checkpoint: str | Path, chosen: CalibrationSet, folder: Path,
                       protocol: str, device: str = "auto", workers: int | None = None,
                       interval: float = 0.001) -> pd.DataFrame | None:
    """Localize `chosen`'s images with `checkpoint` into folder/run and score them under
    `protocol` into folder/report (folder replaced first); the score's summary, or None
    when no image could be localized."""
    from acol_eval.maps.localization import localize
    from acol_eval.maps.localizeconfig import LocalizeConfig
    from acol_eval.scoring.scoring import GivenInputs, ScoreConfig, score

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    root = str(chosen.listing.root)
    run = localize(LocalizeConfig(images=root, out=str(folder / "run"),
                                  checkpoint=str(checkpoint), top_k=1, cam_threshold=0.2,
                                  device=device, workers=workers),
                   log=lambda message: None, listing=chosen.listing).run
    localized = run.localized()
    if not localized:
        return None
    described = f"validation images with boxes under {root} (in memory)"
    return score(ScoreConfig(run=str(run.folder), annotations=described,
                             out=str(folder / "report"), protocol=protocol,
                             interval=interval, workers=0 if workers == 0 else None),
                 GivenInputs(chosen.annotations, tuple(localized))).summary


def _from_summary(summary: pd.DataFrame, checkpoint: str | Path,
                  images_are: str) -> Calibration | None:
    row = summary[summary["metric"] == METRIC]
    if row.empty:
        row = summary[summary["metric"] == AGNOSTIC_METRIC]
    if row.empty or not math.isfinite(float(row["threshold"].iloc[0])):
        return None
    threshold = float(row["threshold"].iloc[0])  # score's grid double, not the CSV's text
    value, count = float(row["value"].iloc[0]), int(row["count"].iloc[0])
    source = (f"best GT-known Loc {value:.1f}% on {count} {images_are} with boxes "
              f"(native protocol) of {Path(checkpoint).name}")
    return Calibration(threshold, value, count, source)
