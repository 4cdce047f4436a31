"""What a training run records besides its weights, and what it says: one row of
metrics.csv per epoch (`epoch_metrics`, `write_metrics`, `read_metrics` for a resume),
the log line of an epoch (`epoch_line`), and what decides a run's numbers beyond its
seed (`determinism`, kept in each checkpoint) with the notes a --resume prints where its
process differs (`determinism_notes`). Split from training.py so that the run's record
reads apart from the loop that fills it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from acol_eval.models.trainmethod import EpochStats
from acol_eval.report.curveplot import TRAINING_CURVES_FILE
from acol_eval.util.csvtext import dict_writer, text
from acol_eval.util.errors import AcolError
from acol_eval.util.safeio import atomic_open

# metrics.csv's column of each epoch's validation localisation (runs that calibrate),
# the folder its localize and score work in, and the plot of metrics.csv
VAL_LOC_COLUMN = "val_max_box_acc_v2"
VAL_LOC_FOLDER = "validation"
CURVES_FILE = TRAINING_CURVES_FILE

# The scheme by which training's random draws derive from --seed (data.draw_seed):
# recorded in checkpoints, so a run made under another scheme is known for what it is.
DRAW_SCHEME = "seed-epoch-index/1"


def determinism(device: torch.device) -> dict[str, Any]:
    """What decides a run's numbers beyond its seed, arguments and library versions.

    Training leaves torch's flags as it finds them (deterministic algorithms off, cuDNN
    benchmark off, the default thread count): on CPU, one machine and thread count give
    the same model bit for bit; on CUDA, atomic adds in some backward kernels may round
    differently from run to run unless deterministic algorithms are switched on.
    """
    found = {
        "draws": DRAW_SCHEME,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "intra_op_threads": torch.get_num_threads(),
        "device": device.type,
    }
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
    return found


def determinism_notes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Lines for a --resume whose process differs from the run's in what can change the
    numbers (a thread count, a device): the run continues, but not bit for bit."""
    notes = []
    if saved.get("draws") != now["draws"]:
        notes.append(f"note: last.pt was trained under random-draw scheme "
                     f"{saved.get('draws', 'of a version before ' + now['draws'])}: the "
                     f"resumed epochs crop and flip otherwise than that run would have")
    for key, what in (("intra_op_threads", "thread count"),
                      ("device", "device"), ("gpu", "GPU"),
                      ("deterministic_algorithms", "deterministic-algorithms flag"),
                      ("cudnn_deterministic", "cuDNN deterministic flag"),
                      ("cudnn_benchmark", "cuDNN benchmark flag")):
        if saved.get(key, now.get(key)) != now.get(key):
            notes.append(f"note: last.pt was trained with {what} {saved.get(key)}, this "
                         f"process has {now.get(key)}: the resumed epochs may round "
                         f"differently from an uninterrupted run")
    return notes


def epoch_metrics(epoch: int, lr: float, train: EpochStats, val: EpochStats,
                  seconds: float, recipe: str) -> dict[str, Any]:
    """One row of metrics.csv (epoch counted from 1; images_per_s of training only)."""
    metrics: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **train.row("train", recipe)}
    if val.count:
        metrics.update(val.row("val", recipe))
    metrics.update({
        "images_per_s": train.count / max(seconds, 1e-9),
        "skipped_images": train.skipped + val.skipped,
        "seconds": seconds,
    })
    return metrics


def epoch_line(metrics: dict[str, Any], epochs: int, has_val: bool) -> str:
    """The log line of one epoch."""
    skipped = int(metrics["skipped_images"])
    return (
        f"epoch {metrics['epoch']}/{epochs}: loss {metrics['train_loss']:.4f} "
        f"train acc {metrics['train_acc_1p']:.1f}% "
        + (f"val acc {metrics['val_acc_1p']:.1f}% " if has_val else "")
        + (f"val MaxBoxAccV2 {metrics[VAL_LOC_COLUMN]:.1f}% " if VAL_LOC_COLUMN in metrics
           else "")
        + f"lr {metrics['lr']:.3g} {metrics['images_per_s']:.1f} img/s"
        + (f" skipped {skipped} unreadable image(s)" if skipped else "")
    )


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w", newline="") as handle:
        # every row's columns (a resumed run may add the localisation column)
        writer = dict_writer(handle, fieldnames=list(dict.fromkeys(
            key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)


def read_metrics(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    """metrics.csv rows up to an epoch (a resumed run continues the file)."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as handle:
            return [{k: text(v) for k, v in row.items()} for row in csv.DictReader(handle)
                    if int(row["epoch"]) <= up_to_epoch]
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, csv.Error):
        raise AcolError(f"--resume: {path} is not a metrics.csv of acol-eval") from None
