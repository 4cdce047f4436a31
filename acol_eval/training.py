"""`acol-eval train`: fit a model on image-level labels with a training method.

One job shape: `TrainConfig` (every default and every check, in `__post_init__`)
-> `train(config, log)` -> `TrainResult`. What a method changes (the batch, the heads,
the loss, what the checkpoint records) is its own, in a `trainmethod.TrainingMethod`
registered under `--method` (ACoL's is `acol_method.py`); this module runs the loop
every method shares.

Determinism and resume: every random draw derives from (seed, epoch) and, for
an image's augmentation, its index in the training set (data.KeyedSampler,
data.sample_generator), never from a loader worker's RNG; the main process's
global torch RNG is re-seeded from (seed, epoch) at the start of every epoch.
An epoch's randomness thus depends neither on what ran before it nor on
--workers or the cache, and a run resumed from `last.pt` with any --workers
continues bit for bit (on CPU) where an uninterrupted run would be
(docs/reproducibility.md says what is identical across machines and world sizes).

Speed: each image is decoded once and kept resized to the size the transform
starts with (`data.DecodedCache`: in memory within a budget, else on disk in
OUT/cache), so epochs after the first cost the network, not JPEG decoding.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from .backbones import check_stride
from .calibration import Calibration, calibrate
from .checkpoint import MAX_INPUT_SIZE, MIN_INPUT_SIZE, Checkpoint, plain
from .data import (
    CACHE_MEMORY_FRACTION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DecodedCache,
    EpochOrder,
    KeyedSampler,
    LabelledImages,
    available_memory,
    batch_generator,
    collate_skipping,
    eval_transform,
    file_keys,
    labelled_items,
    train_transform,
)
from .errors import AcolError
from .flags import changed_options
from .model import ACoL, Head, check_recipe, expand_deltas
from .presets import AppliedPreset
from .progress import Progress
from .readers import VALIDATION_SPLITS, Annotations, read_source
from .runtime import DEVICE_PATTERN, Distributed, library_versions, resolve_workers
from .safeio import FolderLock, atomic_open, atomic_write_text
from .trainmethod import (
    EpochStats,
    Precision,
    StepTools,
    TrainingMethod,
    get_method,
    method_args_plain,
)
from .weights import resolve_weights

# a run's own files: an OUT holding one is refused without --resume (calibration/ is
# cleared and redone by each calibration, so a folder of that name must be the run's)
RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "calibration")
PRESET_FILE = "preset.json"
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 1024  # 1024 x 3 x 224 x 224 floats are 600 MB before the network runs
MAX_RESIZE_SIZE = 2 * MAX_INPUT_SIZE
MAX_SEED = 2**63 - 1


class Schedule(str, Enum):
    """`--schedule`: the learning-rate factor per epoch."""

    COSINE = "cosine"
    STEP = "step"
    CONSTANT = "constant"


SCHEDULES = tuple(schedule.value for schedule in Schedule)


class CacheMode(str, Enum):
    """`--cache`: where decoded images are kept between epochs."""

    AUTO = "auto"  # memory when it fits CACHE_MEMORY_FRACTION of free memory, else disk
    MEMORY = "memory"
    DISK = "disk"  # OUT/cache, reused by a resumed or rerun run
    OFF = "off"  # decode every image every epoch


# --------------------------------------------------------------------------- the config


def _choice(enum: type[Enum], flag: str, value: Any) -> Any:
    try:
        return enum(getattr(value, "value", value))
    except ValueError:
        names = ", ".join(member.value for member in enum)
        raise AcolError(f"{flag} {value!r} is not one of {names}") from None


def _number(flag: str, value: Any, low: float, high: float = math.inf,
            low_open: bool = False) -> float:
    """A finite float in [low, high] ((low, high] when `low_open`), else an AcolError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AcolError(f"{flag} {value!r} is not a number") from None
    below = number <= low if low_open else number < low
    if not math.isfinite(number) or below or number > high:
        where = f"{'above' if low_open else 'at least'} {low:g}"
        where += f" and at most {high:g}" if math.isfinite(high) else ""
        raise AcolError(f"{flag} {value!r} must be a finite number {where}")
    return number


def _count(flag: str, value: Any, low: int, high: int) -> int:
    """An integer in [low, high] (a float like 3.0 is accepted as 3), else an AcolError."""
    number = _number(flag, value, low, high)
    if isinstance(value, bool) or number != int(number):
        raise AcolError(f"{flag} {value!r} must be a whole number")
    return int(number)


def _numbers(flag: str, values: Any) -> tuple[float, ...]:
    if isinstance(values, (int, float, str)):
        values = [values]
    return tuple(_number(flag, v, -math.inf) for v in values)


@dataclass(frozen=True)
class TrainConfig:
    """Every option of `acol-eval train`; defaults and checks live here and only here."""

    data: str
    out: str
    images: str | None = None  # image root for sources that hold metadata only (wsol:)
    method: str = "acol"  # a registered training method (trainmethod.list_methods())
    # the method's hyperparameters, for methods whose options are no train flag (the
    # built-in acol takes its own from recipe, delta, head, loss_weights, head_lr_mult)
    method_args: Mapping[str, Any] = field(default_factory=dict)
    arch: str = "resnet50"
    recipe: str = "pp"
    delta: tuple[float, ...] = (0.6,)
    head: Head = Head.LINEAR
    feature_stride: int = 32
    weights: str = "imagenet"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.001
    head_lr_mult: tuple[float, ...] = (10.0,)  # one for every head, or one per letter
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: Schedule = Schedule.COSINE
    lr_steps: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    loss_weights: tuple[float, ...] | None = None
    input_size: int = 224
    resize_size: int | None = None  # None: round(input_size * 256 / 224)
    workers: int | None = None  # None: runtime.default_workers()
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    resume: bool = False
    calibrate: bool = True  # data with boxes: best.pt gets the best GT-known CAM threshold
    val_fraction: float = 0.0  # > 0: hold out this stratified share of train for validation
    val_split: str | None = None  # a named split of the source as the validation split
    cache: CacheMode = CacheMode.AUTO

    def __post_init__(self) -> None:
        self._check_names()
        self._check_model()
        self._check_optimiser()
        self._check_sizes()
        self._check_validation()
        self.training_method()  # a method's own checks of its arguments, before any output

    def training_method(self) -> TrainingMethod:
        """The training method these options ask for."""
        return get_method(self.method).from_config(self)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen instance, once

    def _check_names(self) -> None:
        for flag, value in (("--data", self.data), ("--out", self.out),
                            ("--weights", self.weights), ("--arch", self.arch)):
            if not isinstance(value, str) or not value.strip() or "\0" in value:
                raise AcolError(f"{flag} {value!r} is empty or not a usable name")
        if not DEVICE_PATTERN.fullmatch(str(self.device)):
            raise AcolError(f"--device {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        self._set("seed", _count("--seed", self.seed, 0, MAX_SEED))
        if self.workers is not None:
            self._set("workers", _count("--workers", self.workers, -(2**31), 2**31))
        self._set("workers", resolve_workers(self.workers))
        self._set("cache", _choice(CacheMode, "--cache", self.cache))

    def _check_model(self) -> None:
        get_method(self.method)
        self._set("method_args", method_args_plain("method_args", self.method_args))
        check_recipe(self.recipe)
        self._set("head", _choice(Head, "--head", self.head))
        self._set("delta", expand_deltas(_numbers("--delta", self.delta), self.recipe))
        self._set("feature_stride", _count("--feature-stride", self.feature_stride, 1, 64))
        check_stride(self.arch, self.feature_stride)
        if self.loss_weights is not None:
            weights = tuple(_number("--loss-weights", w, 0.0) for w in
                            _numbers("--loss-weights", self.loss_weights))
            if len(weights) != len(self.recipe):
                raise AcolError("--loss-weights needs one weight per recipe letter")
            if not any(weights):
                raise AcolError("--loss-weights are all 0: nothing would be trained")
            self._set("loss_weights", weights)

    def _check_optimiser(self) -> None:
        self._set("epochs", _count("--epochs", self.epochs, 1, MAX_EPOCHS))
        self._set("batch_size", _count("--batch-size", self.batch_size, 1, MAX_BATCH_SIZE))
        self._set("lr", _number("--lr", self.lr, 0.0, low_open=True))
        self._set("momentum", _number("--momentum", self.momentum, 0.0, 0.999))
        self._set("weight_decay", _number("--weight-decay", self.weight_decay, 0.0))
        self._set("lr_gamma", _number("--lr-gamma", self.lr_gamma, 0.0, 1.0, low_open=True))
        self._set("schedule", _choice(Schedule, "--schedule", self.schedule))
        steps = tuple(_count("--lr-steps", s, 1, MAX_EPOCHS)
                      for s in _numbers("--lr-steps", self.lr_steps))
        if list(steps) != sorted(set(steps)):
            raise AcolError(f"--lr-steps {list(steps)} must rise strictly")
        self._set("lr_steps", steps)
        mults = tuple(_number("--head-lr-mult", m, 0.0, low_open=True)
                      for m in _numbers("--head-lr-mult", self.head_lr_mult))
        if len(mults) not in (1, len(self.recipe)):
            raise AcolError(f"--head-lr-mult takes one value or one per recipe letter "
                            f"({len(self.recipe)} for {self.recipe!r}), not {len(mults)}")
        self._set("head_lr_mult", mults)

    def _check_sizes(self) -> None:
        self._set("input_size", _count("--input-size", self.input_size,
                                       MIN_INPUT_SIZE, MAX_INPUT_SIZE))
        if self.resize_size is None:
            self._set("resize_size", round(self.input_size * 256 / 224))
        else:
            self._set("resize_size", _count("--resize-size", self.resize_size,
                                            self.input_size, MAX_RESIZE_SIZE))

    def _check_validation(self) -> None:
        self._set("val_fraction", _number("--val-fraction", self.val_fraction, 0.0, 0.9))
        if self.val_split is not None and (not isinstance(self.val_split, str)
                                           or not self.val_split.strip()):
            raise AcolError(f"--val-split {self.val_split!r} is not a split name")
        if self.val_fraction and self.val_split:
            raise AcolError("give --val-fraction or --val-split, not both")


# --------------------------------------------------------------------------- pure parts


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 100_003 + epoch * 7_919 + 1) % (2**63 - 1)


def lr_factor(schedule: Schedule | str, epochs: int, steps: Sequence[int],
              gamma: float) -> Callable:
    schedule = _choice(Schedule, "--schedule", schedule)
    if schedule == Schedule.COSINE:
        return lambda e: 0.5 * (1 + math.cos(math.pi * e / max(epochs, 1)))
    if schedule == Schedule.STEP:
        return lambda e: gamma ** sum(e >= s for s in steps)
    return lambda e: 1.0


def hold_out(items: list[tuple[str, int]], fraction: float,
             seed: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Split (image, class) items into (train, validation), stratified by class.

    Each class gives round(fraction * n) of its n images (at least 1 when it has
    2 or more and fraction > 0), chosen by a generator seeded from `seed` alone;
    both lists keep the input order.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    held: set[int] = set()
    labels = np.array([label for _, label in items])
    for label in sorted(set(labels.tolist())):
        positions = np.flatnonzero(labels == label)
        take = min(len(positions) - 1, max(1, round(fraction * len(positions))))
        if fraction > 0 and take > 0:
            held.update(rng.permutation(positions)[:take].tolist())
    train = [item for i, item in enumerate(items) if i not in held]
    val = [item for i, item in enumerate(items) if i in held]
    return train, val


# The scheme by which training's random draws derive from --seed (data.draw_seed):
# recorded in checkpoints, so a run made under another scheme is known for what it is.
DRAW_SCHEME = "seed-epoch-index/1"


def determinism(device: torch.device) -> dict[str, Any]:
    """What decides a run's numbers beyond its seed, arguments and library versions.

    Training leaves torch's flags as it finds them (deterministic algorithms off, cuDNN
    benchmark off, the default thread count): on CPU, one machine and thread count give
    the same model bit for bit; on CUDA, atomic adds in some backward kernels may round
    differently from run to run unless deterministic algorithms are switched on.
    """
    found = {
        "draws": DRAW_SCHEME,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "intra_op_threads": torch.get_num_threads(),
        "device": device.type,
    }
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
    return found


def determinism_notes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Lines for a --resume whose process differs from the run's in what can change the
    numbers (a thread count, a device): the run continues, but not bit for bit."""
    notes = []
    if saved.get("draws") != now["draws"]:
        notes.append(f"note: last.pt was trained under random-draw scheme "
                     f"{saved.get('draws', 'of a version before ' + now['draws'])}: the "
                     f"resumed epochs crop and flip otherwise than that run would have")
    for key, what in (("intra_op_threads", "thread count"),
                      ("device", "device"), ("gpu", "GPU"),
                      ("deterministic_algorithms", "deterministic-algorithms flag"),
                      ("cudnn_deterministic", "cuDNN deterministic flag"),
                      ("cudnn_benchmark", "cuDNN benchmark flag")):
        if saved.get(key, now.get(key)) != now.get(key):
            notes.append(f"note: last.pt was trained with {what} {saved.get(key)}, this "
                         f"process has {now.get(key)}: the resumed epochs may round "
                         f"differently from an uninterrupted run")
    return notes


def _log_default(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class TrainResult:
    """What one `train` run did; `metrics` is the last epoch's row of metrics.csv."""

    out: Path
    epochs: int  # epochs run by this command (fewer than --epochs after --resume)
    last_epoch: int
    metrics: dict[str, Any]
    best_accuracy: float
    train_images: int
    val_images: int
    seconds: float
    main_process: bool = True  # False on torchrun ranks other than 0 (they write nothing)
    calibration: Calibration | None = None  # best.pt's CAM threshold, when data has boxes


def epoch_metrics(epoch: int, lr: float, train: EpochStats, val: EpochStats,
                  seconds: float, recipe: str) -> dict[str, Any]:
    """One row of metrics.csv (epoch counted from 1; images_per_s of training only)."""
    metrics: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **train.row("train", recipe)}
    if val.count:
        metrics.update(val.row("val", recipe))
    metrics.update({
        "images_per_s": train.count / max(seconds, 1e-9),
        "skipped_images": train.skipped + val.skipped,
        "seconds": seconds,
    })
    return metrics


def epoch_line(metrics: dict[str, Any], epochs: int, has_val: bool) -> str:
    """The log line of one epoch."""
    skipped = int(metrics["skipped_images"])
    return (
        f"epoch {metrics['epoch']}/{epochs}: loss {metrics['train_loss']:.4f} "
        f"train acc {metrics['train_acc_1p']:.1f}% "
        + (f"val acc {metrics['val_acc_1p']:.1f}% " if has_val else "")
        + f"lr {metrics['lr']:.3g} {metrics['images_per_s']:.1f} img/s"
        + (f" skipped {skipped} unreadable image(s)" if skipped else "")
    )


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_metrics(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    """metrics.csv rows up to an epoch (a resumed run continues the file)."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as handle:
            return [row for row in csv.DictReader(handle) if int(row["epoch"]) <= up_to_epoch]
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, csv.Error):
        raise AcolError(f"--resume: {path} is not a metrics.csv of acol-eval") from None


# --------------------------------------------------------------------------- data


@dataclass
class TrainingData:
    classes: list[str]
    train_set: LabelledImages
    val_set: LabelledImages
    note: str  # how the validation split was chosen, when that needs saying
    annotations: Annotations | None = None  # the source, for calibrating on its boxes


def _validation_items(config: TrainConfig, annotations, classes: list[str],
                      train_items: list) -> tuple[list, list, str]:
    splits = annotations.splits
    if config.val_fraction > 0:
        train_items, val_items = hold_out(train_items, config.val_fraction, config.seed)
        return train_items, val_items, (
            f"note: validation is {len(val_items)} images held out of the train split "
            f"(--val-fraction {config.val_fraction:g}, stratified, seed {config.seed})")
    if config.val_split is not None:
        if config.val_split not in splits or config.val_split == "train":
            raise AcolError(f"--val-split {config.val_split!r} is not a split of "
                            f"{config.data} other than train (found: {', '.join(splits)})")
        return train_items, labelled_items(annotations, config.val_split, classes), ""
    val_split = next((s for s in VALIDATION_SPLITS if s in splits), None)
    if val_split is None:
        return train_items, [], ("note: no val/validation/test split; "
                                 "best.pt follows training accuracy")
    return train_items, labelled_items(annotations, val_split, classes), ""


def load_training_data(config: TrainConfig) -> TrainingData:
    """The train and validation sets of `config.data` (nothing cached yet)."""
    annotations = read_source(config.data, image_root=config.images)
    if "train" not in annotations.splits:
        raise AcolError(
            f"{config.data} has no 'train' split (found: {', '.join(annotations.splits)})"
        )
    classes = annotations.classes
    if len(classes) < 2:
        raise AcolError(f"{config.data} has {len(classes)} class; need at least 2")
    train_items = labelled_items(annotations, "train", classes)
    train_items, val_items, note = _validation_items(config, annotations, classes, train_items)
    size = config.input_size
    return TrainingData(
        classes,
        LabelledImages(annotations.root, train_items,
                       train_transform(size, config.resize_size)),
        LabelledImages(annotations.root, val_items, eval_transform(size)),
        note,
        annotations,
    )


def attach_cache(dataset: LabelledImages, name: str, side: int, mode: CacheMode,
                 folder: Path | None, budget: int) -> str:
    """Give `dataset` a DecodedCache as `mode` says; returns where it went (or why not)."""
    count = len(dataset)
    needed = count * (side * side * 3 + 1)
    if count == 0 or mode == CacheMode.OFF:
        return "off"
    if mode == CacheMode.MEMORY or (mode == CacheMode.AUTO and needed <= budget):
        dataset.cache = DecodedCache(side, count)
        return f"memory ({needed / 2**20:.0f} MB)"
    if folder is None:
        return "off (no disk cache under torchrun)"
    folder.mkdir(parents=True, exist_ok=True)
    if mode == CacheMode.AUTO and shutil.disk_usage(folder).free < 1.1 * needed:
        return f"off ({needed / 2**30:.1f} GB fits neither memory nor {folder})"
    key = {"side": side, "files": file_keys(dataset.root, [i for i, _ in dataset.items])}
    cache = DecodedCache(side, count, folder / f"{name}-{side}", key)
    dataset.cache = cache
    reused = cache.counts()["ready"] if cache.reused else 0
    return f"disk {cache.folder} ({needed / 2**20:.0f} MB, {reused} images already decoded)"


def attach_caches(config: TrainConfig, data: TrainingData, dist: Distributed,
                  log: Callable[[str], None]) -> None:
    """Decode each image once from now on (see data.DecodedCache)."""
    folder = None if dist.active else Path(config.out) / "cache"
    budget = int(CACHE_MEMORY_FRACTION * available_memory())
    where = []
    for name, dataset, side in (("train", data.train_set, config.resize_size),
                                ("val", data.val_set, config.input_size)):
        where.append(attach_cache(dataset, name, side, config.cache, folder, budget))
        if dataset.cache is not None and dataset.cache.folder is None:
            budget -= dataset.cache.nbytes
    if dist.is_main and config.cache != CacheMode.OFF:
        log(f"decoded-image cache: train {where[0]}, val {where[1]}")


def precision_of(config: TrainConfig, device: torch.device) -> Precision:
    """Autocast on CUDA with --amp: bfloat16 where supported, else float16 and a scaler."""
    use_amp = config.amp and device.type == "cuda"
    dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    return Precision(use_amp, dtype, torch.amp.GradScaler(
        "cuda", enabled=use_amp and dtype == torch.float16))


def load_resume_point(trainer: Trainer) -> tuple[int, float]:
    """Load OUT/last.pt into the trainer's model, optimiser, scheduler and scaler after
    checking it is this run's; returns (epochs done, best accuracy)."""
    config, model = trainer.config, trainer.model
    path = trainer.out / "last.pt"
    if not path.is_file():
        raise AcolError(f"--resume: {path} does not exist (nothing to resume)")
    saved = Checkpoint.load(path)
    for key, mine in (("method", trainer.method.name), ("arch", config.arch),
                      ("recipe", model.recipe), ("head", model.head_kind),
                      ("feature_stride", config.feature_stride)):
        if getattr(saved, key) != mine:
            raise AcolError(
                f"--resume: {path} was trained with {key}={getattr(saved, key)}, not {mine}"
            )
    if list(saved.classes) != list(trainer.data.classes):
        raise AcolError(f"--resume: {path} has other classes than {config.data}")
    _check_same_options(path, saved.args, config)
    if saved.optimizer is None or saved.scheduler is None:
        raise AcolError(f"--resume: {path} holds no optimiser state (not a training run's)")
    try:
        model.load_state_dict(saved.state_dict)
        trainer.optimizer.load_state_dict(saved.optimizer)
        trainer.scheduler.load_state_dict(saved.scheduler)
        if saved.scaler:
            trainer.precision.scaler.load_state_dict(saved.scaler)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise AcolError(f"--resume: {path} does not fit this run: {first}") from None
    if trainer.dist.is_main:
        for note in determinism_notes(saved.determinism, determinism(trainer.device)):
            trainer.log(note)
    return int(saved.epoch), float(saved.best_accuracy)


def build_network(config: TrainConfig, method: TrainingMethod, classes: int,
                  device: torch.device) -> ACoL:
    """The method's model on `device`, its heads (and, with --weights none, its
    backbone) initialised from --seed; pretrained weights unless resuming."""
    torch.manual_seed(config.seed)
    backbone_state = None if config.resume else resolve_weights(config.weights, config.arch)
    model = method.model(config.arch, classes, config.feature_stride, backbone_state)
    model.to(device)
    if config.channels_last:  # oneDNN's convolutions too: 1.2-1.6x a CPU step
        model.to(memory_format=torch.channels_last)  # (benchmarks/bench_train_cpu.py)
    return model


def batch_number(k: int, dist: Distributed) -> int:
    """The number of a rank's k-th batch for data.batch_generator: ranks draw apart."""
    return k * dist.world + dist.rank if dist.active else k


# --------------------------------------------------------------------------- the run


class Trainer:
    """One training run: data, model, optimiser and resume state are all set up by
    `__init__` (so a bad input fails before anything is written); `run()` writes. The
    step itself is the training method's (trainmethod.TrainingMethod.step)."""

    def __init__(self, config: TrainConfig, dist: Distributed,
                 log: Callable[[str], None] = _log_default) -> None:
        self.config, self.log, self.dist = config, log, dist
        self.device = dist.device
        self.out = Path(config.out)
        self.method = config.training_method()
        self.data = load_training_data(config)
        if self.data.note and dist.is_main:
            log(self.data.note)
        self.model = build_network(config, self.method, len(self.data.classes), self.device)
        self.optimizer = torch.optim.SGD(
            self.method.param_groups(self.model, config.lr, config.head_lr_mult),
            lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_factor(config.schedule, config.epochs, config.lr_steps, config.lr_gamma),
        )
        self.net: nn.Module = self.method.training_model(self.model)
        if dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.precision = precision_of(config, self.device)
        self.start_epoch, self.best, self.rows = 0, -1.0, []
        if config.resume:
            self.start_epoch, self.best = load_resume_point(self)
            self.rows = read_metrics(self.out / "metrics.csv", self.start_epoch)

    def _loader(self, dataset, train: bool, epoch: int) -> DataLoader:
        """An epoch's loader. Training order: a permutation seeded by (seed, epoch) in
        this process (DistributedSampler's own under torchrun), each index handed to the
        dataset with its draw seed (data.KeyedSampler): no draw depends on the workers."""
        config = self.config
        generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
        sampler = None
        if train:
            if self.dist.active:
                order = DistributedSampler(dataset, self.dist.world, self.dist.rank,
                                           shuffle=True, seed=config.seed)
                order.set_epoch(epoch)
            else:
                order = EpochOrder(len(dataset), epoch_seed(config.seed, epoch))
            sampler = KeyedSampler(order, config.seed, epoch)
        elif self.dist.active:
            dataset = Subset(dataset, range(self.dist.rank, len(dataset), self.dist.world))
        return DataLoader(
            dataset, batch_size=config.batch_size, shuffle=False, sampler=sampler,
            num_workers=config.workers, collate_fn=collate_skipping,
            generator=generator,  # only seeds the workers' own RNGs, which nothing draws from
            pin_memory=self.device.type == "cuda", persistent_workers=False,
        )

    def _run_epoch(self, epoch: int, train: bool) -> EpochStats:
        dataset = self.data.train_set if train else self.data.val_set
        heads = len(self.model.recipe)
        stats = EpochStats([0.0] * heads, [0.0] * heads, 0.0, 0.0)
        if len(dataset) == 0:
            return stats
        self.net.train(train)
        loader = self._loader(dataset, train, epoch)
        show_bar = self.dist.is_main and sys.stderr.isatty()
        label = f"epoch {epoch + 1}/{self.config.epochs} {'train' if train else 'val'}"
        bar = tqdm(loader, desc=label, unit="batch", disable=not show_bar, leave=False)
        # not on a terminal (a log file, CI): a plain line now and then instead of the bar
        progress = (Progress(len(loader.sampler), label, "images", self.log)
                    if self.dist.is_main and not show_bar else contextlib.nullcontext())
        grad = torch.enable_grad() if train else torch.no_grad()
        # A rank whose batch was wholly undecodable skips it and so runs fewer steps
        # than the others; DDP's join() shadows the missing collectives instead of hanging.
        uneven = (self.net.join() if isinstance(self.net, nn.parallel.DistributedDataParallel)
                  else contextlib.nullcontext())
        tools = StepTools(self.net, self.optimizer, self.precision, self.device,
                          self.config.channels_last)
        with grad, uneven, progress as counter:
            for k, (images, labels, skipped) in enumerate(bar):
                stats.skipped += skipped
                if images is not None:
                    draws = (batch_generator(self.config.seed, epoch, batch_number(k, self.dist))
                             if train else None)
                    total = self.method.step(tools, images, labels, train, stats, draws)
                    if show_bar:
                        bar.set_postfix(loss=f"{total.item():.3f}")
                if counter is not None:
                    counter.update(skipped + (0 if images is None else images.shape[0]))
        reduced = self.dist.sum([*stats.loss, *stats.correct, stats.count, stats.skipped])
        return EpochStats(reduced[:heads], reduced[heads : 2 * heads], reduced[2 * heads],
                          reduced[2 * heads + 1])

    def _record(self, epoch: int, metrics: dict[str, Any], has_val: bool) -> None:
        """Rank 0: last.pt, best.pt when better, metrics.csv, and the log line."""
        accuracy = metrics["val_acc_1p"] if has_val else metrics["train_acc_1p"]
        self.rows.append(metrics)
        checkpoint = run_checkpoint(self, epoch + 1, metrics, max(self.best, accuracy))
        checkpoint.save(self.out / "last.pt")
        if accuracy > self.best:
            self.best = accuracy
            checkpoint.save(self.out / "best.pt")
        write_metrics(self.out / "metrics.csv", self.rows)
        self.log(epoch_line(metrics, self.config.epochs, has_val))

    def run(self) -> TrainResult:
        config = self.config
        began_run = time.perf_counter()
        if self.dist.is_main:
            if config.resume:
                self.log(f"resuming {self.out / 'last.pt'} after epoch {self.start_epoch}")
            self.log(
                f"training {config.arch} {self.method.describe()} on "
                f"{len(self.data.train_set)} images ({len(self.data.val_set)} for validation), "
                f"{len(self.data.classes)} classes, device {self.device}, "
                f"{self.dist.world} process(es)"
            )
        attach_caches(config, self.data, self.dist, self.log)
        metrics: dict[str, Any] = self.rows[-1] if self.rows else {}
        for epoch in range(self.start_epoch, config.epochs):
            torch.manual_seed(epoch_seed(config.seed, epoch))
            lr = self.optimizer.param_groups[0]["lr"]
            began = time.perf_counter()
            train = self._run_epoch(epoch, train=True)
            seconds = time.perf_counter() - began
            val = self._run_epoch(epoch, train=False)
            self.scheduler.step()
            metrics = epoch_metrics(epoch, lr, train, val, seconds, self.model.recipe)
            if self.dist.is_main:
                self._record(epoch, metrics, bool(val.count))
        return TrainResult(
            self.out, max(0, config.epochs - self.start_epoch), config.epochs, metrics, self.best,
            len(self.data.train_set), len(self.data.val_set), time.perf_counter() - began_run,
            self.dist.is_main,
        )


def run_checkpoint(trainer: Trainer, epoch: int, metrics: dict[str, float],
                   best: float) -> Checkpoint:
    """The checkpoint of a run after `epoch` epochs: the inference model's fields and
    weights, the method, and the state a --resume continues from."""
    config, model = trainer.config, trainer.model
    scaler = trainer.precision.scaler
    return Checkpoint(
        arch=config.arch, recipe=model.recipe, deltas=tuple(model.deltas),
        head=model.head_kind, feature_stride=config.feature_stride,
        classes=tuple(trainer.data.classes), input_size=config.input_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        epoch=epoch, metrics=metrics, best_accuracy=best, args=asdict(config),
        versions=library_versions(), optimizer=trainer.optimizer.state_dict(),
        scheduler=trainer.scheduler.state_dict(),
        scaler=scaler.state_dict() if scaler.is_enabled() else {},
        rng={"torch": torch.get_rng_state(), "seed": config.seed},
        world_size=trainer.dist.world, determinism=determinism(trainer.device),
        method=trainer.method.name, method_args=trainer.method.hyperparameters(),
    )


# --------------------------------------------------------------------------- entry


def calibrate_best(config: TrainConfig, data: TrainingData,
                   log: Callable[[str], None]) -> Calibration | None:
    """Rank 0, after training: best.pt's CAM threshold, the best GT-known Loc on the
    validation images that have boxes (calibration.py), written into best.pt. Without
    boxes (an ImageFolder tree) best.pt stays uncalibrated and localize uses 0.2."""
    best = Path(config.out) / "best.pt"
    images = [name for name, _ in data.val_set.items]
    if data.annotations is None or not best.is_file() or not images:
        return None
    found = calibrate(best, data.annotations, images, config.out, config.device,
                      config.workers, log)
    if found is None:
        log("note: the validation images have no boxes: best.pt keeps no calibrated CAM "
            "threshold (localize will use 0.2)")
        return None
    if found.gt_known <= 0:  # every threshold ties at 0%: argmax would pick 0, whole-image boxes
        log(f"warning: no CAM threshold gives a right box on the {found.images} validation "
            "images (GT-known Loc 0%): best.pt stays uncalibrated (localize will use 0.2)")
        return None
    checkpoint = Checkpoint.load(best)
    replace(checkpoint, cam_threshold=found.threshold,
            cam_threshold_source=found.source).save(best)
    log(f"calibrated CAM threshold {found.threshold:g}: {found.source}")
    return found


# options that may change between a run and its --resume: how and where it runs, not what
# it computes (the schedule, the data and the model must stay those of the killed run)
RESUME_FREE = {"resume", "workers", "device", "cache", "calibrate", "out", "amp",
               "channels_last"}


def _check_same_options(path: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    """Refuse a --resume whose options differ from the run's (changing --epochs would
    bend the cosine schedule mid-run; --input-size would mix two models). More epochs
    are fine under the step and constant schedules, whose rates ignore the length."""
    mine = json.loads(json.dumps(plain(asdict(config))))
    saved = json.loads(json.dumps(plain(saved or {})))
    free = set(RESUME_FREE)
    if config.schedule is not Schedule.COSINE:
        free.add("epochs")  # step and constant rates do not depend on the run's length
    differ = sorted(key for key in mine if key not in free and key in saved
                    and saved[key] != mine[key])
    if differ:
        shown = changed_options(saved, mine, differ)
        raise AcolError(f"--resume: {path} was trained with other options: {shown}; resume "
                        f"with the run's own options, or start a new --out")


def check_out_folder(config: TrainConfig) -> None:
    """Refuse to replace a run's files without --resume (reads only, writes nothing)."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise AcolError(f"--out {out} exists and is not a folder")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not config.resume:
        raise AcolError(f"{out} already holds a training run ({', '.join(found)}); "
                        f"add --resume to continue it or choose another --out")
    if config.resume and not (out / "last.pt").is_file():
        raise AcolError(f"--resume: {out / 'last.pt'} does not exist (nothing to resume)")
    preset = out / PRESET_FILE
    if preset.exists() and not _is_preset_record(preset):
        raise AcolError(f"{preset} is not a preset record acol-eval wrote, and train would "
                        f"replace it; move it or choose another --out")


def _is_preset_record(path: Path) -> bool:
    """A preset.json train wrote (a run killed before its first checkpoint leaves one,
    which its rerun may replace), not a file of the user's."""
    try:
        if path.stat().st_size > 2**20:  # ours is a few hundred bytes: not read whole
            return False
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and {"preset", "flags", "overridden"} <= found.keys()


def source_splits(data: str, images: str | None = None) -> list[str]:
    """The splits a training source has (what a preset's validation choice depends on)."""
    return list(read_source(data, image_root=images).splits)


def train(config: TrainConfig, log: Callable[[str], None] = _log_default,
          preset: AppliedPreset | None = None) -> TrainResult:
    """Train as `config` says. Inputs (data, weights, the checkpoint to resume) are all
    read and checked before the run folder is locked and written; rank 0 holds the lock.
    `preset`: the preset `config` was filled from, printed first and kept in
    OUT/preset.json so the run folder says which flags it stood for."""
    check_out_folder(config)
    dist = Distributed(config.device)
    if preset is not None and dist.is_main:
        log(preset.summary())
    try:
        trainer = Trainer(config, dist, log)
        lock = FolderLock(config.out, "train") if dist.is_main else contextlib.nullcontext()
        with lock:
            if dist.is_main:
                check_out_folder(config)  # again, now that no other command can write
                if preset is not None:
                    atomic_write_text(Path(config.out) / PRESET_FILE,
                                      json.dumps(preset.record(), indent=1) + "\n")
            result = trainer.run()
            if dist.is_main and config.calibrate:
                result = replace(result, calibration=calibrate_best(config, trainer.data, log))
            return result
    finally:
        dist.close()
