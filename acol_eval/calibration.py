"""Calibrating the CAM threshold of a trained model.

`localize` boxes the top-1 map at a CAM threshold. A fixed 0.2 of the map's range is
far too low for the diffuse maps of fine-tuned models (most boxes become the whole
image), so `train`, when its data has boxes, ends by choosing the threshold that gives
the best GT-known localisation on its validation split, with the tool itself:

    validation images with boxes -> OUT/calibration/set.csv (csv: annotation source)
    localize csv:set.csv --checkpoint best.pt  -> OUT/calibration/run
    the images it localized                    -> OUT/calibration/localized.txt
    score run --protocol native --image-list localized.txt -> OUT/calibration/report
    the report's best_gt_known_loc threshold   -> the checkpoint's cam_threshold

An image localize could not decode has no map: the score names the localized images as
its subset (--image-list), so it is not refused as partial, and its report says "N of M".

The native protocol is the one localize's boxes use (a fraction of the range of the map
upsampled to the image, in original pixels), so the threshold means there exactly what
it means in localize. The value stored is score's own grid double (not the rounded
figure of summary.csv), so `localize` with the calibrated threshold reproduces the
calibration report's boxes image for image. The calibration folder is kept: its
report.html shows how the threshold was chosen.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .readers import Annotations

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


def calibration_rows(annotations: Annotations, images: list[str]) -> list[list[str]]:
    """csv: rows (image, label, x0, y0, x1, y1) for the validation `images` (relative to
    annotations.root) that have boxes, image paths made absolute so the file can live in
    the run folder; boxes written with repr, so they read back as the same doubles."""
    root = Path(annotations.root).resolve()
    wanted = set(images)
    labels = annotations.images.drop_duplicates("image").set_index("image")["label"]
    boxes = annotations.boxes[annotations.boxes["image"].isin(wanted)]
    rows = []
    for box in boxes.itertuples(index=False):
        if box.image not in labels.index:
            continue
        rows.append([str(root / box.image), str(labels[box.image]),
                     *(repr(float(v)) for v in (box.x0, box.y0, box.x1, box.y1))])
    return rows


def calibrate(checkpoint: str | Path, annotations: Annotations, images: list[str],
              out: str | Path, device: str = "auto", workers: int | None = None,
              log: Callable[[str], None] = lambda message: None) -> Calibration | None:
    """The best GT-known CAM threshold of `checkpoint` on the validation `images`, or None
    when none of them has a box (then localize keeps the uncalibrated default). Works in
    OUT/calibration/ (replaced if a previous calibration left one)."""
    from .localization import LocalizeConfig, localize
    from .scoring import ScoreConfig, score

    rows = calibration_rows(annotations, images)
    if not rows:
        return None
    folder = Path(out) / CALIBRATION_FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with open(folder / "set.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image", "label", "x0", "y0", "x1", "y1"])
        writer.writerows(rows)
    source = f"csv:{folder / 'set.csv'}"
    log(f"calibrating the CAM threshold on {len({r[0] for r in rows})} validation images "
        f"with boxes ({folder})")
    localize(LocalizeConfig(images=source, out=str(folder / "run"), checkpoint=str(checkpoint),
                            top_k=1, cam_threshold=0.2, device=device, workers=workers),
             log=lambda message: None)
    localized = _localized(folder / "run")
    if not localized:
        log("calibration: no validation image could be localized; the threshold stays "
            "uncalibrated")
        return None
    (folder / "localized.txt").write_text("".join(f"{name}\n" for name in localized))
    result = score(ScoreConfig(run=str(folder / "run"), annotations=source,
                               out=str(folder / "report"), protocol="native",
                               image_list=str(folder / "localized.txt"),
                               workers=0 if workers == 0 else None))
    return _from_summary(result.summary, checkpoint, annotations)


def _localized(run: Path) -> list[str]:
    """The images a localize run has maps of (predictions.csv's image column)."""
    try:
        table = pd.read_csv(run / "predictions.csv", usecols=["image"], dtype=str,
                            keep_default_na=False)
    except (OSError, ValueError):
        return []
    return list(dict.fromkeys(table["image"]))


def _from_summary(summary: pd.DataFrame, checkpoint: str | Path,
                  annotations: Annotations) -> Calibration | None:
    row = summary[summary["metric"] == METRIC]
    if row.empty:
        row = summary[summary["metric"] == AGNOSTIC_METRIC]
    if row.empty or not math.isfinite(float(row["threshold"].iloc[0])):
        return None
    threshold = float(row["threshold"].iloc[0])  # score's grid double, not the CSV's text
    value, count = float(row["value"].iloc[0]), int(row["count"].iloc[0])
    source = (f"best GT-known Loc {value:.1f}% on {count} validation images with boxes "
              f"(native protocol) of {Path(checkpoint).name}")
    return Calibration(threshold, value, count, source)
