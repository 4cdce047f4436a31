"""Where the CAM threshold of `localize` and `boxes` comes from.

A CAM threshold means one thing everywhere in acol-eval: a fraction t of the map's
range, applied to the map upsampled (bicubic) to the original image, in the image's own
pixel frame: a pixel is kept when value >= min + t * (max - min). That is the `native`
protocol of `score` and the box `localize` draws.

Precedence, first that applies:
1. `--cam-threshold T` given on the command line;
2. `--threshold-from REPORT`: the threshold of REPORT's `best_gt_known_loc` row (the box
   localize draws is the largest component, judged GT-known at IoU 50: that row's
   threshold is the one that made most such boxes right);
3. the calibrated threshold a checkpoint carries (`cam_threshold`, `cam_threshold_source`,
   written by `train` when its data has boxes);
4. the default 0.2, which is uncalibrated: the caller says so once.
Giving both 1 and 2 is refused rather than silently dropping one of them.

A report scored under `--protocol wsoleval` is refused by `--threshold-from`: wsoleval
picks its thresholds in another frame (uint8 levels int(t * max) of the map resized to
224x224, whatever the image size), and no fraction of the native map's range keeps the
same pixels for every image, so it cannot be converted exactly. The error names the
command that scores the same run under `--protocol native` (from the report's
report.json). A centre-baseline report is refused too: its threshold was chosen for a
Gaussian, not for the run's maps. A report of class-agnostic maps (best_agnostic_loc)
serves as well as one of label maps: localize boxes the top-1 map.

`score` reads the other way round (run_threshold): the threshold a localize or boxes run
boxed with (run.json) becomes the fixed threshold of its report's rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pandas as pd

from acol_eval.maps.reportfolder import read_summary, rescore_command
from acol_eval.maps.runfolder import LocalizeRun
from acol_eval.util.errors import AcolError

DEFAULT_CAM_THRESHOLD = 0.2
REPORT_METRIC = "best_gt_known_loc"
AGNOSTIC_METRIC = "best_agnostic_loc"  # the same threshold, of class-agnostic maps
NATIVE_PROTOCOL = "native"


class ThresholdSource(str, Enum):
    """Where a CAM threshold came from, as written into run.json."""

    FLAG = "flag"  # --cam-threshold T
    REPORT = "report"  # --threshold-from REPORT
    CHECKPOINT = "checkpoint"  # calibrated by train, stored in the checkpoint
    DEFAULT = "default"  # nothing said: 0.2, uncalibrated


@dataclass(frozen=True)
class CamThreshold:
    """A CAM threshold (fraction of the native, upsampled map's range) and its origin.

    detail: the report's summary.csv, or the checkpoint's own account of its
    calibration, or '' for a flag or the default.
    """

    value: float
    source: ThresholdSource
    detail: str = ""

    @property
    def calibrated(self) -> bool:
        return self.source is not ThresholdSource.DEFAULT

    def describe(self) -> str:
        """One line for the terminal: the threshold and where it came from."""
        if self.source is ThresholdSource.FLAG:
            return f"CAM threshold {self.value:g} (--cam-threshold)"
        if self.source is ThresholdSource.REPORT:
            return f"CAM threshold {self.value:g} ({REPORT_METRIC} of {self.detail})"
        if self.source is ThresholdSource.CHECKPOINT:
            return f"CAM threshold {self.value:g} (calibrated in the checkpoint: {self.detail})"
        return (f"CAM threshold {self.value:g} (default, uncalibrated: give --cam-threshold, "
                f"--threshold-from REPORT, or a checkpoint trained with boxes)")

    def record(self) -> dict[str, object]:
        """The fields run.json keeps."""
        return {"cam_threshold": self.value, "cam_threshold_source": self.source.value,
                "cam_threshold_detail": self.detail}


def check_threshold(value: float, what: str) -> float:
    """`value` as a float in [0, 1]; anything else (NaN, inf, out of range) an AcolError
    naming `what` (the flag or file it came from)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AcolError(f"{what}: {value!r} is not a number") from None
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise AcolError(f"{what}: CAM threshold {value} is outside [0, 1]")
    return number


def threshold_from_report(report: str | Path) -> tuple[float, str]:
    """The `best_gt_known_loc` threshold of a `score` report (folder or its summary.csv)
    scored under the native protocol, and the summary.csv it came from.

    Refused with an AcolError: not a report, a report without that threshold (no boxes
    were scored), a wsoleval report (its thresholds are uint8 levels of a 224x224 map:
    no exact conversion, see the module docstring), a baseline report, a threshold
    outside [0, 1]."""
    table, file = read_summary(report, {"metric", "threshold", "protocol"})
    rows = table[table["metric"] == REPORT_METRIC]
    if rows.empty:
        rows = table[table["metric"] == AGNOSTIC_METRIC]
    if rows.empty:
        raise AcolError(f"--threshold-from {report}: {file} has no {REPORT_METRIC} threshold "
                        f"(score it against annotations with boxes)")
    row = rows.iloc[0]
    protocol = str(row["protocol"]).strip()
    if protocol != NATIVE_PROTOCOL:
        command = rescore_command(report, NATIVE_PROTOCOL)
        if protocol.startswith(NATIVE_PROTOCOL):
            raise AcolError(f"--threshold-from {report}: it scored a baseline ({protocol}), "
                            f"not the run's maps; score the maps themselves and pass that "
                            f"report: {command}")
        raise AcolError(f"--threshold-from {report}: it was scored with --protocol {protocol}, "
                        f"whose thresholds are 224x224 uint8 levels that no native threshold "
                        f"reproduces; score the run natively and pass that report: {command}")
    threshold = pd.to_numeric(pd.Series([row["threshold"]]), errors="coerce").iloc[0]
    count = pd.to_numeric(pd.Series([row.get("count", 1)]), errors="coerce").iloc[0]
    if pd.isna(threshold) or (pd.notna(count) and count <= 0):
        raise AcolError(f"--threshold-from {report}: {file} has no {REPORT_METRIC} threshold "
                        f"(no image with boxes was scored)")
    return check_threshold(threshold, f"--threshold-from {report}"), str(file)


def resolve_cam_threshold(cam_threshold: float | None = None,
                          threshold_from: str | Path | None = None,
                          checkpoint_threshold: float | None = None,
                          checkpoint_source: str | None = None) -> CamThreshold:
    """The CAM threshold to box with and where it came from (precedence in the module
    docstring). `checkpoint_threshold` / `checkpoint_source`: a checkpoint's
    `cam_threshold` and `cam_threshold_source`, None for an older checkpoint or none."""
    if cam_threshold is not None and threshold_from is not None:
        raise AcolError("give --cam-threshold T or --threshold-from REPORT, not both")
    if cam_threshold is not None:
        return CamThreshold(check_threshold(cam_threshold, "--cam-threshold"),
                            ThresholdSource.FLAG)
    if threshold_from is not None:
        value, file = threshold_from_report(threshold_from)
        return CamThreshold(value, ThresholdSource.REPORT, file)
    if checkpoint_threshold is not None:
        value = check_threshold(checkpoint_threshold, "the checkpoint's cam_threshold")
        return CamThreshold(value, ThresholdSource.CHECKPOINT,
                            str(checkpoint_source or "calibrated by train"))
    return CamThreshold(DEFAULT_CAM_THRESHOLD, ThresholdSource.DEFAULT)


# run.json's cam_threshold_source -> the threshold_source of score's fixed rows
RUN_SOURCES = {ThresholdSource.CHECKPOINT.value: "run:checkpoint-calibrated",
               ThresholdSource.REPORT.value: "run:threshold-from",
               ThresholdSource.FLAG.value: "run:cam-threshold"}


def run_threshold(run: str | Path) -> tuple[float, str] | None:
    """(threshold, threshold_source) a localize or boxes run boxed with, as its run.json
    records it, for the fixed rows of its score; None for the uncalibrated default, a
    folder of .npy maps or a run.json without one.

    The threshold is a fraction of the map's range. Under `--protocol native` it means
    exactly what it meant to the run's boxes (same map upsampled to the image, same
    normalisation, same largest component); under wsoleval the same fraction is read on
    the 224x224 uint8 map, as any --threshold is."""
    folder = LocalizeRun(Path(run))
    value, given = folder.cam_threshold
    source = RUN_SOURCES.get(str(given))
    if source is None or value is None:
        return None
    return check_threshold(value, f"{folder.folder / 'run.json'} cam_threshold"), source
