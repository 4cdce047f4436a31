"""`acol-eval localize`: sweep images through the fused-CAM generator into boxes.

    LocalizeConfig (validated) -> run(config, log) -> LocalizeResult

The layers, each its own function: which images (`imagelist`), the model
(`load_model`), inference (`infer`: images -> top-k classes and low-resolution
maps), boxes (`image_boxes`, pure: a map -> boxes in image pixels), rows
(`prediction_row`, `stored_maps`: CSV rows), and the files (`shards` while the
run streams, `mapstore` for the map store). Every input is read and checked
before anything is written, so a run refused at start-up leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from .backbones import FEATURE_STRIDES, imagenet_categories
from .boxes import native_boxes, upsample_map
from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import IMAGENET_MEAN, IMAGENET_STD, collate_positions
from .errors import AcolError
from .imagelist import (
    ImageList,
    SweepImages,
    fingerprint,
    label_indices,
    list_images,
    missing_images,
    printable,
)
from .maps import overlay_caption
from .methods import MapMethod, cam_note, method_maps, method_record, resolve_target_layer
from .model import ACoL, plain_cam_model
from .overlays import write_overlay
from .progress import Progress, counted
from .runfolder import LocalizeRun
from .runtime import DEVICE_PATTERN, Distributed, library_versions, resolve_workers
from .safeio import LOCK_NAME, FolderLock, atomic_write_text, is_inside
from .shards import (
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
from .thresholds import CamThreshold, check_threshold, resolve_cam_threshold
from .weights import find_imagenet_file, resolve_weights

MAX_BATCH = 4096  # a larger batch only multiplies memory: the images are held at once
MAX_INPUT_SIZE = 4096


@dataclass(frozen=True)
class LocalizeConfig:
    """Options of `acol-eval localize`, one field per flag; checked on construction."""

    images: str
    out: str
    checkpoint: str | None = None
    arch: str | None = None
    weights: str = "imagenet"
    feature_stride: int = 32
    labels: str | None = None
    split: str | None = None
    top_k: int = 5
    cam_threshold: float | None = None  # None: --threshold-from, the checkpoint's, else 0.2
    threshold_from: str | None = None  # a native score report: its best_gt_known_loc threshold
    batch_size: int = 32
    workers: int | None = None  # None: runtime.default_workers(), resolved here
    device: str = "auto"
    overlays: str | None = None
    all_boxes: bool = False
    image_root: str | None = None  # where an annotation source's images are (wsol:)
    seed: int = 0  # the random model of --weights none
    method: MapMethod = MapMethod.MODEL  # the model's fused maps, or a post-hoc CAM method
    target_layer: str | None = None  # post-hoc methods: module path (default: the backbone)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", MapMethod.parse(self.method))
        if self.method is MapMethod.MODEL and self.target_layer is not None:
            raise AcolError("--target-layer applies to post-hoc methods, not --method model")
        if bool(self.checkpoint) == bool(self.arch):
            raise AcolError("give either --checkpoint CKPT or --arch NAME (with --weights)")
        if not self.images or not self.out:
            raise AcolError("IMAGES and --out must not be empty")
        if self.cam_threshold is not None:
            check_threshold(self.cam_threshold, "--cam-threshold")
        if self.cam_threshold is not None and self.threshold_from is not None:
            raise AcolError("give --cam-threshold T or --threshold-from REPORT, not both")
        if self.top_k < 1 or self.batch_size < 1:
            raise AcolError("--top-k and --batch-size must be at least 1, --workers at least 0")
        if self.batch_size > MAX_BATCH:
            raise AcolError(f"--batch-size {self.batch_size} is over {MAX_BATCH}")
        if self.feature_stride not in FEATURE_STRIDES:
            raise AcolError(f"--feature-stride {self.feature_stride} must be 32, 16 or 8")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise AcolError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N")
        if not 0 <= self.seed < 2**63:
            raise AcolError(f"--seed {self.seed} must be between 0 and 2**63 - 1")
        object.__setattr__(self, "workers", resolve_workers(self.workers))


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


@dataclass(frozen=True)
class LoadedModel:
    model: ACoL
    classes: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    description: dict[str, Any]
    cam_threshold: float | None = None  # calibrated by train (newer checkpoints)
    cam_threshold_source: str | None = None


# --------------------------------------------------------------------------- the model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_preprocessing(path: str, payload: dict[str, Any]) -> None:
    """A checkpoint's input size, mean and std must make sense before any image is read."""
    size = payload["input_size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_INPUT_SIZE:
        raise AcolError(f"{path}: input_size {size!r} must be a whole number from 1 to "
                        f"{MAX_INPUT_SIZE}")
    for key in ("mean", "std"):
        values = payload[key]
        if (not isinstance(values, (list, tuple)) or len(values) != 3
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
                or (key == "std" and min(values) <= 0)):
            raise AcolError(f"{path}: {key} {values!r} must be three finite numbers"
                            + (" above 0" if key == "std" else ""))
    classes = payload["classes"]
    if not isinstance(classes, (list, tuple)) or not classes:
        raise AcolError(f"{path}: classes must be a non-empty list of names")


def _checkpoint_model(path: str) -> LoadedModel:
    payload = load_checkpoint(path)
    _check_preprocessing(path, payload)
    try:
        model = model_from_checkpoint(payload)
    except AcolError:
        raise
    except Exception as exc:  # noqa: BLE001 - an untrusted file's fields, one line
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise AcolError(f"{path} is not a usable acol-eval checkpoint: {reason}") from None
    return LoadedModel(
        model, [str(c) for c in payload["classes"]], int(payload["input_size"]),
        [float(v) for v in payload["mean"]], [float(v) for v in payload["std"]],
        {"checkpoint": str(Path(path).resolve()), "arch": payload["arch"],
         "recipe": payload["recipe"], "deltas": list(payload["deltas"]),
         "head": payload["head"], "feature_stride": payload["feature_stride"],
         "sha256": _sha256(Path(path))},
        payload.get("cam_threshold"), payload.get("cam_threshold_source"),
    )


def _torchvision_model(config: LocalizeConfig) -> LoadedModel:
    state = resolve_weights(config.weights, config.arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # a random model (--weights none) repeats run to run
        model = plain_cam_model(config.arch, state, config.feature_stride)
    count = model.num_classes
    if config.weights == "imagenet" and count == 1000:
        classes = imagenet_categories(config.arch)
    else:
        classes = [f"class_{i}" for i in range(count)]
    source = (find_imagenet_file(config.arch) if config.weights == "imagenet"
              else Path(config.weights) if config.weights != "none" else None)
    description = {"arch": config.arch, "weights": config.weights, "recipe": "p",
                   "feature_stride": config.feature_stride,
                   "sha256": _sha256(source) if source and source.is_file() else None}
    if config.weights == "none":
        description["seed"] = config.seed
    return LoadedModel(model, classes, 224, list(IMAGENET_MEAN), list(IMAGENET_STD),
                       description)


def load_model(config: LocalizeConfig) -> LoadedModel:
    """The model of `--checkpoint`, or a plain torchvision classifier of `--arch`."""
    if config.checkpoint:
        return _checkpoint_model(config.checkpoint)
    return _torchvision_model(config)


# --------------------------------------------------------------------------- inference


@dataclass(frozen=True)
class BatchMaps:
    """One batch through the model: `scores` (B, k) softmax and `predicted` (B, k) class
    ids of the top k, `fused` (B, k + 1, h, w) float16 low-resolution maps of those
    classes and then of the label's class (class 0 where the label is unknown)."""

    scores: np.ndarray
    predicted: np.ndarray
    fused: np.ndarray


def infer(model: ACoL, images: torch.Tensor, label_ids: list[int], top_k: int,
          method: MapMethod = MapMethod.MODEL, target_layer: str | None = None) -> BatchMaps:
    """Top-k classes and their maps (bfloat16 autocast for the backbone on CUDA): the
    model's fused maps, which reuse the features already computed, or a post-hoc
    method's at `target_layer` (one more forward, one backward per class rank)."""
    use_cuda = images.device.type == "cuda"
    # channels_last on every device: the model is in it (sweep_shard), and oneDNN's CPU
    # convolutions run 1.4-1.5x faster in it too (mobilenet_v2, resnet50 forward)
    images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda):
        features = model.backbone(images)
    features = features.float()
    probabilities = model.logits(features).softmax(1)
    scores, predicted = probabilities.topk(top_k, 1)
    labels = torch.tensor(label_ids, device=predicted.device).clamp(min=0)
    wanted = torch.cat([predicted, labels[:, None]], 1)
    if method is MapMethod.MODEL:
        maps = model.fused_maps(features, wanted)
    else:
        maps = method_maps(model, images, wanted, method, target_layer)
    fused = maps.to(torch.float16).cpu().numpy()
    return BatchMaps(scores.cpu().numpy(), predicted.cpu().numpy(), fused)


# --------------------------------------------------------------------------- boxes, rows


def image_boxes(top1_map: np.ndarray, width: int, height: int, threshold: float,
                all_boxes: bool) -> tuple[np.ndarray, np.ndarray]:
    """The map upsampled to the image (width x height) and its boxes at `threshold`:
    (n, 4) x0, y0, x1, y1 in original-image pixels, x1/y1 exclusive, largest component
    first (only it unless `all_boxes`). The same upsampling as `score --protocol native`,
    so the two agree."""
    cam = upsample_map(top1_map, width, height)
    return cam, native_boxes(cam, threshold, all_boxes=all_boxes)


def stored_maps(predicted: np.ndarray, label: int, classes: list[str]
                ) -> list[tuple[int, int, str, int, int]]:
    """Which maps of one image the store keeps, as (slot in BatchMaps.fused, class_id,
    class_name, pred_rank, is_label): the top k, then the label's when not among them
    (pred_rank 0)."""
    entries = [(rank - 1, int(c), classes[c], rank, int(c == label))
               for rank, c in enumerate(predicted, start=1)]
    if label >= 0 and label not in predicted:
        entries.append((len(predicted), label, classes[label], 0, 1))
    return entries


def prediction_row(global_id: int, image: str, size: tuple[int, int], label: int,
                   classes: list[str], predicted: np.ndarray, scores: np.ndarray,
                   boxes: np.ndarray, threshold: float) -> list[Any]:
    """predictions.csv's row (after the merge key): the first box, or empty fields."""
    box = [int(v) for v in boxes[0]] if len(boxes) else ["", "", "", ""]
    return [global_id, image, size[0], size[1], "" if label < 0 else classes[label],
            *(classes[c] for c in predicted), *(f"{s:.6f}" for s in scores), *box, threshold]


def prediction_header(top_k: int) -> list[str]:
    return ["image", "width", "height", "label", *(f"pred_{i}" for i in range(1, top_k + 1)),
            *(f"score_{i}" for i in range(1, top_k + 1)), *BOX_FIELDS, "cam_threshold"]


# --------------------------------------------------------------------------- overlays


def label_name(raw: str | None, label: int, classes: list[str]) -> str | None:
    """An image's true label for its overlay: the model's class name where the label is
    one of its classes (wsolevaluation's class ids become names), else the label as the
    annotations give it; None where there is none."""
    if label >= 0:
        return classes[label]
    if raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw) == "":
        return None
    return str(raw)


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
    if not resuming and folder.is_dir() and any(p.name != LOCK_NAME for p in folder.iterdir()):
        raise AcolError(f"--overlays {overlays} already holds files; choose a new or empty "
                        "folder (overlays never replace existing files)")


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
                note = cam_note(loaded.model, config.method, target_layer)
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
