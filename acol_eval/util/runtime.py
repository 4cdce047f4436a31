"""Where and how a job runs: device, processes (torchrun ranks), worker counts, versions.

Every command reads `--device`, `--workers` and the torchrun environment through this
module, so each flag means the same in `train`, `localize`, `score` and `boxes`:
`--workers N` is the number of worker processes, 0 does the work in the main process,
and leaving it out picks `default_workers()`.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from acol_eval import __version__
from acol_eval.util.errors import AcolError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it: `score`, `boxes --workers 0` and
# `compare` read --workers through this module and must not pay torch's import (seconds)

MAX_WORKERS = 64  # more processes than this is a typo, not a machine
# --device: what every command accepts, and the help that says so
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d{1,3})?")
DEVICE_HELP = "auto, cpu, cuda or cuda:N."
# --bootstrap rounds of score and compare: compare keeps rounds x metrics x methods
# resampled figures in memory (a million rounds would be hundreds of MB), and the end
# points of a 95% percentile interval settle well below the reported decimals long
# before 100,000 rounds
MAX_BOOTSTRAP = 100_000
# the fewest rounds whose 2.5% and 97.5% percentiles each have 25 resamples beyond them:
# fewer give a "95%" interval whose ends are a handful of resamples (0: no interval)
MIN_BOOTSTRAP = 1000


def check_bootstrap(rounds: int) -> None:
    """--bootstrap of score and compare: 0 (no intervals) or MIN_BOOTSTRAP to MAX_BOOTSTRAP."""
    if not 0 <= rounds <= MAX_BOOTSTRAP:
        raise AcolError(f"--bootstrap {rounds} must be between 0 and {MAX_BOOTSTRAP}")
    if 0 < rounds < MIN_BOOTSTRAP:
        raise AcolError(f"--bootstrap {rounds} is too few rounds for a 95% interval: give "
                        f"at least {MIN_BOOTSTRAP} (or 0 for none)")
NUMBA_CACHE_VARIABLE = "NUMBA_CACHE_DIR"


def numba_cache_dir(environ: MutableMapping[str, str] = os.environ) -> Path:
    """Where the compiled score kernels are kept unless the user says otherwise: the
    user's cache folder ($XDG_CACHE_HOME, else ~/.cache) / acol-eval / numba. Not beside
    the package (numba's default), which is read-only in many installs."""
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG rule: a relative or empty value is ignored
        base = os.path.join(environ.get("HOME") or str(Path.home()), ".cache")
    return Path(base) / "acol-eval" / "numba"


def configure_numba_cache(environ: MutableMapping[str, str] = os.environ) -> str:
    """Point numba's cache at `numba_cache_dir()` unless NUMBA_CACHE_DIR is set already
    (the user's choice wins); the folder in use. Call it before numba is imported: numba
    reads the variable once, at import. Where the user's own code imported numba first,
    its configuration is left alone (numba then caches beside the package or, where that
    is read-only, in its own user cache folder). Worker processes inherit the variable."""
    if environ.get(NUMBA_CACHE_VARIABLE):
        return environ[NUMBA_CACHE_VARIABLE]
    if "numba" in sys.modules:
        return ""
    try:
        folder = str(numba_cache_dir(environ))
    except (KeyError, RuntimeError):  # no home folder at all: numba's own default
        return ""
    environ[NUMBA_CACHE_VARIABLE] = folder
    return folder


def default_workers() -> int:
    """Worker processes when not given: one core is left to the model's own threads
    (on 2 cores, a second decode worker made localize 3x slower by stealing them), at
    most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def resolve_workers(workers: int | None, default: int | None = None) -> int:
    """`--workers` as every command reads it: N -> N worker processes, 0 -> the work in
    the main process, None -> `default` (a command's own: `score` uses every core, since
    it has no model threads to leave one to) or default_workers(); negative or absurd
    counts are refused."""
    if workers is None:
        return default_workers() if default is None else default
    if isinstance(workers, bool) or not 0 <= workers <= MAX_WORKERS:
        raise AcolError(f"--workers {workers} must be between 0 and {MAX_WORKERS}")
    return workers


def ordered_map(function: Callable, tasks: Iterable, workers: int) -> Iterator:
    """function(task) for every task, results in order: in this process (workers 0) or on
    `workers` forked processes (compiled kernels and open map stores are inherited), with
    at most 2 * workers + 1 tasks in flight, so memory stays flat however many tasks."""
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    if workers <= 0:
        yield from map(function, tasks)
        return
    window = 2 * workers + 1
    pending: deque = deque()
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        for task in tasks:
            pending.append(pool.submit(function, task))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AcolError("--device cuda was asked for but CUDA is not available here")
    if name != "cpu" and not name.startswith("cuda"):
        raise AcolError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made a file: always acol-eval, numpy and Python;
    torch, torchvision and OpenCV when this process has loaded them (`score` and
    `boxes` never import torch, and recording it would cost them seconds)."""
    import sys

    import numpy as np

    versions = {"acol_eval": __version__, "numpy": str(np.__version__),
                "python": platform.python_version()}
    for name, module in (("torch", "torch"), ("torchvision", "torchvision"),
                         ("opencv", "cv2")):
        if module in sys.modules:
            # str(): TorchVersion would not load back with weights_only
            versions[name] = str(sys.modules[module].__version__)
    return versions


class Distributed:
    """World size, rank and helpers; a single process is a world of one."""

    def __init__(self, device_name: str) -> None:
        import torch
        import torch.distributed as dist

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
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def close(self) -> None:
        import torch.distributed as dist

        if self.active and dist.is_initialized():
            dist.destroy_process_group()
