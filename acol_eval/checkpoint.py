"""The acol-eval checkpoint file (SPEC 5): one `torch.save` dict, read with weights_only=True.

A checkpoint is untrusted input: it holds only tensors, numbers, strings,
lists and dicts, and any file that is not one of ours, truncated or of the
wrong shape becomes one clear `AcolError`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import AcolError
from .model import ACoL, build_model

FORMAT = "acol-eval-checkpoint"
VERSION = 1
REQUIRED = (
    "arch", "recipe", "deltas", "head", "feature_stride", "classes",
    "input_size", "mean", "std", "state_dict",
)


def plain(value: Any) -> Any:
    """Turn tuples, paths and other simple objects into what weights_only can read."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    return str(value)


def load_error_reason(exc: BaseException) -> str:
    """The informative line of a torch.load failure (its first line is boilerplate)."""
    text = str(exc).strip() or type(exc).__name__
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            return "it holds objects other than tensors and plain data: " + line.split(
                "WeightsUnpickler error:", 1)[1].strip().split(" was not")[0]
    return text.splitlines()[0]


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    descriptor, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_torch_file(path: str | Path, kind: str, failure: str) -> Any:
    """`torch.load(weights_only=True)` of an untrusted file; failures are one-line AcolErrors.

    `kind` names the file in the "does not exist" message; `failure` starts the
    message when the file cannot be read (the reason follows it).
    """
    path = Path(path)
    if not path.is_file():
        raise AcolError(f"{kind} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zips, pickles, random bytes...
        raise AcolError(f"{failure}: {load_error_reason(exc)}") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint; every failure is a one-line AcolError."""
    path = Path(path)
    payload = read_torch_file(
        path, "checkpoint",
        f"{path} is not a readable acol-eval checkpoint (truncated or another format)",
    )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AcolError(f"{path} is not an acol-eval checkpoint (no '{FORMAT}' format tag)")
    if int(payload.get("version", 0)) > VERSION:
        raise AcolError(
            f"{path} has checkpoint version {payload['version']}; this acol-eval reads "
            f"up to {VERSION}: upgrade acol-eval"
        )
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise AcolError(f"{path} lacks checkpoint fields: {', '.join(missing)}")
    head_weight = payload["state_dict"].get("heads.0.classifier.weight")
    if head_weight is None or head_weight.shape[0] != len(payload["classes"]):
        found = None if head_weight is None else head_weight.shape[0]
        raise AcolError(
            f"{path}: the model has {found} outputs but the checkpoint names "
            f"{len(payload['classes'])} classes"
        )
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> ACoL:
    """Rebuild the model a checkpoint describes and load its weights."""
    model = build_model(
        payload["arch"],
        len(payload["classes"]),
        payload["recipe"],
        payload["deltas"] or (),
        payload["head"],
        int(payload["feature_stride"]),
    )
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise AcolError(f"the checkpoint's weights do not fit its model: {first}") from None
    return model
