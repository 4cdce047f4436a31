"""The acol-eval checkpoint file: one `torch.save` dict, read with weights_only=True.

`Checkpoint` is the one owner of the format: training builds one and saves it,
`localize` and `--resume` load one, and nobody else spells the dict by hand.
The file is a plain dict (format tag, version, the fields listed below), so version-1
files written before this class existed load unchanged.

A checkpoint is untrusted input: it holds only tensors, numbers, strings,
lists and dicts, and any file that is not one of ours, truncated, of the wrong
shape or with values no model could have (an input size of 0, a NaN std)
becomes one clear `AcolError`. No message ever passes on torch's advice to
retry with weights_only=False.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from acol_eval.models.backbones import check_stride
from acol_eval.models.model import HEADS, ACoL, check_recipe, expand_deltas
from acol_eval.models.trainmethod import get_method, method_args_plain
from acol_eval.util.errors import AcolError
from acol_eval.util.safeio import atomic_open

FORMAT = "acol-eval-checkpoint"
VERSION = 1
REQUIRED = (
    "arch", "recipe", "deltas", "head", "feature_stride", "classes",
    "input_size", "mean", "std", "state_dict",
)
# The side of the square model input. Below 32 a stride-32 backbone has no map left;
# above 2048 one batch of 32 images is over 1.6 GB before the network runs.
MIN_INPUT_SIZE = 32
MAX_INPUT_SIZE = 2048
MAX_CLASSES = 100_000
GENERIC_PICKLE_REASON = "it holds objects other than tensors and plain data"


def plain(value: Any) -> Any:
    """Turn tuples, enums, paths and other simple objects into what weights_only can read."""
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, torch.Tensor):
        return value
    for kind in (bool, int, float, str):  # exact types: a str subclass would be pickled
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def load_error_reason(exc: BaseException) -> str:
    """Why torch.load refused a file, in one line that never repeats torch's advice.

    torch's weights_only messages say how to load the file anyway (retry with
    weights_only=False, allow-list the class): advice that runs an attacker's
    code. Only the name of the refused object or opcode is kept.
    """
    text = str(exc).strip() or type(exc).__name__
    found = re.search(r"GLOBAL\s+([\w.]+)", text)
    if found:
        return f"{GENERIC_PICKLE_REASON} ({found.group(1)})"
    found = re.search(r"Unsupported operand\s+(\d+)", text)
    if found:
        return f"{GENERIC_PICKLE_REASON} (pickle opcode {found.group(1)})"
    if "weights only" in text.lower() or "weights_only" in text or "pickle" in text.lower():
        return GENERIC_PICKLE_REASON
    return text.splitlines()[0]


def read_torch_file(path: str | Path, kind: str, failure: str) -> Any:
    """`torch.load(weights_only=True)` of an untrusted file; failures are one-line AcolErrors.

    `kind` names the file in the "does not exist" message; `failure` starts the
    message when the file cannot be read (the reason follows it).
    """
    path = Path(path)
    if path.is_dir():
        hint = next((f"; did you mean {path / n}?" for n in ("best.pt", "last.pt")
                     if (path / n).is_file()), "")
        raise AcolError(f"{kind} {path} is a folder, not a file{hint}")
    if not path.is_file():
        raise AcolError(f"{kind} {path} does not exist")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": not one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zips, pickles, random bytes...
        raise AcolError(f"{failure}: {load_error_reason(exc)}") from None


def _finite_triple(path: Path, name: str, value: Any, positive: bool) -> tuple[float, ...]:
    try:
        triple = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        triple = ()
    bad = len(triple) != 3 or not all(math.isfinite(v) for v in triple)
    if bad or (positive and min(triple) <= 0):
        raise AcolError(f"{path}: {name} {value!r} is not three finite numbers"
                        + (" above 0" if positive else ""))
    return triple


def _check_input_size(path: Path, value: Any) -> int:
    if (isinstance(value, bool) or not isinstance(value, int)
            or not MIN_INPUT_SIZE <= value <= MAX_INPUT_SIZE):
        raise AcolError(f"{path}: input_size {value!r} is not a size between "
                        f"{MIN_INPUT_SIZE} and {MAX_INPUT_SIZE}")
    return value


def _check_classes(path: Path, value: Any) -> tuple[str, ...]:
    if (not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_CLASSES
            or not all(isinstance(name, str) for name in value)):
        raise AcolError(f"{path}: classes must be a list of 1 to {MAX_CLASSES} names")
    if len(set(value)) != len(value):
        raise AcolError(f"{path}: classes name one class twice")
    return tuple(value)


def _check_model_fields(path: Path, payload: dict[str, Any]) -> None:
    """arch, recipe, deltas, head and stride as a model can be built from them."""
    for key in ("arch", "recipe", "head"):
        if not isinstance(payload[key], str):
            raise AcolError(f"{path}: {key} {payload[key]!r} is not a name")
    if payload["head"] not in HEADS:
        raise AcolError(f"{path}: head {payload['head']!r} is not one of {', '.join(HEADS)}")
    stride = payload["feature_stride"]
    if isinstance(stride, bool) or not isinstance(stride, int):
        raise AcolError(f"{path}: feature_stride {stride!r} is not a number")
    deltas = payload["deltas"] or ()
    if not isinstance(deltas, (list, tuple)) or not all(
            isinstance(d, (int, float)) and not isinstance(d, bool) for d in deltas):
        raise AcolError(f"{path}: deltas {payload['deltas']!r} is not a list of numbers")
    try:
        check_recipe(payload["recipe"])
        expand_deltas(list(deltas), payload["recipe"])
        check_stride(payload["arch"], stride)
    except AcolError as exc:
        raise AcolError(f"{path}: {exc}") from None


def _check_state_dict(path: Path, state: Any, classes: int) -> None:
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise AcolError(f"{path}: state_dict is not a dict of tensors")
    head_weight = state.get("heads.0.classifier.weight")
    if head_weight is None or head_weight.shape[0] != classes:
        found = None if head_weight is None else head_weight.shape[0]
        raise AcolError(
            f"{path}: the model has {found} outputs but the checkpoint names "
            f"{classes} classes"
        )


def _check_header(path: Path, payload: Any) -> None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AcolError(f"{path} is not an acol-eval checkpoint (no '{FORMAT}' format tag)")
    version = payload.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise AcolError(f"{path}: checkpoint version {version!r} is not a number")
    if version > VERSION:
        raise AcolError(
            f"{path} has checkpoint version {version}; this acol-eval reads "
            f"up to {VERSION}: upgrade acol-eval"
        )
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise AcolError(f"{path} lacks checkpoint fields: {', '.join(missing)}")


def _check_method(path: Path, extra: dict[str, Any]) -> None:
    """`method` a name and `method_args` plain data (whether the method is registered is
    asked only when the model is rebuilt: reading the record needs no method)."""
    method = extra.setdefault("method", "acol")
    if not isinstance(method, str) or not method:
        raise AcolError(f"{path}: method {method!r} is not a name")
    try:
        extra["method_args"] = method_args_plain("method_args", extra.get("method_args") or {})
    except AcolError as exc:
        raise AcolError(f"{path}: {exc}") from None


# written only when set: a file read and saved again keeps the fields it had
OPTIONAL_FIELDS = ("cam_threshold", "cam_threshold_source", "determinism")
METHOD_FIELDS = ("method", "method_args")


@dataclass(frozen=True)
class Checkpoint:
    """Everything one checkpoint file holds; `payload()` is the file's dict.

    The model fields describe the network `model()` rebuilds; the rest records the
    run (epoch, metrics, arguments, versions, determinism flags) and, for `--resume`, the optimiser,
    scheduler, gradient scaler and RNG state.
    """

    arch: str
    recipe: str
    deltas: tuple[float, ...]
    head: str
    feature_stride: int
    classes: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    state_dict: dict[str, torch.Tensor]
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    best_accuracy: float = -1.0
    args: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] | None = None
    world_size: int = 1
    # what else decides a run's numbers besides seed, arguments and versions: the
    # deterministic-algorithm and cuDNN flags, the intra-op thread count (float sums
    # are split across threads), the device, the random-draw scheme (trainlog.determinism)
    determinism: dict[str, Any] = field(default_factory=dict)
    # the CAM threshold `train` calibrated on its validation boxes (None: uncalibrated,
    # as in checkpoints from before calibration) and where it came from
    cam_threshold: float | None = None
    cam_threshold_source: str | None = None
    # the training method (trainmethod registry) and its hyperparameters, which rebuild
    # the network; a file without them (written before methods were registered) is ACoL's
    method: str = "acol"
    method_args: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The dict written to disk: format tag, version, then every field as plain data."""
        out: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in OPTIONAL_FIELDS and value in (None, {}):
                continue  # unset: the file is exactly what older versions wrote
            if item.name in METHOD_FIELDS and self.method == "acol" and not self.method_args:
                continue  # as a file without them reads: written back as it was
            if item.name in ("state_dict", "optimizer", "scheduler", "scaler", "rng"):
                out[item.name] = value  # tensors inside: weights_only reads them as they are
            else:
                out[item.name] = plain(value)
        return out

    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file in the same folder, fsync, then rename."""
        with atomic_open(path, "wb") as handle:
            torch.save(self.payload(), handle)

    @classmethod
    def from_payload(cls, payload: Any, path: str | Path = "checkpoint") -> Checkpoint:
        """Check a loaded dict field by field; every failure is a one-line AcolError."""
        path = Path(path)
        _check_header(path, payload)
        _check_model_fields(path, payload)
        classes = _check_classes(path, payload["classes"])
        _check_state_dict(path, payload["state_dict"], len(classes))
        epoch = payload.get("epoch", 0)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise AcolError(f"{path}: epoch {epoch!r} is not a count")
        known = {item.name for item in fields(cls)}
        extra = {k: v for k, v in payload.items() if k in known and k not in REQUIRED}
        _check_method(path, extra)
        return cls(
            arch=payload["arch"], recipe=payload["recipe"],
            deltas=tuple(float(d) for d in payload["deltas"] or ()), head=payload["head"],
            feature_stride=payload["feature_stride"], classes=classes,
            input_size=_check_input_size(path, payload["input_size"]),
            mean=_finite_triple(path, "mean", payload["mean"], positive=False),
            std=_finite_triple(path, "std", payload["std"], positive=True),
            state_dict=payload["state_dict"], **{**extra, "epoch": epoch},
        )

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        path = Path(path)
        payload = read_torch_file(
            path, "checkpoint",
            f"{path} is not a readable acol-eval checkpoint (truncated or another format)",
        )
        return cls.from_payload(payload, path)

    def model(self) -> ACoL:
        """Rebuild the model this checkpoint describes (its training method builds it)
        and load its weights."""
        method = get_method(self.method).from_checkpoint(self)
        model = method.model(self.arch, len(self.classes), self.feature_stride)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise AcolError(f"the checkpoint's weights do not fit its model: {first}") from None
        return model


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Save a dict of Checkpoint fields (tests and benchmarks build them by hand)."""
    known = {item.name for item in fields(Checkpoint)}
    unknown = sorted(set(payload) - known - {"format", "version"})
    if unknown:
        raise ValueError(f"not checkpoint fields: {', '.join(unknown)}")
    values = {k: v for k, v in payload.items() if k in known}
    for key in ("deltas", "classes", "mean", "std"):
        values[key] = tuple(values[key])
    Checkpoint(**values).save(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint into its plain dict; every failure is a one-line AcolError."""
    return Checkpoint.load(path).payload()


def model_from_checkpoint(payload: dict[str, Any]) -> ACoL:
    """Rebuild the model a checkpoint dict describes and load its weights."""
    return Checkpoint.from_payload(payload).model()
