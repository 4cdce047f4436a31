"""`acol-eval boxes RUN --out NEW_RUN`: redo a localize run's boxes at another CAM threshold
from its map store alone: no model, no network, no torch unless overlays are drawn.

localize boxes an image by upsampling the float16 top-1 map it stores (bicubic, to the
image's width and height) and taking the largest 8-connected component at the threshold
(boxes.upsample_map, boxes.native_boxes). The map store holds exactly those float16 maps,
so doing the same here gives the very predictions.csv that localize would have written at
that threshold, byte for byte: every other column is copied from RUN's row untouched.

NEW_RUN shares RUN's map store instead of copying it (it can be gigabytes): maps.f16,
maps_index.csv and maps.json are symbolic links, relative ones, to the real files behind
RUN's (so boxes of a boxes run point at the original store, not along a chain). Relative
links keep working when RUN and NEW_RUN are moved or copied together (a project folder
renamed, rsync -a, tar), which is how runs travel; absolute links would survive moving
NEW_RUN alone but break on every copy to another machine or path. run.json records RUN's
absolute path too, so a broken link can be traced.

Rows are streamed (predictions.csv and maps_index.csv are both in image order), maps are
memory-mapped: memory stays flat whatever the number of images. The options and every
check made before anything is written are boxesconfig's; this module re-boxes and writes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import numpy as np

from acol_eval.maps.boxes import native_boxes, upsample_map
from acol_eval.maps.boxesconfig import (
    BOX_FIELDS,
    TAIL,
    BoxesConfig,
    check_inputs,
    check_new_folder,
    csv_header,
    known_image_root,
)
from acol_eval.maps.maps import overlay_caption
from acol_eval.maps.mapstore import INDEX_COLUMNS, MAP_DTYPE
from acol_eval.maps.overlays import write_overlay
from acol_eval.maps.runfolder import ERRORS_FILE, PREDICTIONS_FILE, record_arguments
from acol_eval.maps.thresholds import CamThreshold
from acol_eval.util.csvtext import csv_writer, text
from acol_eval.util.errors import AcolError
from acol_eval.util.progress import Progress
from acol_eval.util.runtime import library_versions, ordered_map, resolve_workers
from acol_eval.util.safeio import (
    LOCK_NAME,
    FolderLock,
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    is_inside,
)

STORE_FILES = ("maps.f16", "maps_index.csv", "maps.json")
MAX_PIXELS = 20_000 * 20_000  # the largest image localize decodes (data.Image.MAX_IMAGE_PIXELS)


@dataclass(frozen=True)
class BoxesResult:
    out: Path
    images: int  # rows of predictions.csv
    without_box: int  # rows whose top-1 map gave no box (constant or non-finite map)
    threshold: CamThreshold
    overlays: int
    overlay_failed: int
    seconds: float


# --------------------------------------------------------------------------- the work


def top1_rows(index_file: IO[str]) -> Iterator[tuple[str, int, str]]:
    """(image, map row, class name) of every pred_rank 1 map, in file order."""
    reader = csv.reader(index_file)
    next(reader)
    for row in reader:
        if len(row) == len(INDEX_COLUMNS) and row[4] == "1":
            if not row[0].isdigit():
                raise AcolError(f"maps_index.csv line {reader.line_num}: {row[0]!r} is not "
                                f"a map row")
            yield text(row[1]), int(row[0]), text(row[3])


def image_size(row: list[str], columns: dict[str, int], image: str) -> tuple[int, int]:
    """width, height of a predictions row, bounded like a decodable image."""
    try:
        width, height = int(row[columns["width"]]), int(row[columns["height"]])
    except (ValueError, IndexError):
        raise AcolError(f"predictions.csv: {image} has no usable width and height") from None
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise AcolError(f"predictions.csv: {image} is {width}x{height}, not a usable size")
    return width, height


CHUNK = 256  # images per task: large enough to hide the hand-over, small for flat memory


@dataclass(frozen=True)
class BoxJob:
    """What every chunk of images shares. threshold: fraction of the upsampled map's range;
    overlays / image_root: where overlays go and where the images are (None: no overlays)."""

    maps_file: str
    shape: tuple[int, int, int]
    threshold: float
    all_boxes: bool
    overlays: str | None = None
    image_root: str | None = None


# one image: (image, its predictions.csv row, width, height, top-1 map row, its class, the
# overlay's caption (top-1 class and score), its ground-truth boxes for the overlay or None)
Item = tuple[str, list[str], int, int, int, str, str, "np.ndarray | None"]


@dataclass
class ChunkResult:
    predictions: list[list[Any]]  # predictions.csv rows, boxes redone
    boxes: list[list[Any]]  # boxes.csv rows (with all_boxes)
    without_box: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # overlays not drawn


def box_chunk(job: BoxJob, items: list[Item]) -> ChunkResult:
    """Boxes of a chunk of images from their top-1 maps, as localize makes them: the map
    upsampled to the image, the largest 8-connected component at the threshold, x0 y0
    x1 y1 with x1/y1 exclusive in original-image pixels ('' x4 when none); with
    all_boxes every component as well. Runs in a worker process or in the caller's."""
    maps = (np.memmap(job.maps_file, dtype=MAP_DTYPE, mode="r", shape=job.shape)
            if job.shape[0] else np.zeros(job.shape, MAP_DTYPE))
    result = ChunkResult([], [])
    for image, row, width, height, map_row, class_name, caption, gt in items:
        cam = upsample_map(maps[map_row], width, height)
        found = native_boxes(cam, job.threshold, all_boxes=job.all_boxes)
        largest = native_boxes(cam, job.threshold) if job.all_boxes else found
        box = [int(v) for v in largest[0]] if len(largest) else ["", "", "", ""]
        result.predictions.append([*row[:-len(TAIL)], *box, job.threshold])
        if job.all_boxes:
            result.boxes += [[image, class_name, *map(int, b)] for b in found]
        result.without_box += not len(largest)
        if job.overlays is not None and job.image_root is not None:
            try:  # every box with all_boxes, as localize draws them
                write_overlay(job.overlays, image, Path(job.image_root) / image, cam, found,
                              gt, caption)
            except AcolError:
                raise
            except Exception as exc:  # noqa: BLE001 - an unreadable image is counted
                result.failed.append((image, str(exc) or type(exc).__name__))
    return result


def read_items(run: Path, count: int, gt_boxes: dict[str, np.ndarray] | None = None
               ) -> Iterator[list[Item]]:
    """RUN's predictions rows with their top-1 maps, CHUNK images at a time, streamed;
    `gt_boxes` (image -> ground-truth boxes) rides along for the overlays."""
    with open(run / PREDICTIONS_FILE, newline="") as source, \
            open(run / "maps_index.csv", newline="") as index_file:
        reader = csv.reader(source)
        header = next(reader)
        columns = {name: i for i, name in enumerate(header)}
        top1 = top1_rows(index_file)
        chunk: list[Item] = []
        for row in reader:
            if len(row) != len(header):
                raise AcolError(f"{run / 'predictions.csv'} line {reader.line_num} has "
                                f"{len(row)} fields, its header {len(header)}")
            row = [text(value) for value in row]  # as written, rewritten through csv_writer
            image = row[columns["image"]]
            width, height = image_size(row, columns, image)
            map_row, class_name = _find_top1(top1, image, count)
            caption = overlay_caption(class_name, _score(row, columns.get("score_1")),
                                      row[columns["label"]] if "label" in columns else None)
            chunk.append((image, row, width, height, map_row, class_name, caption,
                          (gt_boxes or {}).get(image)))
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _score(row: list[str], column: int | None) -> float | None:
    try:
        return float(row[column]) if column is not None else None
    except ValueError:
        return None


@dataclass
class Counts:
    images: int = 0
    without_box: int = 0
    overlay_failed: int = 0


def rebox(run: Path, job: BoxJob, workers: int, predictions_out: IO[str],
          boxes_out: IO[str] | None, log: Callable[[str], None],
          gt_boxes: dict[str, np.ndarray] | None = None, images: int | None = None
          ) -> Counts:
    """Stream RUN's predictions.csv into `predictions_out` with every box redone
    (:func:`box_chunk`), and every component into `boxes_out` (image, class_name, x0, y0,
    x1, y1) when given. Overlays (with `gt_boxes` drawn when given) that could not be drawn
    are logged and counted. `images`: how many rows to expect, for the progress bar."""
    counts = Counts()
    writer = csv_writer(predictions_out, lineterminator="\n")
    writer.writerow(csv_header(run / PREDICTIONS_FILE))
    box_writer = csv_writer(boxes_out, lineterminator="\n") if boxes_out else None
    if box_writer:
        box_writer.writerow(["image", "class_name", *BOX_FIELDS])
    items = read_items(run, job.shape[0], gt_boxes)
    with Progress(images, "boxes", "images", log) as progress:
        for result in ordered_map(partial(box_chunk, job), items, workers):
            writer.writerows(result.predictions)
            if box_writer:
                box_writer.writerows(result.boxes)
            counts.images += len(result.predictions)
            counts.without_box += result.without_box
            counts.overlay_failed += len(result.failed)
            for image, reason in result.failed:
                log(f"acol-eval: warning: no overlay for {image}: {reason}")
            progress.update(len(result.predictions))
    return counts


def _find_top1(top1: Iterator[tuple[str, int, str]], image: str, count: int
               ) -> tuple[int, str]:
    """The top-1 map of `image`: the index is in the same image order as predictions.csv,
    so the rows of images before it (none, unless the files disagree) are skipped."""
    for name, map_row, class_name in top1:
        if name == image:
            if not 0 <= map_row < count:
                raise AcolError(f"maps_index.csv: map row {map_row} of {image} is outside "
                                f"the {count} maps of maps.f16")
            return map_row, class_name
    raise AcolError(f"maps_index.csv has no top-1 map for {image} (or is not in "
                    f"predictions.csv's order): the run is damaged; localize it again")


# --------------------------------------------------------------------------- the job


def link_store(run: Path, out: Path) -> dict[str, str]:
    """Symbolic links in `out` to the real files of RUN's map store, relative (see the
    module docstring); returns {name: link text}."""
    links = {}
    for name in STORE_FILES:
        target = os.path.relpath(os.path.realpath(run / name), os.path.realpath(out))
        os.symlink(target, out / name)
        links[name] = target
    return links


def run_gt_boxes(record: dict[str, Any], log: Callable[[str], None]) -> dict[str, np.ndarray]:
    """Ground-truth boxes of RUN's images for the overlays, when localize read them from
    an annotation source (run.json's IMAGES, --split, --image-root); {} otherwise or
    when that source cannot be read any more (said once: the overlays go on without)."""
    from acol_eval.data.imagelist import source_boxes

    arguments = record_arguments(record)
    images, split = arguments.get("images"), arguments.get("split")
    image_root = arguments.get("image_root")
    if not isinstance(images, str) or not images:
        return {}
    try:
        return source_boxes(images, split if isinstance(split, str) else None,
                            image_root if isinstance(image_root, str) else None)
    except (AcolError, OSError, ValueError, KeyError) as exc:
        log(f"acol-eval: warning: overlays without ground truth: {images}: {exc}")
        return {}


def _image_count(record: dict[str, Any]) -> int | None:
    """RUN's image count as run.json records it (the progress bar's total), if it does."""
    counts = record.get("counts")
    images = counts.get("images") if isinstance(counts, dict) else None
    return images if isinstance(images, int) and images >= 0 else None


def _write_outputs(config: BoxesConfig, run: Path, out: Path, maps: np.ndarray,
                   record: dict[str, Any], threshold: CamThreshold, image_root: Path | None,
                   workers: int, log: Callable[[str], None], began: float) -> BoxesResult:
    job = BoxJob(str(run / "maps.f16"), tuple(maps.shape), threshold.value, config.all_boxes,
                 config.overlays, str(image_root) if config.overlays and image_root else None)
    with contextlib.ExitStack() as stack:
        predictions = stack.enter_context(
            atomic_open(out / PREDICTIONS_FILE, "w", newline="", encoding="utf-8"))
        boxes = (stack.enter_context(atomic_open(out / "boxes.csv", "w", newline="",
                                                 encoding="utf-8"))
                 if config.all_boxes else None)
        gt_boxes = run_gt_boxes(record, log) if job.overlays else None
        counts = rebox(run, job, workers, predictions, boxes, log, gt_boxes,
                       _image_count(record))
    if (run / ERRORS_FILE).is_file():
        atomic_write_bytes(out / ERRORS_FILE, (run / ERRORS_FILE).read_bytes())
    links = link_store(run, out)
    seconds = time.perf_counter() - began
    summary = {
        "command": "boxes",
        "source_run": str(run.resolve()),
        "model": record.get("model"), "classes": record.get("classes"),
        "input_size": record.get("input_size"),
        "image_root": known_image_root(config, record, image_root),
        **threshold.record(),
        "arguments": asdict(config),
        "source_arguments": record.get("arguments"),
        "map_store": links,
        "versions": library_versions(),
        "counts": {"images": counts.images, "without_box": counts.without_box,
                   "maps": int(len(maps)), "overlay_failed": counts.overlay_failed,
                   "overlays": counts.images - counts.overlay_failed if job.overlays else 0},
        "seconds": round(seconds, 3),
    }
    atomic_write_text(out / "run.json", json.dumps(summary, indent=1) + "\n")
    return BoxesResult(out, counts.images, counts.without_box, threshold,
                       summary["counts"]["overlays"], counts.overlay_failed, seconds)


def _undo(out: Path, out_existed: bool, overlays: Path | None, overlays_existed: bool) -> None:
    """Remove what a failed run wrote: only folders it created or found empty."""
    for folder, existed in ((out, out_existed), (overlays, overlays_existed)):
        if folder is None or not folder.is_dir():
            continue
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for entry in folder.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def run(config: BoxesConfig, log: Callable[[str], None] | None = None) -> BoxesResult:
    """Redo RUN's boxes into NEW_RUN (config.out) at the resolved CAM threshold.

    Refused with an AcolError, nothing written: a bad threshold or report, RUN not a
    finished localize run or with a truncated map store, NEW_RUN (or --overlays DIR)
    existing and not empty, being RUN or inside it, or written by another command now."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    began = time.perf_counter()
    run_dir, out = Path(config.run), Path(config.out)
    threshold, maps, record, image_root = check_inputs(config, run_dir, out)
    workers = resolve_workers(config.workers)
    overlays = Path(config.overlays) if config.overlays else None
    out_existed = out.exists()
    overlays_existed = overlays is not None and overlays.exists()
    with contextlib.ExitStack() as locks:
        locks.enter_context(FolderLock(out, "boxes"))
        if overlays is not None and not is_inside(overlays, out):
            locks.enter_context(FolderLock(overlays, "boxes"))
        check_new_folder(out, run_dir, "--out")  # again, now that no one else can write it
        log(f"boxing {run_dir} at {threshold.describe()}")
        try:
            return _write_outputs(config, run_dir, out, maps, record, threshold, image_root,
                                  workers, log, began)
        except BaseException:
            _undo(out, out_existed, overlays, overlays_existed)
            raise
