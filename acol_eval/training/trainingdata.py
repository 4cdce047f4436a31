"""The data of `acol-eval train`: the train and validation sets a source gives
(`load_training_data`, with the stratified `hold_out` of --val-fraction), the
decoded-image caches they get (`attach_caches`), and the splits a source has
(`source_splits`, what a preset's validation choice depends on). Split from training.py
so that which images a run sees, and how they are kept between epochs, reads apart from
the loop over epochs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acol_eval.data.datasets import (
    CACHE_MEMORY_FRACTION,
    DecodedCache,
    LabelledImages,
    available_memory,
    eval_transform,
    file_keys,
    labelled_items,
    train_transform,
)
from acol_eval.data.readers import VALIDATION_SPLITS, Annotations, read_source
from acol_eval.models.fsl_method import BoxMasks
from acol_eval.training.boxbudget import (
    BoxBudget,
    box_masks,
    check_box_source,
    check_record,
    draw_budget,
)
from acol_eval.training.trainconfig import CacheMode, TrainConfig
from acol_eval.util.errors import AcolError
from acol_eval.util.runtime import Distributed


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


@dataclass
class TrainingData:
    classes: list[str]
    train_set: LabelledImages
    val_set: LabelledImages
    note: str  # how the validation split was chosen, when that needs saying
    annotations: Annotations | None = None  # the source, for calibrating on its boxes
    # --boxes-per-class: the validation images whose boxes train the method (left out of
    # val_set, so model choice and calibration never see them), and their masks
    box_budget: BoxBudget | None = None
    box_masks: BoxMasks | None = None
    # validation is the source's test split (its fallback without a val split): what
    # calibration says of its threshold
    val_is_test: bool = False


def _validation_items(config: TrainConfig, annotations, classes: list[str],
                      train_items: list) -> tuple[list, list, str, str | None]:
    """(train items, validation items, a note to log, the source's split validation is:
    None when it is held out of train or absent)."""
    splits = annotations.splits
    if config.val_fraction > 0:
        train_items, val_items = hold_out(train_items, config.val_fraction, config.seed)
        return train_items, val_items, (
            f"note: validation is {len(val_items)} images held out of the train split "
            f"(--val-fraction {config.val_fraction:g}, stratified, seed {config.seed})"), None
    if config.val_split is not None:
        if config.val_split not in splits or config.val_split == "train":
            raise AcolError(f"--val-split {config.val_split!r} is not a split of "
                            f"{config.data} other than train (found: {', '.join(splits)})")
        return (train_items, labelled_items(annotations, config.val_split, classes), "",
                config.val_split)
    val_split = next((s for s in VALIDATION_SPLITS if s in splits), None)
    if val_split is None:
        return train_items, [], ("note: no val/validation/test split; "
                                 "best.pt follows training accuracy"), None
    note = "" if val_split != "test" else (
        f"warning: {config.data} has no val split, so validation (best.pt and the CAM "
        f"threshold) is its test split, and a score of the test split is not held out; "
        f"--val-fraction 0.2 holds validation out of the train split instead")
    return train_items, labelled_items(annotations, val_split, classes), note, val_split


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
    train_items, val_items, note, val_split = _validation_items(config, annotations, classes,
                                                                train_items)
    budget = masks = None
    if config.boxes_per_class is not None:
        check_box_source(config, annotations)
        check_record(config.out)
        budget = draw_budget(annotations, val_items, classes, config.boxes_per_class,
                             config.seed, config.data)
        masks = box_masks(annotations, budget.head, config.resize_size)
        val_items = budget.calibration
    size = config.input_size
    return TrainingData(
        classes,
        LabelledImages(annotations.root, train_items,
                       train_transform(size, config.resize_size)),
        LabelledImages(annotations.root, val_items, eval_transform(size)),
        note,
        annotations,
        budget,
        masks,
        val_split == "test",
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


def source_splits(data: str, images: str | None = None) -> list[str]:
    """The splits a training source has (what a preset's validation choice depends on)."""
    return list(read_source(data, image_root=images).splits)
