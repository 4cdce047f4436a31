"""The map store of a localize run: low-resolution fused CAMs, float16, numpy-readable.

Layout (RUN/):
    maps.json        {"format": "acol-eval-maps", "version": 1, "dtype": "float16",
                      "height": h, "width": w, "count": N, "classes": [...]}
    maps.f16         N maps of h x w, raw little-endian float16, back to back
    maps_index.csv   row,image,class_id,class_name,pred_rank,is_label (one line per map)

Reading one map needs numpy alone:
    meta = json.load(open(RUN / "maps.json"))
    maps = np.memmap(RUN / "maps.f16", dtype="<f2", mode="r",
                     shape=(meta["count"], meta["height"], meta["width"]))
    cam = maps[row]   # row from maps_index.csv
The raw file is appendable (a run streams maps into it) and memory-mappable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.util.csvtext import csv_writer, unescape_frame
from acol_eval.util.errors import AcolError

MAPS_FORMAT = "acol-eval-maps"
MAPS_VERSION = 1
MAP_DTYPE = np.dtype("<f2")
INDEX_COLUMNS = ["row", "image", "class_id", "class_name", "pred_rank", "is_label"]


@dataclass
class MapStore:
    maps: np.ndarray  # (N, h, w) float16 memmap
    index: pd.DataFrame
    classes: list[str]


def maps_meta(height: int, width: int, count: int, classes: list[str]) -> dict:
    return {"format": MAPS_FORMAT, "version": MAPS_VERSION, "dtype": "float16",
            "height": int(height), "width": int(width), "count": int(count),
            "classes": list(classes)}


PARTIAL = ".partial"  # a localize run's shards until the merge writes the map store


def check_finished(run: str | Path) -> None:
    """Refuse a localize run that was stopped before its merge (its shards are still in
    RUN/.partial and there is no map store yet), saying how to finish it."""
    run = Path(run)
    if (run / PARTIAL).is_dir() and not (run / "maps.json").exists():
        raise AcolError(f"{run} is an unfinished localize run (its work is in {run / PARTIAL}):"
                        f" rerun the same localize command to finish it, then use it")


def open_map_array(run: str | Path) -> tuple[np.ndarray, list[str]]:
    """RUN's maps as a read-only (count, h, w) float16 memmap and the class names, after
    checking that maps.json is an acol-eval map store and maps.f16 holds exactly what it
    says (each failure one AcolError line). For readers that stream the index
    themselves (`boxes`); `open_maps` adds the index."""
    run = Path(run)
    check_finished(run)
    try:
        meta = json.loads((run / "maps.json").read_text())
    except (OSError, ValueError) as exc:
        raise AcolError(f"{run} has no readable maps.json: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != MAPS_FORMAT:
        raise AcolError(f"{run / 'maps.json'} is not an acol-eval map store")
    try:
        shape = (int(meta["count"]), int(meta["height"]), int(meta["width"]))
        classes = [str(c) for c in meta.get("classes", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise AcolError(f"{run / 'maps.json'} lacks a valid count, height or width "
                        f"({exc!r})") from None
    if min(shape) < 0 or (shape[0] and min(shape[1:]) <= 0):
        raise AcolError(f"{run / 'maps.json'} has an impossible shape {shape}")
    expected = shape[0] * shape[1] * shape[2] * MAP_DTYPE.itemsize
    size = (run / "maps.f16").stat().st_size if (run / "maps.f16").is_file() else -1
    if size != expected:
        raise AcolError(f"{run / 'maps.f16'} holds {max(size, 0)} bytes, maps.json says "
                        f"{expected}: the map store is incomplete; localize RUN again")
    maps = (np.memmap(run / "maps.f16", dtype=MAP_DTYPE, mode="r", shape=shape)
            if shape[0] else np.zeros(shape, MAP_DTYPE))
    return maps, classes


def open_maps(run: str | Path) -> MapStore:
    """Memory-map the maps of a finished localize run, after checking that maps.json,
    maps.f16 and maps_index.csv agree (each failure one AcolError line)."""
    run = Path(run)
    maps, classes = open_map_array(run)
    shape = maps.shape
    try:
        index = unescape_frame(pd.read_csv(run / "maps_index.csv", keep_default_na=False,
                                           dtype={"image": str, "class_name": str}))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise AcolError(f"{run / 'maps_index.csv'} is missing or not readable "
                        f"({getattr(exc, 'strerror', None) or exc})") from None
    missing = [c for c in ("row", "image", "pred_rank", "is_label") if c not in index]
    if missing:
        raise AcolError(f"{run / 'maps_index.csv'} lacks columns {', '.join(missing)}")
    rows = pd.to_numeric(index["row"], errors="coerce")
    if len(index) and not (rows.notna().all() and rows.between(0, shape[0] - 1).all()):
        raise AcolError(f"{run / 'maps_index.csv'} has rows outside maps.f16 "
                        f"(0..{shape[0] - 1})")
    return MapStore(maps, index, classes)


# --------------------------------------------------------------------------- writing


class MapStoreWriter:
    """Writes a run's map store: maps.f16 and maps_index.csv stream in, maps.json last.

        with MapStoreWriter(run, height, width) as store:
            store.add(image, class_id, class_name, pred_rank, is_label, cam)
            ...
            store.finish(classes)

    Both data files are written under temporary names and renamed only by `finish`, so
    a reader never sees a store whose maps.json disagrees with its maps: an interrupted
    writer leaves the previous files (or none) in place.
    """

    def __init__(self, run: str | Path, height: int, width: int) -> None:
        import contextlib

        from acol_eval.util.safeio import atomic_open

        self.run = Path(run)
        self.height, self.width = int(height), int(width)
        self.count = 0
        self._stack = contextlib.ExitStack()
        self._maps = self._stack.enter_context(atomic_open(self.run / "maps.f16", "wb"))
        self._index = self._stack.enter_context(
            atomic_open(self.run / "maps_index.csv", "w", newline=""))
        self._rows = csv_writer(self._index, lineterminator="\n")
        self._rows.writerow(INDEX_COLUMNS)
        self._finished = False

    def add(self, image: str, class_id: int, class_name: str, pred_rank: int, is_label: int,
            cam: np.ndarray) -> None:
        """One low-resolution map (height x width) of `image` for one class; `pred_rank`
        is its rank among the predictions (0: the label's map, not predicted)."""
        cam = np.ascontiguousarray(cam, MAP_DTYPE)
        if cam.shape != (self.height, self.width):
            raise ValueError(f"map of shape {cam.shape}, store of {self.height}x{self.width}")
        self._maps.write(cam.tobytes())
        self._rows.writerow([self.count, image, class_id, class_name, pred_rank, is_label])
        self.count += 1

    def finish(self, classes: list[str], extra: dict | None = None) -> int:
        """Rename maps.f16 and maps_index.csv into place, then write maps.json (with the
        `extra` fields: the method and layer that made the maps); the count."""
        from acol_eval.util.safeio import atomic_write_text

        self._finished = True
        self._stack.close()
        atomic_write_text(self.run / "maps.json",
                          json.dumps({**maps_meta(self.height, self.width, self.count,
                                                  classes), **(extra or {})}, indent=1))
        return self.count

    def __enter__(self) -> MapStoreWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if not self._finished:
            # leave no half store behind: the temporary files are dropped, not renamed
            self._stack.__exit__(exc_type or RuntimeError,
                                 exc or RuntimeError("unfinished map store"), traceback)
