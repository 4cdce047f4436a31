"""What `acol-eval localize` is asked and the model it runs: `LocalizeConfig` (one field
per flag, every check on construction) and `load_model` (a checkpoint, its preprocessing
checked before any image is read, or a plain torchvision classifier of --arch) into a
`LoadedModel`. Split from localization.py so that the inputs a run refuses at start-up
read apart from the sweep that writes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from acol_eval.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from acol_eval.maps.thresholds import check_threshold
from acol_eval.models.backbones import FEATURE_STRIDES, imagenet_categories
from acol_eval.models.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from acol_eval.models.methods import MapMethod
from acol_eval.models.model import ACoL, plain_cam_model
from acol_eval.models.trainmethod import get_method
from acol_eval.models.weights import find_imagenet_file, resolve_weights
from acol_eval.util.errors import AcolError
from acol_eval.util.runtime import DEVICE_PATTERN, resolve_workers

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
         "sha256": _sha256(Path(path)), "training": trained_with(payload),
         **trained_epochs(payload)},
        payload.get("cam_threshold"), payload.get("cam_threshold_source"),
    )


def trained_epochs(payload: dict[str, Any]) -> dict[str, int]:
    """{'epoch': the epochs the weights had, 'epochs': the run's planned epochs}, where the
    checkpoint says (a plain state dict or an older file may not)."""
    found = {}
    for key, value in (("epoch", payload.get("epoch")),
                       ("epochs", (payload.get("args") or {}).get("epochs"))):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            found[key] = value
    return found


def epochs_note(description: dict[str, Any]) -> str | None:
    """A line when the weights are from before the run's last epoch: best.pt chosen
    early, or a run killed before it finished; None otherwise."""
    epoch, epochs = description.get("epoch"), description.get("epochs")
    if not epoch or not epochs or epoch >= epochs:
        return None
    return (f"note: the checkpoint holds epoch {epoch} of its run's {epochs} (best.pt is the "
            f"epoch of best validation accuracy, or the run stopped early: "
            f"train --resume finishes it)")


def trained_with(payload: dict[str, Any]) -> str:
    """The training method and its hyperparameters, as train's log line said them."""
    checkpoint = Checkpoint.from_payload(payload)
    return get_method(checkpoint.method).from_checkpoint(checkpoint).describe()


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
