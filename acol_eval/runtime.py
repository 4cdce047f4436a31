"""Where and how a job runs: device, processes (torchrun ranks), worker counts, versions.

Every command reads `--device`, `--workers` and the torchrun environment through this
module, so each flag means the same in `train`, `localize`, `score` and `boxes`:
`--workers N` is the number of worker processes, 0 does the work in the main process,
and leaving it out picks `default_workers()`.
"""

from __future__ import annotations

import os
import platform

import numpy as np
import torch
import torch.distributed as dist
import torchvision

from . import __version__
from .errors import AcolError

MAX_WORKERS = 64  # more processes than this is a typo, not a machine


def default_workers() -> int:
    """Worker processes when not given: one core is left to the model's own threads
    (on 2 cores, a second decode worker made localize 3x slower by stealing them), at
    most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def resolve_workers(workers: int | None) -> int:
    """`--workers` as every command reads it: None -> default_workers(), 0 -> the main
    process, N -> N processes; negative or absurd counts are refused."""
    if workers is None:
        return default_workers()
    if not 0 <= workers <= MAX_WORKERS:
        raise AcolError(f"--workers {workers} must be between 0 and {MAX_WORKERS}")
    return workers


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AcolError("--device cuda was asked for but CUDA is not available here")
    if name != "cpu" and not name.startswith("cuda"):
        raise AcolError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def library_versions() -> dict[str, str]:
    return {
        "acol_eval": __version__,
        "torch": str(torch.__version__),  # TorchVersion would not load with weights_only
        "torchvision": str(torchvision.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }


class Distributed:
    """World size, rank and helpers; a single process is a world of one."""

    def __init__(self, device_name: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.active = self.world > 1
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.active and not dist.is_initialized():
            use_cuda = device_name != "cpu" and torch.cuda.is_available()
            if use_cuda:
                torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl" if use_cuda else "gloo")
        self.rank = dist.get_rank() if self.active else 0
        device = pick_device(device_name)
        if device.type == "cuda" and self.active:
            device = torch.device("cuda", local_rank)
        self.device = device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
