"""`acol-eval localize`: sweep images through the fused-CAM generator into boxes (SPEC 4).

Streaming and resumable: each process (rank) writes its shard's rows and maps
into RUN/.partial/rank<r>/ after every batch and then records how far it got
(progress.json, the byte length of every file). A killed run rerun with the
same command truncates the files to the last record and goes on; at the end
rank 0 merges the shards in image order into the final files, so a resumed or
sharded run ends with the same files as one uninterrupted process.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from .backbones import imagenet_categories
from .boxes import native_boxes, upsample_map
from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImagesForModel,
    collate_positions,
    decode_image,
)
from .errors import AcolError
from .maps import overlay
from .mapstore import INDEX_COLUMNS, MAP_DTYPE, maps_meta
from .model import ACoL, plain_cam_model
from .readers import READERS, detect_format, is_image_file, read_source
from .runtime import Distributed, default_workers, library_versions
from .weights import find_imagenet_file, resolve_weights

PARTIAL = ".partial"
BOX_FIELDS = ["x0", "y0", "x1", "y1"]


@dataclass
class LocalizeConfig:
    images: str
    out: str
    checkpoint: str | None = None
    arch: str | None = None
    weights: str = "imagenet"
    feature_stride: int = 32
    labels: str | None = None
    split: str | None = None
    top_k: int = 5
    cam_threshold: float = 0.2
    batch_size: int = 32
    workers: int | None = None  # None: data.default_workers()
    device: str = "auto"
    overlays: str | None = None
    all_boxes: bool = False
    image_root: str | None = None  # where an annotation source's images are (wsol:)


@dataclass
class LocalizeSummary:
    images: int
    failed: int
    maps: int
    seconds: float
    out: Path
    resumed: bool = False


@dataclass
class LoadedModel:
    model: ACoL
    classes: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    description: dict[str, Any]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(config: LocalizeConfig) -> LoadedModel:
    """The model of `--checkpoint`, or a plain torchvision classifier of `--arch`."""
    if bool(config.checkpoint) == bool(config.arch):
        raise AcolError("give either --checkpoint CKPT or --arch NAME (with --weights)")
    if config.checkpoint:
        payload = load_checkpoint(config.checkpoint)
        model = model_from_checkpoint(payload)
        return LoadedModel(
            model, list(payload["classes"]), int(payload["input_size"]),
            list(payload["mean"]), list(payload["std"]),
            {"checkpoint": str(Path(config.checkpoint).resolve()), "arch": payload["arch"],
             "recipe": payload["recipe"], "deltas": list(payload["deltas"]),
             "head": payload["head"], "feature_stride": payload["feature_stride"],
             "sha256": _sha256(Path(config.checkpoint))},
        )
    state = resolve_weights(config.weights, config.arch)
    model = plain_cam_model(config.arch, state, config.feature_stride)
    count = model.num_classes
    if config.weights == "imagenet" and count == 1000:
        classes = imagenet_categories(config.arch)
    else:
        classes = [f"class_{i}" for i in range(count)]
    source = (find_imagenet_file(config.arch) if config.weights == "imagenet"
              else Path(config.weights) if config.weights != "none" else None)
    return LoadedModel(
        model, classes, 224, list(IMAGENET_MEAN), list(IMAGENET_STD),
        {"arch": config.arch, "weights": config.weights, "recipe": "p",
         "feature_stride": config.feature_stride,
         "sha256": _sha256(source) if source and source.is_file() else None},
    )


@dataclass
class ImageList:
    root: Path
    images: list[str]  # relative paths, sorted, '/' separators
    labels: list[str | None]
    unknown_labels: int = 0


def _scan_folder(root: Path) -> list[str]:
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and is_image_file(path) and PARTIAL not in path.parts
    )


def _read_list_file(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return sorted({line for line in lines if line and not line.startswith("#")})


def _from_annotations(source: str, split: str | None, image_root: str | None) -> ImageList:
    annotations = read_source(source)
    if image_root:
        annotations.root = Path(image_root)
    if split is not None:
        if split not in annotations.splits:
            raise AcolError(
                f"{source} has no split {split!r} (found: {', '.join(annotations.splits)})"
            )
        annotations = annotations.split(split)
    table = annotations.images.drop_duplicates("image").sort_values("image")
    return ImageList(annotations.root, table["image"].tolist(), table["label"].tolist())


def list_images(config: LocalizeConfig) -> ImageList:
    """Which images to sweep, relative to which root, and their labels when known."""
    source = config.images
    fmt, sep, _ = source.partition(":")
    path = Path(source)
    if sep and fmt in READERS and not path.exists():
        return _from_annotations(source, config.split, config.image_root)
    if not path.exists():
        raise AcolError(f"{source} does not exist")
    if path.is_dir() and detect_format(path) != "folder":
        return _from_annotations(source, config.split, config.image_root)
    if path.is_file():
        names = _read_list_file(path)
        root = path.parent
    else:
        names = _scan_folder(path)
        root = path
    if not names:
        raise AcolError(f"no images found in {source} (jpg, jpeg, png, bmp, webp, tif)")
    labels: list[str | None] = [None] * len(names)
    if config.labels:
        table = read_source(config.labels).images
        by_path = dict(zip(table["image"], table["label"]))
        by_name = {Path(k).name: v for k, v in by_path.items()}
        if len(by_name) != len(by_path):
            by_name = {}  # basenames are ambiguous: match full relative paths only
        labels = [by_path.get(n, by_name.get(Path(n).name)) for n in names]
    return ImageList(root, names, labels)


def label_indices(labels: list[str | None], classes: list[str]) -> tuple[list[int], int]:
    """Class index of every label (-1 when absent or unknown) and the unknown count."""
    index = {name: i for i, name in enumerate(classes)}
    out, unknown = [], 0
    for label in labels:
        if label is None or label == "" or (isinstance(label, float) and np.isnan(label)):
            out.append(-1)
            continue
        text = str(label)
        if text in index:
            out.append(index[text])
        elif text.isdigit() and int(text) < len(classes):
            out.append(int(text))  # integer class ids (wsolevaluation's class_labels.txt)
        else:
            out.append(-1)
            unknown += 1
    return out, unknown


# --------------------------------------------------------------------------- shard files


class ShardWriter:
    """Append-only files of one rank, with a progress record that makes them resumable."""

    FILES = ("predictions.csv", "maps_index.csv", "maps.f16", "errors.csv", "boxes.csv")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        progress = self._read_progress()
        self.done = progress["done"]
        self.map_rows = progress["map_rows"]
        for name in self.FILES:
            path = folder / name
            path.touch()
            os.truncate(path, progress["sizes"].get(name, 0))  # drop what came after it
        self.handles = {name: open(folder / name, "ab") for name in self.FILES}

    def _read_progress(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / "progress.json").read_text())
        except (OSError, ValueError):
            return {"done": 0, "map_rows": 0, "sizes": {}}

    def rows(self, name: str, rows: list[list[Any]]) -> None:
        if rows:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(rows)
            self.handles[name].write(buffer.getvalue().encode())

    def maps(self, maps: np.ndarray) -> None:
        self.handles["maps.f16"].write(np.ascontiguousarray(maps, MAP_DTYPE).tobytes())
        self.map_rows += len(maps)

    def commit(self, done: int) -> None:
        """Record that the first `done` images of the shard are fully written."""
        for handle in self.handles.values():
            handle.flush()
        self.done = done
        sizes = {name: (self.folder / name).stat().st_size for name in self.FILES}
        record = {"done": done, "map_rows": self.map_rows, "sizes": sizes}
        tmp = self.folder / "progress.json.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.folder / "progress.json")

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


# --------------------------------------------------------------------------- the sweep


class Localizer:
    def __init__(self, config: LocalizeConfig, log: Callable[[str], None]) -> None:
        if not 0.0 <= config.cam_threshold <= 1.0:
            raise AcolError(f"--cam-threshold {config.cam_threshold} is outside [0, 1]")
        if config.workers is None:
            config.workers = default_workers()
        if config.top_k < 1 or config.batch_size < 1 or config.workers < 0:
            raise AcolError("--top-k and --batch-size must be at least 1, --workers at least 0")
        self.config = config
        self.log = log
        self.out = Path(config.out)
        self.partial = self.out / PARTIAL

    def _arguments(self) -> dict[str, Any]:
        """What must match for a rerun to continue a partial run."""
        args = asdict(self.config)
        for key in ("workers", "device", "out"):
            args.pop(key)
        return args

    def _prepare_folder(self) -> bool:
        """Check a previous run in OUT; returns True when it is resumed."""
        args_file = self.partial / "arguments.json"
        if (self.out / "run.json").exists() and not self.partial.exists():
            raise AcolError(f"{self.out} already holds a finished run; choose another --out")
        if self.partial.exists():
            try:
                previous = json.loads(args_file.read_text())
            except (OSError, ValueError):
                previous = None
            if previous != json.loads(json.dumps(self._arguments())):
                raise AcolError(
                    f"{self.out} holds an unfinished run with other arguments; rerun that "
                    "command to finish it, or choose another --out"
                )
            return True
        self.partial.mkdir(parents=True, exist_ok=True)
        args_file.write_text(json.dumps(self._arguments(), indent=1))
        return False

    def run(self) -> LocalizeSummary:
        began = time.perf_counter()
        config = self.config
        distributed = Distributed(config.device)
        try:
            # rank 0 alone checks and prepares OUT; the others wait for it
            resumed = self._prepare_folder() if distributed.is_main else False
            if distributed.active:
                dist.barrier()
            loaded = load_model(config)
            listing = list_images(config)
            labels, unknown = label_indices(listing.labels, loaded.classes)
            listing.unknown_labels = unknown
            shard = list(range(distributed.rank, len(listing.images), distributed.world))
            writer = ShardWriter(self.partial / f"rank{distributed.rank}")
            if distributed.is_main:
                state = "resuming" if resumed else "localising"
                self.log(
                    f"{state} {len(listing.images)} images with {loaded.description['arch']} "
                    f"({len(loaded.classes)} classes) on {distributed.device}, "
                    f"{distributed.world} process(es)"
                )
            self._sweep(loaded, listing, labels, shard, writer, distributed)
            writer.close()
            if distributed.active:
                dist.barrier()
            summary = None
            if distributed.is_main:
                summary = self._merge(loaded, listing, distributed.world,
                                      time.perf_counter() - began, resumed)
            if distributed.active:
                dist.barrier()
            return summary or LocalizeSummary(0, 0, 0, 0.0, self.out, resumed)
        finally:
            distributed.close()

    def _sweep(self, loaded: LoadedModel, listing: ImageList, labels: list[int],
               shard: list[int], writer: ShardWriter, distributed: Distributed) -> None:
        config = self.config
        device = distributed.device
        model = loaded.model.to(device).eval()
        use_cuda = device.type == "cuda"
        if use_cuda:
            model.to(memory_format=torch.channels_last)
        todo = shard[writer.done:]
        paths = [listing.root / listing.images[g] for g in todo]
        dataset = ImagesForModel(paths, loaded.input_size, loaded.mean, loaded.std)
        loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False,
                            num_workers=config.workers, collate_fn=collate_positions,
                            pin_memory=use_cuda)
        top_k = min(config.top_k, len(loaded.classes))
        show = distributed.is_main and sys.stderr.isatty()
        bar = tqdm(total=len(shard) * distributed.world, initial=writer.done * distributed.world,
                   unit="img", desc="localize", disable=not show, smoothing=0.1)
        done = writer.done
        overlay_root = Path(config.overlays) if config.overlays else None
        with torch.inference_mode():
            for positions, images, sizes, failed in loader:
                rows_failed = [[todo[p], listing.images[todo[p]], reason] for p, reason in failed]
                writer.rows("errors.csv", rows_failed)
                if images is not None:
                    global_ids = [todo[p] for p in positions]
                    self._batch(model, images.to(device, non_blocking=True), global_ids, sizes,
                                listing, labels, loaded.classes, top_k, writer, overlay_root,
                                use_cuda)
                batch_count = len(positions) + len(failed)
                done += batch_count
                writer.commit(done)
                bar.update(batch_count * distributed.world)
        bar.close()

    def _batch(self, model: ACoL, images: torch.Tensor, global_ids: list[int],
               sizes: list[tuple[int, int]], listing: ImageList, labels: list[int],
               classes: list[str], top_k: int, writer: ShardWriter, overlay_root: Path | None,
               use_cuda: bool) -> None:
        config = self.config
        if use_cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda):
            features = model.backbone(images)
        features = features.float()
        probabilities = model.logits(features).softmax(1)
        scores, predicted = probabilities.topk(top_k, 1)
        label_ids = torch.tensor([labels[g] for g in global_ids], device=predicted.device)
        wanted = torch.cat([predicted, label_ids.clamp(min=0)[:, None]], 1)
        fused = model.fused_maps(features, wanted).to(torch.float16).cpu().numpy()
        scores = scores.cpu().numpy()
        predicted = predicted.cpu().numpy()
        prediction_rows, index_rows, box_rows, stored = [], [], [], []
        for b, g in enumerate(global_ids):
            image = listing.images[g]
            width, height = sizes[b]
            label = labels[g]
            for rank, class_id in enumerate(predicted[b], start=1):
                stored.append(fused[b, rank - 1])
                index_rows.append([g, writer.map_rows + len(stored) - 1, image, int(class_id),
                                   classes[class_id], rank, int(class_id == label)])
            if label >= 0 and label not in predicted[b]:
                stored.append(fused[b, top_k])
                index_rows.append([g, writer.map_rows + len(stored) - 1, image, label,
                                   classes[label], 0, 1])
            # the same upsampling as `score --protocol native`, so its boxes agree
            cam = upsample_map(fused[b, 0], width, height)
            boxes = native_boxes(cam, config.cam_threshold, all_boxes=config.all_boxes)
            box = [int(v) for v in boxes[0]] if len(boxes) else ["", "", "", ""]
            prediction_rows.append([
                g, image, width, height,
                "" if label < 0 else classes[label],
                *(classes[c] for c in predicted[b]),
                *(f"{s:.6f}" for s in scores[b]),
                *box, config.cam_threshold,
            ])
            if config.all_boxes:
                box_rows += [[g, image, classes[predicted[b][0]], *map(int, row)]
                             for row in boxes]
            if overlay_root is not None:
                self._write_overlay(overlay_root, listing, image, cam, boxes)
        writer.maps(np.stack(stored) if stored else np.zeros((0, 1, 1), MAP_DTYPE))
        writer.rows("predictions.csv", prediction_rows)
        writer.rows("maps_index.csv", index_rows)
        writer.rows("boxes.csv", box_rows)
        shape_file = self.partial / "map_shape.json"
        if not shape_file.exists():
            shape_file.write_text(json.dumps([int(v) for v in fused.shape[-2:]]))

    def _write_overlay(self, root: Path, listing: ImageList, image: str, cam: np.ndarray,
                       boxes: np.ndarray) -> None:
        import cv2

        picture = np.asarray(decode_image(listing.root / image))
        if picture.shape[:2] != cam.shape:
            cam = upsample_map(cam, picture.shape[1], picture.shape[0])
        drawn = overlay(picture, cam, boxes)
        target = (root / image).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])

    # ------------------------------------------------------------------ merge

    def _merge(self, loaded: LoadedModel, listing: ImageList, world: int, seconds: float,
               resumed: bool) -> LocalizeSummary:
        top_k = min(self.config.top_k, len(loaded.classes))
        folders = [self.partial / f"rank{r}" for r in range(world)]
        header = ["image", "width", "height", "label",
                  *(f"pred_{i}" for i in range(1, top_k + 1)),
                  *(f"score_{i}" for i in range(1, top_k + 1)), *BOX_FIELDS, "cam_threshold"]
        images = _merge_csv(folders, "predictions.csv", self.out / "predictions.csv", header)
        failed = _merge_csv(folders, "errors.csv", self.out / "errors.csv", ["image", "reason"],
                            keep_empty=False)
        if self.config.all_boxes:
            _merge_csv(folders, "boxes.csv", self.out / "boxes.csv",
                       ["image", "class_name", *BOX_FIELDS])
        height, width = self._map_shape()
        count = self._merge_maps(folders, height, width)
        (self.out / "maps.json").write_text(
            json.dumps(maps_meta(height, width, count, loaded.classes), indent=1))
        run = {
            "model": loaded.description,
            "classes": len(loaded.classes),
            "input_size": loaded.input_size,
            "arguments": asdict(self.config),
            "versions": library_versions(),
            "counts": {"images": images, "failed": failed, "maps": count,
                       "unknown_labels": listing.unknown_labels},
            "processes": world,
            "seconds": round(seconds, 3),
            "resumed": resumed,
        }
        (self.out / "run.json").write_text(json.dumps(run, indent=1))
        shutil.rmtree(self.partial)
        return LocalizeSummary(images, failed, count, seconds, self.out, resumed)

    def _map_shape(self) -> tuple[int, int]:
        """Map size, recorded by the first batch (maybe by an earlier, killed process)."""
        try:
            height, width = json.loads((self.partial / "map_shape.json").read_text())
        except (OSError, ValueError):
            return 0, 0  # no image could be decoded: no maps
        return int(height), int(width)

    def _merge_maps(self, folders: list[Path], height: int, width: int) -> int:
        map_bytes = height * width * MAP_DTYPE.itemsize
        sources = []
        for folder in folders:
            rows = (folder / "maps.f16").stat().st_size // map_bytes
            sources.append(np.memmap(folder / "maps.f16", dtype=MAP_DTYPE, mode="r",
                                     shape=(rows, height, width)) if rows else None)
        count = 0
        with open(self.out / "maps.f16", "wb") as maps_out, \
                open(self.out / "maps_index.csv", "w", newline="") as index_out:
            index_writer = csv.writer(index_out, lineterminator="\n")
            index_writer.writerow(INDEX_COLUMNS)
            for rank, row in _merged_rows(folders, "maps_index.csv"):
                local_row = int(row[1])
                maps_out.write(np.ascontiguousarray(sources[rank][local_row]).tobytes())
                index_writer.writerow([count, *row[2:]])
                count += 1
        return count


def _read_rows(path: Path, rank: int) -> Iterator[tuple[int, int, list[str]]]:
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            yield int(row[0]), rank, row


def _merged_rows(folders: list[Path], name: str) -> Iterator[tuple[int, list[str]]]:
    """Rows of every rank's file in global image order (each rank's file is in order)."""
    streams = [_read_rows(folder / name, rank) for rank, folder in enumerate(folders)]
    for _, rank, row in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
        yield rank, row


def _merge_csv(folders: list[Path], name: str, target: Path, header: list[str],
               keep_empty: bool = True) -> int:
    count = 0
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for _, row in _merged_rows(folders, name):
            writer.writerow(row[1:])
            count += 1
    if count or keep_empty:
        os.replace(tmp, target)
    else:
        tmp.unlink()
    return count


def localize(config: LocalizeConfig, log: Callable[[str], None] | None = None) -> LocalizeSummary:
    """Run the sweep; returns counts (failed > 0 means some files could not be decoded)."""
    return Localizer(config, log or (lambda m: print(m, file=sys.stderr, flush=True))).run()
