"""`acol-eval train`: fit an ACoL model on image-level labels (SPEC 3).

Determinism and resume: the global torch RNG is re-seeded from (seed, epoch)
at the start of every epoch and the data order comes from a generator seeded
the same way, so an epoch's randomness does not depend on what ran before it.
A run resumed from `last.pt` therefore continues bit for bit (on CPU) where an
uninterrupted run would be.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from .backbones import check_stride
from .checkpoint import load_checkpoint, plain, save_checkpoint
from .data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LabelledImages,
    collate_skipping,
    eval_transform,
    labelled_items,
    train_transform,
)
from .errors import AcolError
from .losses import acol_loss
from .model import ACoL, build_model, check_recipe, expand_deltas
from .readers import VALIDATION_SPLITS, read_source
from .runtime import Distributed, default_workers, library_versions
from .weights import resolve_weights

SCHEDULES = ("cosine", "step", "constant")


@dataclass
class TrainConfig:
    data: str
    out: str
    images: str | None = None  # image root for sources that hold metadata only (wsol:)
    arch: str = "resnet50"
    recipe: str = "pp"
    delta: list[float] = field(default_factory=lambda: [0.6])
    head: str = "linear"
    feature_stride: int = 32
    weights: str = "imagenet"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.001
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    lr_steps: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    loss_weights: list[float] | None = None
    input_size: int = 224
    resize_size: int | None = None
    workers: int | None = None  # None: data.default_workers()
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    resume: bool = False


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 100_003 + epoch * 7_919 + 1) % (2**63 - 1)


def lr_factor(schedule: str, epochs: int, steps: Sequence[int], gamma: float) -> Callable:
    if schedule == "cosine":
        return lambda e: 0.5 * (1 + math.cos(math.pi * e / max(epochs, 1)))
    if schedule == "step":
        return lambda e: gamma ** sum(e >= s for s in steps)
    if schedule == "constant":
        return lambda e: 1.0
    raise AcolError(f"unknown schedule {schedule!r}; use {', '.join(SCHEDULES)}")


def _log_default(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class EpochStats:
    loss: list[float]
    correct: list[float]
    count: float
    skipped: float

    def row(self, prefix: str, recipe: str) -> dict[str, float]:
        n = max(self.count, 1.0)
        row = {f"{prefix}_loss": sum(self.loss) / n}
        for k, letter in enumerate(recipe, start=1):
            row[f"{prefix}_loss_{k}{letter}"] = self.loss[k - 1] / n
            row[f"{prefix}_acc_{k}{letter}"] = 100.0 * self.correct[k - 1] / n
        return row


class Trainer:
    """One training run; `run()` does every epoch and writes the run folder."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None] = _log_default) -> None:
        self.config = config
        self.log = log
        check_recipe(config.recipe)
        self.deltas = expand_deltas(config.delta, config.recipe)
        check_stride(config.arch, config.feature_stride)
        if config.schedule not in SCHEDULES:
            raise AcolError(f"unknown schedule {config.schedule!r}; use {', '.join(SCHEDULES)}")
        if config.epochs < 1 or config.batch_size < 1:
            raise AcolError("--epochs and --batch-size must be at least 1")
        if config.loss_weights is not None and len(config.loss_weights) != len(config.recipe):
            raise AcolError("--loss-weights needs one weight per recipe letter")
        self.out = Path(config.out)
        self.dist = Distributed(config.device)
        self.device = self.dist.device
        self.resize_size = config.resize_size or round(config.input_size * 256 / 224)
        self.workers = default_workers() if config.workers is None else config.workers

    # ----------------------------------------------------------------- setup

    def _data(self) -> None:
        annotations = read_source(self.config.data)
        if self.config.images:
            annotations.root = Path(self.config.images)
        splits = annotations.splits
        train_split = "train" if "train" in splits else None
        if train_split is None:
            raise AcolError(
                f"{self.config.data} has no 'train' split (found: {', '.join(splits)})"
            )
        val_split = next((s for s in VALIDATION_SPLITS if s in splits), None)
        self.classes = annotations.classes
        if len(self.classes) < 2:
            raise AcolError(f"{self.config.data} has {len(self.classes)} class; need at least 2")
        train_items = labelled_items(annotations, train_split, self.classes)
        val_items = labelled_items(annotations, val_split, self.classes) if val_split else []
        size = self.config.input_size
        self.train_set = LabelledImages(
            annotations.root, train_items, train_transform(size, self.resize_size)
        )
        self.val_set = LabelledImages(annotations.root, val_items, eval_transform(size))
        if not val_items and self.dist.is_main:
            self.log("note: no val/validation/test split; best.pt follows training accuracy")

    def _model(self) -> None:
        config = self.config
        torch.manual_seed(config.seed)
        backbone_state = None
        if not config.resume:
            backbone_state = resolve_weights(config.weights, config.arch)
        self.model: ACoL = build_model(
            config.arch, len(self.classes), config.recipe, self.deltas, config.head,
            config.feature_stride, backbone_state,
        )
        self.model.to(self.device)
        if self.device.type == "cuda" and config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        head_params = list(self.model.heads.parameters())
        self.optimizer = torch.optim.SGD(
            [
                {"params": list(self.model.backbone.parameters()), "lr": config.lr},
                {"params": head_params, "lr": config.lr * config.head_lr_mult},
            ],
            lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_factor(config.schedule, config.epochs, config.lr_steps, config.lr_gamma),
        )
        self.net: nn.Module = self.model
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.use_amp = config.amp and self.device.type == "cuda"
        self.amp_dtype = (
            torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.use_amp and self.amp_dtype == torch.float16
        )

    def _resume(self) -> tuple[int, float]:
        path = self.out / "last.pt"
        if not path.is_file():
            raise AcolError(f"--resume: {path} does not exist (nothing to resume)")
        payload = load_checkpoint(path)
        for key, mine in (("arch", self.config.arch), ("recipe", self.config.recipe),
                          ("head", self.config.head),
                          ("feature_stride", self.config.feature_stride)):
            if payload[key] != mine:
                raise AcolError(
                    f"--resume: {path} was trained with {key}={payload[key]}, not {mine}"
                )
        if list(payload["classes"]) != list(self.classes):
            raise AcolError(f"--resume: {path} has other classes than {self.config.data}")
        self.model.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if "scaler" in payload and payload["scaler"]:
            self.scaler.load_state_dict(payload["scaler"])
        return int(payload["epoch"]), float(payload.get("best_accuracy", -1.0))

    # ----------------------------------------------------------------- epochs

    def _loader(self, dataset, train: bool, epoch: int) -> DataLoader:
        generator = torch.Generator().manual_seed(epoch_seed(self.config.seed, epoch))
        sampler = None
        if self.dist.active and train:
            sampler = DistributedSampler(
                dataset, self.dist.world, self.dist.rank, shuffle=True, seed=self.config.seed
            )
            sampler.set_epoch(epoch)
        elif self.dist.active:
            dataset = Subset(dataset, range(self.dist.rank, len(dataset), self.dist.world))
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.workers,
            collate_fn=collate_skipping,
            generator=generator,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def _run_epoch(self, epoch: int, train: bool) -> EpochStats:
        dataset = self.train_set if train else self.val_set
        recipe = self.config.recipe
        stats = EpochStats([0.0] * len(recipe), [0.0] * len(recipe), 0.0, 0.0)
        if len(dataset) == 0:
            return stats
        self.net.train(train)
        loader = self._loader(dataset, train, epoch)
        show_bar = self.dist.is_main and sys.stderr.isatty()
        label = f"epoch {epoch + 1}/{self.config.epochs} {'train' if train else 'val'}"
        bar = tqdm(loader, desc=label, unit="batch", disable=not show_bar, leave=False)
        grad = torch.enable_grad() if train else torch.no_grad()
        # A rank whose batch was wholly undecodable skips it and so runs fewer steps
        # than the others; DDP's join() shadows the missing collectives instead of hanging.
        uneven = (self.net.join() if isinstance(self.net, nn.parallel.DistributedDataParallel)
                  else contextlib.nullcontext())
        with grad, uneven:
            for images, labels, skipped in bar:
                stats.skipped += skipped
                if images is None:
                    continue
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
                if self.device.type == "cuda" and self.config.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.use_amp):
                    output = self.net(images, labels)
                    logits = [z.float() for z in output.logits]
                    total, parts = acol_loss(recipe, logits, labels, self.config.loss_weights)
                if train:
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scaler.scale(total).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                n = labels.shape[0]
                stats.count += n
                for k, (part, z) in enumerate(zip(parts, logits)):
                    stats.loss[k] += part.item() * n
                    stats.correct[k] += (z.argmax(1) == labels).sum().item()
                if show_bar:
                    bar.set_postfix(loss=f"{total.item():.3f}")
        reduced = self.dist.sum([*stats.loss, *stats.correct, stats.count, stats.skipped])
        k = len(recipe)
        return EpochStats(reduced[:k], reduced[k : 2 * k], reduced[2 * k], reduced[2 * k + 1])

    # ----------------------------------------------------------------- files

    def _payload(self, epoch: int, metrics: dict[str, float], best: float) -> dict[str, Any]:
        config = self.config
        return {
            "arch": config.arch,
            "recipe": config.recipe,
            "deltas": list(self.deltas),
            "head": config.head,
            "feature_stride": config.feature_stride,
            "classes": list(self.classes),
            "input_size": config.input_size,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "epoch": epoch,
            "metrics": plain(metrics),
            "best_accuracy": best,
            "args": plain(asdict(config)),
            "versions": library_versions(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": {"torch": torch.get_rng_state(), "seed": config.seed},
            "world_size": self.dist.world,
        }

    def _write_metrics(self, rows: list[dict[str, float]]) -> None:
        path = self.out / "metrics.csv"
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)

    def _read_metrics(self, up_to_epoch: int) -> list[dict[str, Any]]:
        path = self.out / "metrics.csv"
        if not path.is_file():
            return []
        with open(path, newline="") as handle:
            return [row for row in csv.DictReader(handle) if int(row["epoch"]) <= up_to_epoch]

    # ----------------------------------------------------------------- main

    def run(self) -> dict[str, float]:
        try:
            return self._run()
        finally:
            self.dist.close()

    def _run(self) -> dict[str, float]:
        config = self.config
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self._data()
        self._model()
        start, best = 0, -1.0
        rows: list[dict[str, Any]] = []
        if config.resume:
            start, best = self._resume()
            rows = self._read_metrics(start)
            if self.dist.is_main:
                self.log(f"resuming {self.out / 'last.pt'} after epoch {start}")
        if self.dist.is_main:
            self.log(
                f"training {config.arch} recipe {config.recipe} on {len(self.train_set)} images "
                f"({len(self.val_set)} for validation), {len(self.classes)} classes, "
                f"device {self.device}, {self.dist.world} process(es)"
            )
        metrics: dict[str, Any] = rows[-1] if rows else {}
        for epoch in range(start, config.epochs):
            torch.manual_seed(epoch_seed(config.seed, epoch))
            lr = self.optimizer.param_groups[0]["lr"]
            began = time.perf_counter()
            train = self._run_epoch(epoch, train=True)
            seconds = time.perf_counter() - began
            val = self._run_epoch(epoch, train=False)
            self.scheduler.step()
            metrics = {"epoch": epoch + 1, "lr": lr, **train.row("train", config.recipe)}
            if val.count:
                metrics.update(val.row("val", config.recipe))
            accuracy = metrics["val_acc_1p"] if val.count else metrics["train_acc_1p"]
            metrics.update({
                "images_per_s": train.count / max(seconds, 1e-9),
                "skipped_images": train.skipped + val.skipped,
                "seconds": seconds,
            })
            if not self.dist.is_main:
                continue
            rows.append(metrics)
            payload = self._payload(epoch + 1, metrics, max(best, accuracy))
            save_checkpoint(self.out / "last.pt", payload)
            if accuracy > best:
                best = accuracy
                save_checkpoint(self.out / "best.pt", payload)
            self._write_metrics(rows)
            skipped = int(train.skipped + val.skipped)
            self.log(
                f"epoch {epoch + 1}/{config.epochs}: loss {metrics['train_loss']:.4f} "
                f"train acc {metrics['train_acc_1p']:.1f}% "
                + (f"val acc {metrics['val_acc_1p']:.1f}% " if val.count else "")
                + f"lr {lr:.3g} {metrics['images_per_s']:.1f} img/s"
                + (f" skipped {skipped} unreadable image(s)" if skipped else "")
            )
        return metrics


def train(config: TrainConfig, log: Callable[[str], None] = _log_default) -> dict[str, float]:
    """Train as `config` says; returns the last epoch's metrics."""
    return Trainer(config, log).run()
