"""`acol-eval localize`: sweep images through the fused-CAM generator into boxes.

    LocalizeConfig (validated) -> run(config, log) -> LocalizeResult

The layers, each its own function: which images (`imagelist`), the model
(`localizeconfig.load_model`), inference (`localizerows.infer`: images -> top-k
classes and low-resolution maps), boxes (`localizerows.image_boxes`, pure: a map ->
boxes in image pixels), rows (`localizerows.prediction_row`, `stored_maps`: CSV rows),
and the files (`shards` while the run streams, `mapstore` for the map store); this
module holds the sweep that runs them. Every input is read and checked
before anything is written, so a run refused at start-up leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from acol_eval.data.datasets import collate_positions
from acol_eval.data.imagelist import (
    ImageList,
    SweepImages,
    fingerprint,
    label_indices,
    list_images,
    missing_images,
    printable,
)
from acol_eval.maps.boxes import native_boxes
from acol_eval.maps.localizeconfig import LoadedModel, LocalizeConfig, epochs_note, load_model
from acol_eval.maps.localizerows import (
    BatchMaps,
    image_boxes,
    infer,
    label_name,
    prediction_header,
    prediction_row,
    stored_maps,
)
from acol_eval.maps.maps import overlay_caption
from acol_eval.maps.overlays import write_overlay
from acol_eval.maps.runfolder import LocalizeRun
from acol_eval.maps.shards import (
    BOX_FIELDS,
    PARTIAL,
    RunRecord,
    ShardWriter,
    merge_csv,
    merge_csv_if_any,
    merge_maps,
    merged_rows,
    prepare_run_folder,
    read_map_shape,
    record_map_shape,
)
from acol_eval.maps.thresholds import CamThreshold, resolve_cam_threshold
from acol_eval.models.methods import MapMethod, cam_note, method_record, resolve_target_layer
from acol_eval.util import safeio
from acol_eval.util.errors import AcolError
from acol_eval.util.progress import Progress, counted
from acol_eval.util.runtime import Distributed, library_versions
from acol_eval.util.safeio import LOCK_NAME, FolderLock, atomic_write_text, is_inside


@dataclass(frozen=True)
class LocalizeResult:
    images: int
    failed: int
    maps: int
    seconds: float
    out: Path
    resumed: bool = False

    @property
    def run(self) -> LocalizeRun:
        """The run folder written, as every reader opens it."""
        return LocalizeRun(Path(self.out))


def check_overlays(overlays: str, out: Path, listing: ImageList, resuming: bool) -> None:
    """Refuse an overlay folder where an overlay could replace an input: no listed image
    may lie inside it, and a new run needs it new or empty (only a resumed run finds its
    own earlier overlays there). Names inside it come from `overlays.overlay_path`, so
    they stay inside and never collide (x.jpg -> x.jpg, x.png -> x.png.jpg)."""
    folder = Path(overlays)
    if folder.exists() and not folder.is_dir():
        raise AcolError(f"--overlays {overlays} is not a folder")
    base = os.path.realpath(folder)
    root = os.path.realpath(listing.root)
    if base == os.path.realpath(out):
        raise AcolError(f"--overlays {overlays} is the run folder; choose a folder of its own")
    for name in listing.images:
        if Path(name).is_absolute() or ".." in Path(name).parts or is_inside(root, base):
            if is_inside(os.path.join(root, name), base):
                raise AcolError(f"--overlays {overlays} holds the image {printable(name)}; "
                                "choose a folder outside the images")
    safeio.refuse_existing(folder, None, resuming, lambda found: (
        f"--overlays {overlays} already holds files; choose a new or empty folder (overlays "
        f"never replace existing files)"))


# --------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class Sweep:
    """Everything one rank's sweep reads: validated inputs and where to write."""

    config: LocalizeConfig
    loaded: LoadedModel
    listing: ImageList
    labels: list[int]
    top_k: int
    overlays: Path | None
    partial: Path
    threshold: CamThreshold
    target_layer: str | None = None  # resolved against the model (post-hoc methods)


def write_batch(sweep: Sweep, writer: ShardWriter, maps: BatchMaps, ids: list[int],
                sizes: list[tuple[int, int]]) -> None:
    """One decoded batch's rows, maps, boxes and overlays into this rank's files."""
    config, classes = sweep.config, sweep.loaded.classes
    predictions, box_rows = [], []
    for b, g in enumerate(ids):
        image, label = sweep.listing.images[g], sweep.labels[g]
        entries = stored_maps(maps.predicted[b], label, classes)
        writer.maps(g, image, [entry[1:] for entry in entries],
                    [maps.fused[b, entry[0]] for entry in entries])
        cam, boxes = image_boxes(maps.fused[b, 0], *sizes[b], sweep.threshold.value,
                                 config.all_boxes)
        # the row's box is the largest component's, with or without --all-boxes (whose
        # list is in raster order, not largest first)
        largest = native_boxes(cam, sweep.threshold.value) if config.all_boxes else boxes
        predictions.append(prediction_row(g, image, sizes[b], label, classes,
                                          maps.predicted[b], maps.scores[b], largest,
                                          sweep.threshold.value))
        if config.all_boxes:
            top1 = classes[maps.predicted[b][0]]
            box_rows += [[g, image, top1, *map(int, row)] for row in boxes]
        if sweep.overlays is not None:
            caption = overlay_caption(classes[maps.predicted[b][0]], float(maps.scores[b][0]),
                                      label_name(sweep.listing.labels[g], label, classes))
            write_overlay(sweep.overlays, image, sweep.listing.root / image, cam, boxes,
                          sweep.listing.boxes.get(image), caption)
    writer.rows("predictions.csv", predictions)
    writer.rows("boxes.csv", box_rows)
    record_map_shape(sweep.partial, maps.fused.shape[-2:])


def sweep_shard(sweep: Sweep, shard: list[int], writer: ShardWriter,
                distributed: Distributed) -> None:
    """Decode, infer and write this rank's images from where its last run stopped,
    committing progress after every batch."""
    device = distributed.device
    model = sweep.loaded.model.to(device).eval()
    model.to(memory_format=torch.channels_last)  # faster on CPU as on CUDA (see infer)
    todo = shard[writer.done:]
    loaded = sweep.loaded
    dataset = SweepImages(sweep.listing.root, [sweep.listing.images[g] for g in todo],
                          loaded.input_size, loaded.mean, loaded.std)
    loader = DataLoader(dataset, batch_size=sweep.config.batch_size, shuffle=False,
                        num_workers=sweep.config.workers, collate_fn=collate_positions,
                        pin_memory=device.type == "cuda")
    # rank 0 speaks for all: the ranks' shards are the same size to within an image; a
    # heartbeat, since one batch of a slow method (Score-CAM on a CPU) can take minutes
    progress = (Progress(len(shard) * distributed.world, "localize", "images",
                         initial=writer.done * distributed.world, heartbeat=True)
                if distributed.is_main else contextlib.nullcontext())
    done = writer.done
    with torch.inference_mode(), progress:
        for positions, images, sizes, failed in loader:
            writer.rows("errors.csv", [[todo[p], printable(sweep.listing.images[todo[p]]),
                                        reason] for p, reason in failed])
            if images is not None:
                ids = [todo[p] for p in positions]
                maps = infer(model, images.to(device, non_blocking=True),
                             [sweep.labels[g] for g in ids], sweep.top_k,
                             sweep.config.method, sweep.target_layer)
                write_batch(sweep, writer, maps, ids, sizes)
            done += len(positions) + len(failed)
            writer.commit(done)
            if distributed.is_main:
                progress.update((len(positions) + len(failed)) * distributed.world)


def merge_run(sweep: Sweep, out: Path, world: int, unknown: int, seconds: float,
              resumed: bool) -> LocalizeResult:
    """Rank 0: the ranks' files merged into OUT, run.json written, .partial removed."""
    import shutil

    folders = [sweep.partial / f"rank{r}" for r in range(world)]
    images = merge_csv(folders, "predictions.csv", out / "predictions.csv",
                       prediction_header(sweep.top_k))
    failed = merge_csv_if_any(folders, "errors.csv", out / "errors.csv", ["image", "reason"])
    if sweep.config.all_boxes:
        merge_csv(folders, "boxes.csv", out / "boxes.csv", ["image", "class_name", *BOX_FIELDS])
    count = merge_maps(folders, out, read_map_shape(sweep.partial), sweep.loaded.classes,
                       method_record(sweep.config.method, sweep.target_layer))
    run = {
        "model": sweep.loaded.description,
        "classes": len(sweep.loaded.classes),
        "input_size": sweep.loaded.input_size,
        "arguments": asdict(sweep.config),
        **sweep.threshold.record(),
        "image_root": str(Path(sweep.listing.root).resolve()),
        "versions": library_versions(),
        "counts": {"images": images, "failed": failed, "maps": count,
                   "unknown_labels": unknown},
        "processes": world,
        "seconds": round(seconds, 3),
        "resumed": resumed,
    }
    atomic_write_text(out / "run.json", json.dumps(run, indent=1))
    shutil.rmtree(sweep.partial)
    return LocalizeResult(images, failed, count, seconds, out, resumed)


class NothingLocalised(AcolError):
    """Every image of the run failed: the run ran (exit 1, inputs failed) but kept nothing,
    so that the same --out takes the corrected command without --overwrite."""

    exit_code = 1


def nothing_localised(folders: list[Path]) -> str | None:
    """Why no image of the run was localised, when none was and some failed; else None."""
    if any((folder / "predictions.csv").stat().st_size for folder in folders):
        return None
    failures = [row for _, row in merged_rows(folders, "errors.csv")]
    if not failures:
        return None
    _, image, reason = failures[0]
    return (f"no image could be read or decoded ({counted(len(failures), 'failure')}; "
            f"first: {image}: {reason})")


def discard_run(out: Path, out_existed: bool, overlays: Path | None,
                overlays_existed: bool) -> None:
    """Remove what a run that localised nothing wrote: its unfinished state, and OUT and
    the overlay folder where this run created them (they hold nothing else then)."""
    import shutil

    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    for folder, existed in ((out, out_existed), (overlays, overlays_existed)):
        if folder is not None and not existed and all(
                p.name == LOCK_NAME for p in folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)


def _record(config: LocalizeConfig, loaded: LoadedModel, listing: ImageList,
            threshold: CamThreshold) -> RunRecord:
    arguments = asdict(config)
    # the same arguments can resolve to another threshold (a rewritten report): the
    # threshold itself must match for a resume
    arguments["resolved_cam_threshold"] = threshold.value
    for key in ("workers", "device", "out"):
        arguments.pop(key)  # how and where a run goes may change between its parts
    return RunRecord(arguments, loaded.description["sha256"], fingerprint(listing))


def _list(config: LocalizeConfig, log: Callable[[str], None]) -> ImageList:
    """The images to sweep; for an annotation source, every image is looked up first so
    that images not where the source says (an annotation folder without its images) are
    one line naming --image-root, before anything is written."""
    own = tuple(Path(p) for p in (config.out, config.overlays) if p)
    listing = list_images(config.images, config.split, config.image_root, config.labels, own)
    if listing.source is None:
        return listing
    missing = missing_images(listing)
    if not missing:
        return listing
    verb = "is" if len(missing) == 1 else "are"
    where = (f"{len(missing)} of {counted(len(listing.images), 'image')} of {listing.source} "
             f"{verb} not under {printable(str(listing.root))} (first: {printable(missing[0])})")
    hint = ("check --image-root" if config.image_root is not None
            else "pass --image-root FOLDER (where the images are)")
    if len(missing) == len(listing.images):
        raise AcolError(f"{where}: {hint}")
    log(f"acol-eval: warning: {where}; they go to errors.csv ({hint} if they are elsewhere)")
    return listing


def run(config: LocalizeConfig, log: Callable[[str], None],
        listing: ImageList | None = None) -> LocalizeResult:
    """The sweep: inputs checked, OUT locked and prepared, shards swept, rank 0 merges.
    `listing`: the images, when the caller holds them in memory (config.images then only
    names them in run.json)."""
    began = time.perf_counter()
    out = Path(config.out)
    distributed = Distributed(config.device)
    try:
        loaded = load_model(config)
        target_layer = (None if config.method is MapMethod.MODEL
                        else resolve_target_layer(loaded.model, config.target_layer))
        threshold = resolve_cam_threshold(config.cam_threshold, config.threshold_from,
                                          loaded.cam_threshold, loaded.cam_threshold_source)
        if listing is None:
            listing = _list(config, log if distributed.is_main else (lambda message: None))
        labels, unknown = label_indices(listing.labels, loaded.classes)
        with contextlib.ExitStack() as locks:
            resumed = False
            out_existed = out.exists()
            overlays_existed = config.overlays is not None and Path(config.overlays).exists()
            if distributed.is_main:
                if config.overlays is not None:  # read-only, so before OUT is created
                    check_overlays(config.overlays, out, listing, (out / PARTIAL).exists())
                locks.enter_context(FolderLock(out, "localize"))
                if config.overlays is not None:
                    locks.enter_context(FolderLock(config.overlays, "localize"))
                resumed = prepare_run_folder(out, _record(config, loaded, listing, threshold))
            if distributed.active:
                dist.barrier()
            overlays = Path(config.overlays) if config.overlays is not None else None
            sweep = Sweep(config, loaded, listing, labels, min(config.top_k, len(loaded.classes)),
                          overlays, out / PARTIAL, threshold, target_layer)
            writer = ShardWriter(sweep.partial / f"rank{distributed.rank}")
            if distributed.is_main:
                classes = counted(len(loaded.classes), "class", "classes")
                log(f"{'resuming' if resumed else 'localising'} "
                    f"{counted(len(listing.images), 'image')} with "
                    f"{loaded.description['arch']} ({classes}) on {distributed.device}, "
                    f"{counted(distributed.world, 'process', 'processes')}; "
                    f"{threshold.describe()}")
                if loaded.description.get("training", "recipe").split()[0] == "method":
                    log(f"the checkpoint was trained with {loaded.description['training']}")
                for note in (epochs_note(loaded.description),
                             cam_note(loaded.model, config.method, target_layer)):
                    if note:
                        log(note)
            sweep_shard(sweep, list(range(distributed.rank, len(listing.images),
                                          distributed.world)), writer, distributed)
            writer.close()
            if distributed.active:
                dist.barrier()
            result = LocalizeResult(0, 0, 0, 0.0, out, resumed)
            failed = None
            if distributed.is_main:
                failed = nothing_localised([sweep.partial / f"rank{r}"
                                            for r in range(distributed.world)])
                if failed:
                    discard_run(out, out_existed, overlays, overlays_existed)
                else:
                    result = merge_run(sweep, out, distributed.world, unknown,
                                       time.perf_counter() - began, resumed)
            if distributed.active:
                dist.barrier()
            if failed:
                raise NothingLocalised(f"{failed}; nothing was kept in {out}: correct the "
                                       "input and rerun the same command")
            return result
    finally:
        distributed.close()


def localize(config: LocalizeConfig, log: Callable[[str], None] | None = None,
             listing: ImageList | None = None) -> LocalizeResult:
    """`run` logging to stderr; failed > 0 in the result means some files were skipped."""
    return run(config, log or (lambda m: print(m, file=sys.stderr, flush=True)), listing)
