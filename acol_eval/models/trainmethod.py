"""Training methods: the base every WSOL training method subclasses, and their registry.

`train` runs one loop for every method (data, order, optimiser, schedule, checkpoints,
resume); what methods differ in is a hook of `TrainingMethod`, which a method overrides
only where it changes something:

- `prepare_batch`: the batch before the forward pass (Hide-and-Seek hides patches,
  CutMix mixes images and labels), with a generator seeded by (seed, epoch, batch), so
  the draws repeat whatever the worker count;
- `training_model`: modules inserted into the network for training only (ADL); the
  checkpoint stores the inference model, so they are absent at inference;
- `model` and `loss`: the heads and what trains them (ACoL's recipe of `p` and `n`
  classifiers);
- `hyperparameters` / `from_checkpoint`: what the checkpoint stores to rebuild the
  method (its name and these values, as `method` and `method_args`).

The base is itself a complete method, class activation mapping: one `p` head trained
with cross-entropy; it is not registered. `step` (forward, loss, backward, statistics)
is the base's and is shared by all.

A method registers itself where it is defined, with `@register_method("name")`. The
built-in ones live in this package (`acol_method.py`); one defined elsewhere is
registered by importing its module before calling `trainer.train` or
`localization.localize` (the command line knows the built-in ones only).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acol_eval.models.model import ACoL, ACoLOutput, build_model
from acol_eval.util.errors import AcolError


@dataclass
class Precision:
    """Mixed precision of a run: autocast on CUDA, a gradient scaler for float16."""

    use_amp: bool
    dtype: torch.dtype
    scaler: torch.amp.GradScaler


@dataclass
class EpochStats:
    """Sums over an epoch's images: each loss part and each head's correct predictions."""

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


@dataclass
class StepTools:
    """What one step works with: the network being trained (the training model, inside
    DistributedDataParallel under torchrun), its optimiser and the run's precision."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    precision: Precision
    device: torch.device
    channels_last: bool


class TrainingMethod:
    """Class activation mapping, and the hooks through which other methods differ.

    A subclass takes its hyperparameters as keyword arguments (plain values: numbers,
    strings, lists), returns them from `hyperparameters()`, and overrides the hooks it
    changes. `from_config` gives it `TrainConfig.method_args`.
    """

    name: ClassVar[str] = ""  # set by register_method
    # builds its network from --recipe, --delta, --head and --loss-weights; a method that
    # builds its own heads (fsl, ddt) refuses them rather than record what it did not use
    recipe_options: ClassVar[bool] = False

    def __init__(self, **method_args: Any) -> None:
        if method_args:
            raise AcolError(f"training method {self.name!r} takes no method_args "
                            f"(got {', '.join(sorted(method_args))})")

    # ----------------------------------------------------------------- building

    @classmethod
    def from_config(cls, config: Any) -> TrainingMethod:
        """The method a `TrainConfig` asks for."""
        return cls._create(dict(config.method_args))

    @classmethod
    def from_checkpoint(cls, checkpoint: Any) -> TrainingMethod:
        """The method a `Checkpoint` was trained with (its `method_args`)."""
        return cls._create(dict(checkpoint.method_args))

    @classmethod
    def _create(cls, method_args: dict[str, Any]) -> TrainingMethod:
        try:
            return cls(**method_args)
        except TypeError as exc:  # an unknown or missing keyword
            raise AcolError(f"training method {cls.name!r}: {exc}") from None

    def describe(self) -> str:
        """The method in the run's first log line."""
        return f"method {self.name}"

    def hyperparameters(self) -> dict[str, Any]:
        """What the checkpoint stores (`method_args`) to rebuild this method."""
        return {}

    def option_name(self, key: str) -> str:
        """How a user names hyperparameter `key` (`train`'s flag)."""
        return "--" + key.replace("_", "-")

    def model(self, arch: str, num_classes: int, feature_stride: int,
              backbone_state: dict[str, Tensor] | None = None) -> ACoL:
        """The network a checkpoint stores and localize runs (hook: the heads)."""
        return build_model(arch, num_classes, "p", (), "linear", feature_stride,
                           backbone_state)

    def training_model(self, model: ACoL) -> nn.Module:
        """The network trained (hook: modules present during training only). It must
        share `model`'s parameters: the optimiser and the checkpoint hold `model`'s."""
        return model

    # whether the method trains on box-labelled validation images (--boxes-per-class):
    # train draws them, and hands them over through `before_training`
    uses_boxes: ClassVar[bool] = False

    def before_training(self, model: ACoL, data: Any, config: Any,
                        log: Callable[[str], None]) -> None:
        """Once per run, before the first epoch (again on --resume, after last.pt is
        loaded): what a method needs from the run's data besides batches (the box images
        FSL trains on, the descriptors DDT fits). `data` is train's TrainingData."""

    def param_groups(self, model: ACoL, lr: float,
                     head_lr_mult: Sequence[float]) -> list[dict[str, Any]]:
        """Backbone at `lr`, every head at `lr * head_lr_mult[0]`."""
        return [{"params": list(model.backbone.parameters()), "lr": lr},
                {"params": list(model.heads.parameters()), "lr": lr * head_lr_mult[0]}]

    # ----------------------------------------------------------------- the step's hooks

    def prepare_batch(self, images: Tensor, labels: Tensor,
                      generator: torch.Generator) -> tuple[Tensor, Any]:
        """A training batch (already on the device) before the forward pass -> (images,
        targets for `loss`). Draw only from `generator` (a CPU generator: draw on the CPU,
        then move), never from torch's global RNG, so a run repeats bit for bit."""
        return images, labels

    def forward(self, net: nn.Module, images: Tensor, labels: Tensor) -> ACoLOutput:
        return net(images, labels)

    def loss(self, logits: list[Tensor], targets: Any) -> tuple[Tensor, list[Tensor]]:
        """(total, one part per head): cross-entropy of every head."""
        parts = [F.cross_entropy(z, targets) for z in logits]
        return sum(parts[1:], parts[0]), parts

    # ----------------------------------------------------------------- the step

    def step(self, tools: StepTools, images: Tensor, labels: Tensor, train: bool,
             stats: EpochStats, generator: torch.Generator | None = None) -> Tensor:
        """One batch forward (and backward when training); adds to `stats`. Accuracy is
        always against the true labels, whatever `prepare_batch` made the targets."""
        images = images.to(tools.device, non_blocking=True)
        labels = labels.to(tools.device, non_blocking=True)
        targets: Any = labels
        if train and generator is not None:
            images, targets = self.prepare_batch(images, labels, generator)
        if tools.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        precision = tools.precision
        with torch.autocast("cuda", dtype=precision.dtype, enabled=precision.use_amp):
            output = self.forward(tools.net, images, labels)
            logits = [z.float() for z in output.logits]
            total, parts = self.loss(logits, targets)
        if train:
            tools.optimizer.zero_grad(set_to_none=True)
            precision.scaler.scale(total).backward()
            precision.scaler.step(tools.optimizer)
            precision.scaler.update()
        n = labels.shape[0]
        stats.count += n
        for k, (part, z) in enumerate(zip(parts, logits)):
            stats.loss[k] += part.item() * n
            stats.correct[k] += (z.argmax(1) == labels).sum().item()
        return total


# --------------------------------------------------------------------------- registry

_METHODS: dict[str, type[TrainingMethod]] = {}
# modules of this package that register the built-in methods (imported on first lookup)
BUILTIN_MODULES = (".acol_method", ".has_method", ".cutmix_method", ".adl_method", ".fsl_method",
                   ".ddt_method")
_builtins_loaded = False


def register_method(name: str) -> Callable[[type[TrainingMethod]], type[TrainingMethod]]:
    """Class decorator: make a `TrainingMethod` subclass `train --method NAME`."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", name):
        raise ValueError(f"training method name {name!r}: lowercase letters, digits, - or _")

    def add(cls: type[TrainingMethod]) -> type[TrainingMethod]:
        if not (isinstance(cls, type) and issubclass(cls, TrainingMethod)):
            raise TypeError(f"{cls!r} is not a TrainingMethod")
        if not _is_builtin(cls):  # built-in ones first (a built-in module importing
            _load_builtins()  # another built-in one would import itself half-made)
        known = _METHODS.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (
                cls.__module__, cls.__qualname__):  # a module imported again may re-register
            raise ValueError(f"training method {name!r} is already registered "
                             f"({known.__module__}.{known.__qualname__})")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return add


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module, __package__)


def _is_builtin(cls: type) -> bool:
    return cls.__module__ in {f"{__package__}{module}" for module in BUILTIN_MODULES}


def list_methods() -> list[str]:
    """The names of the registered training methods, built-in ones first (in
    BUILTIN_MODULES' order, whichever was imported first)."""
    _load_builtins()
    builtin = [name for module in BUILTIN_MODULES for name, cls in _METHODS.items()
               if cls.__module__ == f"{__package__}{module}"]
    return builtin + [name for name in _METHODS if name not in builtin]


def get_method(name: str) -> type[TrainingMethod]:
    """The registered method class of `name`; an unknown name is an AcolError."""
    _load_builtins()
    found = _METHODS.get(name) if isinstance(name, str) else None
    if found is None:
        raise AcolError(f"training method {name!r} is not registered (known: "
                        f"{', '.join(_METHODS)}; a method defined outside acol-eval is "
                        f"registered by importing its module first)")
    return found


def method_args_plain(flag: str, values: Any) -> dict[str, Any]:
    """`method_args` as a dict of plain values (str keys; numbers, strings, booleans,
    None and lists of them), which a checkpoint can hold and JSON can compare."""
    if not isinstance(values, Mapping):
        raise AcolError(f"{flag} {values!r} is not a mapping of names to values")

    def plain(value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        raise AcolError(f"{flag}: {value!r} is not a number, string, boolean or list")

    if not all(isinstance(key, str) for key in values):
        raise AcolError(f"{flag}: names must be strings")
    return {key: plain(value) for key, value in values.items()}
