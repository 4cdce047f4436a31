"""The base of training methods that compose with ACoL's recipe grammar: Hide-and-Seek,
CutMix and ADL change the training inputs or insert training-only layers, and leave the
network's heads to `--recipe` / `--delta` / `--head` / `--loss-weights` as ACoL does.
So `--method has --recipe p` is HaS-CAM (as wsolevaluation trains it) and `--method
has --recipe pp` is Hide-and-Seek over ACoL.

A subclass names its own hyperparameters in `DEFAULTS` (name -> default); `train`'s
flag `--METHOD-NAME` (dashes for underscores) sets `NAME`, and the checkpoint records
the values (with ACoL's own) in `method_args`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from acol_eval.models.acol_method import ACoLMethod
from acol_eval.models.model import DEFAULT_DELTA
from acol_eval.models.trainmethod import get_method, list_methods
from acol_eval.util.errors import AcolError


def check_fraction(flag: str, value: Any) -> float:
    """A probability in [0, 1], else an AcolError naming the flag."""
    number = _finite(flag, value)
    if not 0.0 <= number <= 1.0:
        raise AcolError(f"{flag} {value!r} must be a number in [0, 1]")
    return number


def check_positive(flag: str, value: Any) -> float:
    number = _finite(flag, value)
    if number <= 0:
        raise AcolError(f"{flag} {value!r} must be a number above 0")
    return number


def check_whole(flag: str, value: Any, low: int, high: int) -> int:
    number = _finite(flag, value)
    if isinstance(value, bool) or number != int(number) or not low <= number <= high:
        raise AcolError(f"{flag} {value!r} must be a whole number from {low} to {high}")
    return int(number)


def _finite(flag: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AcolError(f"{flag} {value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise AcolError(f"{flag} {value!r} is not a finite number")
    return number


def flag_of(method: str, name: str) -> str:
    """`train`'s flag for hyperparameter `name` of `method` (has, grid -> --has-grid)."""
    return f"--{method}-{name}".replace("_", "-")


class RecipeMethod(ACoLMethod):
    """An ACoL recipe trained with a method's own hyperparameters (`DEFAULTS`)."""

    DEFAULTS: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, recipe: str = "pp", deltas: float | Sequence[float] = DEFAULT_DELTA,
                 head: str = "linear", loss_weights: Sequence[float] | None = None,
                 arch: str | None = None, **own: Any) -> None:
        super().__init__(recipe, deltas, head, loss_weights)
        self.arch = arch
        unknown = sorted(set(own) - set(self.DEFAULTS))
        if unknown:
            raise AcolError(f"training method {self.name!r} has no hyperparameter "
                            f"{', '.join(map(repr, unknown))} (it has "
                            f"{', '.join(self.DEFAULTS)})")
        self.own = self.check({**self.DEFAULTS, **own}, arch)

    def check(self, values: dict[str, Any], arch: str | None) -> dict[str, Any]:
        """The hyperparameters checked and made plain (hook; AcolError when bad).
        `arch` is the backbone, None when a checkpoint is being read."""
        return values

    def flag(self, name: str) -> str:
        return flag_of(self.name, name)

    def option_name(self, key: str) -> str:
        return self.flag(key) if key in self.DEFAULTS else super().option_name(key)

    @classmethod
    def from_config(cls, config: Any) -> RecipeMethod:
        return cls(config.recipe, config.delta, config.head, config.loss_weights,
                   arch=config.arch, **dict(config.method_args))

    @classmethod
    def from_checkpoint(cls, checkpoint: Any) -> RecipeMethod:
        args = dict(checkpoint.method_args or {})
        own = {key: args[key] for key in cls.DEFAULTS if key in args}
        return cls(checkpoint.recipe, checkpoint.deltas or (), checkpoint.head,
                   args.get("loss_weights"), arch=checkpoint.arch, **own)

    def describe(self) -> str:
        values = ", ".join(f"{self.flag(k)} {_shown(v)}" for k, v in self.own.items())
        return f"method {self.name} ({values}), recipe {self.recipe}"

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), **self.own}


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else f"{value:g}" \
        if isinstance(value, float) else str(value)


def pop_method_flags(options: dict[str, Any]) -> dict[str, Any]:
    """Take `train`'s method flags (has_grid, ... : the options named METHOD_NAME of a
    registered RecipeMethod) out of `options`; None where not given."""
    owned = {f"{m}_{name}".replace("-", "_") for m in list_methods()
             for name in getattr(get_method(m), "DEFAULTS", {})}
    return {key: options.pop(key) for key in list(options) if key in owned}


def method_args_of(method: str, flags: dict[str, Any]) -> dict[str, Any]:
    """`method_args` from the flags given (not None): each must be `method`'s own."""
    args = {}
    for key, value in flags.items():
        if value is None:
            continue
        owner = next(m for m in sorted(_owners(), key=len, reverse=True)
                     if key.startswith(m.replace("-", "_") + "_"))
        name = key[len(owner) + 1:]
        if owner != method:
            raise AcolError(f"{flag_of(owner, name)} is an option of --method {owner}, "
                            f"not of --method {method}")
        args[name] = value
    return args


def _owners() -> list[str]:
    return [m for m in list_methods() if getattr(get_method(m), "DEFAULTS", None)]
