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
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from acol_eval.data.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EpochOrder,
    KeyedSampler,
    batch_generator,
    collate_skipping,
)
from acol_eval.models.checkpoint import Checkpoint
from acol_eval.models.model import ACoL
from acol_eval.models.trainmethod import EpochStats, Precision, StepTools, TrainingMethod
from acol_eval.models.weights import resolve_weights
from acol_eval.report.curveplot import plot_training
from acol_eval.training.calibration import (
    Calibration,
    CalibrationSet,
    calibrate,
    localize_and_score,
)
from acol_eval.training.presets import AppliedPreset
from acol_eval.training.trainconfig import (
    PRESET_FILE,
    TrainConfig,
    check_out_folder,
    check_same_hyperparameters,
    check_same_options,
    lr_factor,
)
from acol_eval.training.trainingdata import TrainingData, attach_caches, load_training_data
from acol_eval.training.trainlog import (
    CURVES_FILE,
    VAL_LOC_COLUMN,
    VAL_LOC_FOLDER,
    determinism,
    determinism_notes,
    epoch_line,
    epoch_metrics,
    read_metrics,
    write_metrics,
)
from acol_eval.util.errors import AcolError
from acol_eval.util.progress import Progress
from acol_eval.util.runtime import Distributed, library_versions
from acol_eval.util.safeio import FolderLock, atomic_write_text

# --------------------------------------------------------------------------- pure parts


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 100_003 + epoch * 7_919 + 1) % (2**63 - 1)


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


def precision_of(config: TrainConfig, device: torch.device) -> Precision:
    """Autocast on CUDA with --amp: bfloat16 where supported, else float16 and a scaler."""
    use_amp = config.amp and device.type == "cuda"
    dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    return Precision(use_amp, dtype, torch.amp.GradScaler(
        "cuda", enabled=use_amp and dtype == torch.float16))


def resumed_rows(path: Path, epochs_done: int,
                 last_row: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """metrics.csv's rows of the epochs last.pt holds, and whether the last one had to come
    from last.pt itself (a kill came between writing last.pt and metrics.csv)."""
    rows = read_metrics(path, epochs_done)
    if epochs_done and len(rows) == epochs_done - 1 and last_row:
        return [*rows, dict(last_row)], True
    return rows, False


def load_resume_point(trainer: Trainer) -> tuple[int, float, dict[str, Any]]:
    """Load OUT/last.pt into the trainer's model, optimiser, scheduler and scaler after
    checking it is this run's; returns (epochs done, best accuracy, its metrics row)."""
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
    check_same_options(path, saved.args, config)
    check_same_hyperparameters(path, saved.method_args, trainer.method)
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
    return int(saved.epoch), float(saved.best_accuracy), dict(saved.metrics or {})


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
        self.val_boxes = validation_boxes(config, self.data) if dist.is_main else None
        self.start_epoch, self.best, self.rows, self.row_restored = 0, -1.0, [], False
        if config.resume:
            self.start_epoch, self.best, last_row = load_resume_point(self)
            self.rows, self.row_restored = resumed_rows(self.out / "metrics.csv",
                                                        self.start_epoch, last_row)

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
        if self.val_boxes is not None:  # the row (and the checkpoints) gain its localisation
            staged = self.out / EPOCH_STAGED
            checkpoint.save(staged)
            metrics[VAL_LOC_COLUMN] = validation_localisation(self, staged)
            staged.unlink(missing_ok=True)
        if accuracy > self.best:
            self.best = accuracy
            checkpoint.save(self.out / "best.pt")
        # last.pt is the epoch's commit: a kill before it resumes from the previous epoch,
        # which repeats exactly; metrics.csv follows it, and a resume restores a row it
        # lacks from last.pt's own copy (resumed_rows)
        checkpoint.save(self.out / "last.pt")
        write_metrics(self.out / "metrics.csv", self.rows)
        plot_training(self.out / CURVES_FILE, self.rows)
        self.log(epoch_line(metrics, self.config.epochs, has_val))

    def run(self) -> TrainResult:
        config = self.config
        began_run = time.perf_counter()
        if self.dist.is_main:
            if config.resume:
                self.log(f"resuming {self.out / 'last.pt'} after epoch {self.start_epoch}")
        self.method.before_training(self.model, self.data, config, self.log)
        if self.dist.is_main:
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


def validation_boxes(config: TrainConfig, data: TrainingData) -> CalibrationSet | None:
    """The validation images with boxes, when the run calibrates (data with boxes and
    --calibrate): each epoch then scores their localisation for metrics.csv."""
    if not config.calibrate or data.annotations is None or not len(data.val_set):
        return None
    return CalibrationSet.of(data.annotations, [name for name, _ in data.val_set.items])


# the epoch's weights while its validation localisation runs, before last.pt is written
EPOCH_STAGED = ".epoch.pt"


def validation_localisation(trainer: Trainer, checkpoint: Path) -> float:
    """MaxBoxAccV2 (wsoleval protocol, CAM thresholds every 0.01) of `checkpoint` on the
    validation images with boxes, in OUT/validation (NaN when none could be localized)."""
    config = trainer.config
    summary = localize_and_score(checkpoint, trainer.val_boxes, trainer.out / VAL_LOC_FOLDER,
                                 "wsoleval", config.device, config.workers, interval=0.01)
    found = None if summary is None else summary[summary["metric"] == "max_box_acc_v2"]
    return float("nan") if found is None or found.empty else float(found["value"].iloc[0])


# --------------------------------------------------------------------------- entry


# what a threshold calibrated on a source's test split says of itself, wherever it is shown
TEST_AS_VALIDATION = "test-split images (no val split; not held out from a test score)"


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
                      config.workers, log, TEST_AS_VALIDATION if data.val_is_test else
                      "validation images")
    if found is None:
        log("note: the validation images have no boxes: best.pt keeps no calibrated CAM "
            "threshold (localize will use 0.2)")
        return None
    if found.gt_known <= 0:  # every threshold ties at 0%: argmax would pick 0, whole-image boxes
        earlier = Checkpoint.load(best).cam_threshold  # a --recalibrate keeps the one it had
        kept = ("best.pt stays uncalibrated (localize will use 0.2)" if earlier is None else
                f"best.pt keeps its earlier CAM threshold {earlier:.3f}")
        log(f"warning: no CAM threshold gives a right box on the {found.images} validation "
            f"images (GT-known Loc 0%): {kept}")
        return None
    checkpoint = Checkpoint.load(best)
    replace(checkpoint, cam_threshold=found.threshold,
            cam_threshold_source=found.source).save(best)
    log(f"calibrated CAM threshold {found.threshold:g}: {found.source}")
    return found


def finished_run(trainer: Trainer) -> TrainResult:
    """A --resume of a run that has all its epochs: nothing is trained, and best.pt's
    calibration is kept unless --recalibrate asks for it again (say so either way)."""
    config = trainer.config
    if trainer.dist.is_main:
        trainer.log(f"{trainer.out} is finished: all {config.epochs} epochs are trained, "
                    f"nothing to resume; "
                    + ("calibrating best.pt again (--recalibrate)" if config.recalibrate else
                       "best.pt keeps its calibration (--recalibrate redoes it)"))
    return TrainResult(trainer.out, 0, config.epochs, trainer.rows[-1] if trainer.rows else {},
                       trainer.best, len(trainer.data.train_set), len(trainer.data.val_set),
                       0.0, trainer.dist.is_main)


def train(config: TrainConfig, log: Callable[[str], None] = _log_default,
          preset: AppliedPreset | None = None) -> TrainResult:
    """Train as `config` says. Inputs (data, weights, the checkpoint to resume) are all
    read and checked before the run folder is locked and written; rank 0 holds the lock.
    `preset`: the preset `config` was filled from, printed first and kept in
    OUT/preset.json so the run folder says which flags it stood for."""
    check_out_folder(config)
    dist = Distributed(config.device)
    try:
        # the data and the budget are checked first, so a refused command prints only
        # its one error line; what the checks had to say follows the preset's line
        held: list[str] = []
        trainer = Trainer(config, dist, held.append)
        trainer.log = log
        if preset is not None and dist.is_main:
            log(preset.summary())
        for line in held:
            log(line)
        finished = config.resume and trainer.start_epoch >= config.epochs
        lock = FolderLock(config.out, "train") if dist.is_main else contextlib.nullcontext()
        with lock:
            if dist.is_main:
                check_out_folder(config)  # again, now that no other command can write
                if trainer.row_restored:  # metrics.csv catches up with last.pt
                    write_metrics(trainer.out / "metrics.csv", trainer.rows)
                    plot_training(trainer.out / CURVES_FILE, trainer.rows)
                if preset is not None:
                    atomic_write_text(Path(config.out) / PRESET_FILE,
                                      json.dumps(preset.record(), indent=1) + "\n")
                if trainer.data.box_budget is not None:  # the boxes spent, and on what
                    log(trainer.data.box_budget.summary())
                    trainer.data.box_budget.write(config.out)
            result = finished_run(trainer) if finished else trainer.run()
            if dist.is_main and config.calibrate and (not finished or config.recalibrate):
                result = replace(result, calibration=calibrate_best(config, trainer.data, log))
            return result
    finally:
        dist.close()
