"""What `acol-eval boxes` is asked and what it refuses before writing: `BoxesConfig` (one
field per flag), the checks that RUN is a finished localize run and that NEW_RUN (and
--overlays DIR) may be written, and where RUN's images are for the overlays
(`find_image_root`); `check_inputs` runs them all. Split from boxing.py so that the
inputs read apart from the re-boxing loop and the files it writes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acol_eval.maps.mapstore import INDEX_COLUMNS
from acol_eval.maps.runfolder import (
    PREDICTIONS_FILE,
    LocalizeRun,
    record_arguments,
    record_image_roots,
)
from acol_eval.maps.thresholds import CamThreshold, check_threshold, resolve_cam_threshold
from acol_eval.util import safeio
from acol_eval.util.csvtext import text
from acol_eval.util.errors import AcolError
from acol_eval.util.runtime import resolve_workers
from acol_eval.util.safeio import is_inside

BOX_FIELDS = ["x0", "y0", "x1", "y1"]
TAIL = [*BOX_FIELDS, "cam_threshold"]  # the last columns of predictions.csv, redone here


@dataclass(frozen=True)
class BoxesConfig:
    """`boxes` options, one field per flag. Exactly one of cam_threshold (a fraction of
    the upsampled map's range, native frame) and threshold_from (a native report)."""

    run: str
    out: str
    cam_threshold: float | None = None
    threshold_from: str | None = None
    all_boxes: bool = False
    overlays: str | None = None
    images: str | None = None  # where RUN's images are, for --overlays
    workers: int | None = None  # processes: None default, 0 this one (resolve_workers)

    def __post_init__(self) -> None:
        if not self.run or not self.out:
            raise AcolError("boxes needs RUN and --out NEW_RUN")
        if (self.cam_threshold is None) == (self.threshold_from is None):
            raise AcolError("give --cam-threshold T or --threshold-from REPORT (one of them)")
        if self.cam_threshold is not None:
            check_threshold(self.cam_threshold, "--cam-threshold")
        if self.images is not None and not self.overlays:
            raise AcolError("--images is only used with --overlays DIR")
        resolve_workers(self.workers)  # refuses negative and absurd counts


# --------------------------------------------------------------------------- checks


def csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="") as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AcolError(f"{path} is unreadable ({exc})") from None


def check_run(run: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The maps and run.json of a finished localize run; AcolError when RUN is not one."""
    folder = LocalizeRun(run)
    if not run.is_dir():
        raise AcolError(f"{run} is not a localize run folder")
    folder.check_finished()  # before predictions.csv, which an unfinished run lacks
    header = csv_header(run / PREDICTIONS_FILE)
    if header[-len(TAIL):] != TAIL or not {"image", "width", "height"} <= set(header):
        raise AcolError(f"{run / 'predictions.csv'} is not a localize predictions.csv")
    if csv_header(run / "maps_index.csv") != INDEX_COLUMNS:
        raise AcolError(f"{run / 'maps_index.csv'} is not a localize map index")
    maps, _ = folder.map_array()
    return maps, folder.record


def check_new_folder(folder: Path, run: Path, flag: str) -> None:
    """`folder` may be written: it does not exist or is empty, and it is not RUN or inside it."""
    if is_inside(folder, run):
        raise AcolError(f"{flag} {folder} is {run} or inside it; choose a new folder")
    if folder.is_symlink():
        raise AcolError(f"{flag} {folder} exists and is not a folder")
    # no entry but maybe our lock file (left by a refused or killed earlier try)
    safeio.refuse_existing(folder, None, False, lambda found: (
        f"{flag} {folder} exists and is not empty; choose a new folder"),
        label=f"{flag} {folder}")


# --------------------------------------------------------------------------- images


def _root_candidates(config: BoxesConfig, record: dict[str, Any]) -> list[Path]:
    """Where RUN's image names may be relative to: --images, run.json's resolved image
    root, localize's --image-root, its IMAGES argument (a folder, a list file's folder,
    or FORMAT:PATH's folder)."""
    if config.images:
        return [Path(config.images)]
    return [Path(c) for c in record_image_roots(record) if Path(c).is_dir()]


def _annotation_root(record: dict[str, Any]) -> Path | None:
    """The image root of the annotation source RUN was localised from, if it was one."""
    from acol_eval.data.readers import read_source

    arguments = record_arguments(record)
    images = arguments.get("images")
    if not isinstance(images, str) or not images:
        return None
    try:
        return Path(read_source(images).root)
    except (AcolError, OSError, ValueError, KeyError):
        return None


def find_image_root(config: BoxesConfig, record: dict[str, Any], first_image: str | None
                    ) -> Path:
    """The folder RUN's image names are relative to (checked on the first image)."""
    candidates = _root_candidates(config, record)
    if first_image is None:  # no image in RUN: nothing to draw
        return candidates[0] if candidates else Path(".")
    for root in candidates:
        if (root / first_image).is_file():
            return root
    source_root = None if config.images else _annotation_root(record)
    if source_root is not None and (source_root / first_image).is_file():
        return source_root
    if config.images:
        raise AcolError(f"--images {config.images}: {first_image} is not there")
    raise AcolError("cannot find RUN's images for --overlays; give --images ROOT")


def _first_image(run: Path) -> str | None:
    with open(run / PREDICTIONS_FILE, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        row = next(reader, None)
    return text(row[header.index("image")]) if row else None


def known_image_root(config: BoxesConfig, record: dict[str, Any], found: Path | None
                     ) -> str | None:
    """The image root NEW_RUN's run.json names (galleries of its reports look there)."""
    if found is None:
        candidates = _root_candidates(config, record)
        found = candidates[0] if candidates else None
    return str(found.resolve()) if found else record.get("image_root")


# --------------------------------------------------------------------------- all of them


def check_inputs(config: BoxesConfig, run: Path, out: Path
                 ) -> tuple[CamThreshold, np.ndarray, dict[str, Any], Path | None]:
    """Everything that can be refused is refused here, before anything is written."""
    if run.resolve() == out.resolve():
        raise AcolError(f"--out {out} is RUN itself; boxes writes a new run folder")
    threshold = resolve_cam_threshold(config.cam_threshold, config.threshold_from)
    maps, record = check_run(run)
    check_new_folder(out, run, "--out")
    image_root = None
    if config.overlays:
        check_new_folder(Path(config.overlays), run, "--overlays")
        image_root = find_image_root(config, record, _first_image(run))
    return threshold, maps, record, image_root

