"""`acol-eval train`'s options and their checks: `TrainConfig` (every default and every
check, in `__post_init__`), the enums of its choices (`Schedule`, `CacheMode`) and the
learning-rate factor a schedule gives, and the checks of the options against the run
folder (`check_out_folder`) and against the run a --resume continues
(`check_same_options`). Split from training.py so that what a run is asked, and what is
refused before anything runs, reads apart from the loop that runs it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from acol_eval.models.backbones import check_stride
from acol_eval.models.checkpoint import MAX_INPUT_SIZE, MIN_INPUT_SIZE, plain
from acol_eval.models.model import Head, check_recipe, expand_deltas
from acol_eval.models.trainmethod import TrainingMethod, get_method, method_args_plain
from acol_eval.util.errors import AcolError
from acol_eval.util.flags import changed_options
from acol_eval.util.runtime import DEVICE_PATTERN, resolve_workers

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
    recalibrate: bool = False  # --resume of a finished run: calibrate best.pt again
    val_fraction: float = 0.0  # > 0: hold out this stratified share of train for validation
    val_split: str | None = None  # a named split of the source as the validation split
    cache: CacheMode = CacheMode.AUTO
    # box-labelled validation images per class (a whole number, or "all") for methods
    # that train on boxes (fsl); drawn by train/boxbudget.py, None for the others
    boxes_per_class: int | str | None = None

    def __post_init__(self) -> None:
        self._check_names()
        self._check_model()
        self._check_optimiser()
        self._check_sizes()
        self._check_validation()
        self._check_boxes()
        self.training_method()  # a method's own checks of its arguments, before any output
        if self.recalibrate and not (self.resume and self.calibrate):
            raise AcolError("--recalibrate redoes the calibration of a finished run: give it "
                            "with --resume (and without --no-calibrate)")

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
        self._check_recipe_options(get_method(self.method))
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

    def _check_recipe_options(self, method: type[TrainingMethod]) -> None:
        """A method that builds its own heads trains recipe `p`: a --recipe, --delta, --head
        or --loss-weights of its own would be ignored, and the run would record it."""
        if method.recipe_options:
            return
        defaults = {f.name: f.default for f in fields(self)}
        ignored = [flag for flag, name, allowed in (
            ("--recipe", "recipe", (defaults["recipe"], "p")),
            ("--delta", "delta", (defaults["delta"],)),
            ("--head", "head", (Head.LINEAR, Head.LINEAR.value)),
            ("--loss-weights", "loss_weights", (None,)))
            if _plain_value(getattr(self, name)) not in [_plain_value(a) for a in allowed]]
        if ignored:
            raise AcolError(f"--method {self.method} builds its own heads (CAM's recipe p, "
                            f"a linear head): leave out {', '.join(ignored)}")
        self._set("recipe", "p")  # what it trains, as the checkpoint's args record it

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

    def _check_boxes(self) -> None:
        """--boxes-per-class: K >= 1 or 'all', given exactly to the methods that use boxes."""
        uses = get_method(self.method).uses_boxes
        value = self.boxes_per_class
        if value is None:
            if uses:
                raise AcolError(f"training method {self.method!r} trains on boxes: give "
                                f"--boxes-per-class K (box-labelled validation images per "
                                f"class) or all")
            return
        if not uses:
            raise AcolError(f"--boxes-per-class is for methods that train on boxes; "
                            f"{self.method!r} learns from image labels only")
        if isinstance(value, str) and value.strip().lower() == "all":
            self._set("boxes_per_class", "all")
        else:
            self._set("boxes_per_class", _count("--boxes-per-class", value, 1, 10**6))


def lr_factor(schedule: Schedule | str, epochs: int, steps: Sequence[int],
              gamma: float) -> Callable:
    schedule = _choice(Schedule, "--schedule", schedule)
    if schedule == Schedule.COSINE:
        return lambda e: 0.5 * (1 + math.cos(math.pi * e / max(epochs, 1)))
    if schedule == Schedule.STEP:
        return lambda e: gamma ** sum(e >= s for s in steps)
    return lambda e: 1.0


# --------------------------------------------------------------------------- the run folder


# options that may change between a run and its --resume: how and where it runs, not what
# it computes (the schedule, the data and the model must stay those of the killed run)
RESUME_FREE = {"resume", "workers", "device", "cache", "calibrate", "out", "amp",
               "channels_last", "recalibrate"}


def _plain_value(value: Any) -> Any:
    """An option's value as JSON would hold it (0.6, [0.6] and (0.6,) alike)."""
    value = getattr(value, "value", value)
    if isinstance(value, (list, tuple)):
        return [float(v) if isinstance(v, (int, float)) else v for v in value]
    return [float(value)] if isinstance(value, (int, float)) else value


def check_same_options(path: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    """Refuse a --resume whose options differ from the run's (changing --epochs would
    bend the cosine schedule mid-run; --input-size would mix two models). More epochs
    are fine under the step and constant schedules, whose rates ignore the length."""
    mine = json.loads(json.dumps(plain(asdict(config))))
    saved = json.loads(json.dumps(plain(saved or {})))
    # method_args as typed differ when a default is typed out; the trainer compares the
    # method's resolved hyperparameters instead (check_same_hyperparameters)
    free = set(RESUME_FREE) | {"method_args"}
    if not get_method(config.method).recipe_options:  # unused: a run of an older version
        free |= {"recipe", "delta", "head", "loss_weights"}  # may hold the defaults
    if config.schedule is not Schedule.COSINE:
        free.add("epochs")  # step and constant rates do not depend on the run's length
    differ = sorted(key for key in mine if key not in free and key in saved
                    and saved[key] != mine[key])
    if differ:
        shown = changed_options(saved, mine, differ)
        raise AcolError(f"--resume: {path} was trained with other options: {shown}; resume "
                        f"with the run's own options, or start a new --out")


def check_same_hyperparameters(path: Path, saved: Mapping[str, Any] | None,
                               method: TrainingMethod) -> None:
    """Refuse a --resume whose method hyperparameters differ from the run's, each as the
    method resolved it (defaults filled): typing out a default is the same run."""
    mine = json.loads(json.dumps(plain(method.hyperparameters())))
    theirs = json.loads(json.dumps(plain(dict(saved or {}))))
    differ = sorted(key for key in set(mine) | set(theirs) if mine.get(key) != theirs.get(key))
    if differ:
        shown = changed_options(theirs, mine, differ, name=method.option_name)
        raise AcolError(f"--resume: {path} was trained with other {method.name} settings: "
                        f"{shown}; resume with the run's own, or start a new --out")


def check_out_folder(config: TrainConfig) -> None:
    """Refuse to replace a run's files without --resume (reads only, writes nothing)."""
    from acol_eval.util import safeio

    out = Path(config.out)
    safeio.refuse_existing(out, RUN_FILES, config.resume, lambda found: (
        f"{out} already holds a training run ({', '.join(found)}); add --resume to continue "
        f"it or choose another --out"), label=f"--out {out}")
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
