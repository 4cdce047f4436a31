"""The unfinished state of a localize run: RUN/.partial/, resumable after a kill.

    RUN/.partial/record.json          what the run sweeps: arguments, the model's
                                      SHA-256, the listed images' fingerprint
    RUN/.partial/map_shape.json       [h, w] of the maps, from the first batch
    RUN/.partial/rank<r>/             each process's (rank's) append-only files and
                                      progress.json (images done, the byte length of
                                      every file at that point)

A killed run rerun with the same command truncates each rank's files to its last
progress record and goes on; at the end rank 0 merges the ranks' files in image
order into the run folder (the map store through `mapstore.MapStoreWriter`), so a
resumed or sharded run ends with the same files as one uninterrupted process.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acol_eval.maps.mapstore import MAP_DTYPE, PARTIAL, MapStoreWriter
from acol_eval.util import safeio
from acol_eval.util.csvtext import csv_writer
from acol_eval.util.errors import AcolError
from acol_eval.util.flags import changed_options, option_flag
from acol_eval.util.safeio import atomic_open, atomic_write_text

RECORD = "record.json"
BOX_FIELDS = ["x0", "y0", "x1", "y1"]


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class RunRecord:
    """What must be the same for a rerun to continue an unfinished run."""

    arguments: dict[str, Any]
    model_sha256: str | None
    images_sha256: str

    def as_json(self) -> dict[str, Any]:
        return json.loads(json.dumps({"arguments": self.arguments,
                                      "model_sha256": self.model_sha256,
                                      "images_sha256": self.images_sha256}))


def _argument_name(key: str) -> str:
    """A recorded argument as the user knows it: resolved_* keys hold what the options
    resolved to (the CAM threshold), not a flag."""
    if key.startswith("resolved_"):
        return key.removeprefix("resolved_").replace("_", " ")
    return option_flag(key)


def _mismatch(previous: Any, record: RunRecord) -> str | None:
    """Why `previous` (a record.json read back) cannot be continued by `record`."""
    current = record.as_json()
    if not isinstance(previous, dict) or not isinstance(previous.get("arguments"), dict):
        return "an unfinished run whose record cannot be read"
    if previous["arguments"] != current["arguments"]:
        before, now = previous["arguments"], current["arguments"]
        keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        return ("an unfinished run with other arguments ("
                + changed_options(before, now, keys, name=_argument_name) + ")")
    if previous.get("model_sha256") != current["model_sha256"]:
        return "an unfinished run of another model (the checkpoint or weights file changed)"
    if previous.get("images_sha256") != current["images_sha256"]:
        return "an unfinished run over other images (files were added, removed or changed)"
    return None


def prepare_run_folder(out: Path, record: RunRecord) -> bool:
    """Check OUT for a previous run and record this one; True when it is resumed.
    Call it holding OUT's FolderLock, after every input was validated."""
    partial = out / PARTIAL
    safeio.refuse_existing(out, ["run.json"], partial.exists(), lambda found: (
        f"{out} already holds a finished run; choose another --out"))
    if partial.exists():
        try:
            previous = json.loads((partial / RECORD).read_text())
        except (OSError, ValueError):
            previous = None
        reason = _mismatch(previous, record)
        if reason:
            raise AcolError(f"{out} holds {reason}; rerun that command to finish it, or "
                            "choose another --out")
        return True
    partial.mkdir(parents=True)
    atomic_write_text(partial / RECORD, json.dumps(record.as_json(), indent=1))
    return False


def record_map_shape(partial: Path, shape: tuple[int, int]) -> None:
    shape_file = partial / "map_shape.json"
    if not shape_file.exists():
        atomic_write_text(shape_file, json.dumps([int(v) for v in shape]))


def read_map_shape(partial: Path) -> tuple[int, int]:
    """Map size, recorded by the first batch (maybe by an earlier, killed process);
    (0, 0) when no image could be decoded."""
    try:
        height, width = json.loads((partial / "map_shape.json").read_text())
        return int(height), int(width)
    except (OSError, ValueError, TypeError):
        return 0, 0


# --------------------------------------------------------------------------- one rank


class ShardWriter:
    """Append-only files of one rank, with a progress record that makes them resumable.

    Rows start with the image's global index (the merge key); map rows carry the
    map's row in this rank's maps.f16.
    """

    FILES = ("predictions.csv", "maps_index.csv", "maps.f16", "errors.csv", "boxes.csv")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        progress = self._read_progress()
        self.done = int(progress["done"])
        self.map_rows = int(progress["map_rows"])
        for name in self.FILES:
            path = folder / name
            path.touch()
            os.truncate(path, progress["sizes"].get(name, 0))  # drop what came after it
        self.handles = {name: open(folder / name, "ab") for name in self.FILES}  # noqa: SIM115

    def _read_progress(self) -> dict[str, Any]:
        try:
            record = json.loads((self.folder / "progress.json").read_text())
            if isinstance(record, dict) and isinstance(record.get("sizes"), dict):
                return record
        except (OSError, ValueError):
            pass
        return {"done": 0, "map_rows": 0, "sizes": {}}

    def rows(self, name: str, rows: list[list[Any]]) -> None:
        if rows:
            buffer = io.StringIO()
            # every field quoted: an image name may hold a CR or a newline, which an unquoted
            # field would turn into a row break when the merge reads the shard back
            csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(rows)
            self.handles[name].write(buffer.getvalue().encode())

    def maps(self, global_id: int, image: str, entries: list[tuple[int, str, int, int]],
             maps: list[np.ndarray]) -> None:
        """One image's stored maps with their (class_id, class_name, pred_rank, is_label)."""
        rows = [[global_id, self.map_rows + i, image, *entry] for i, entry in enumerate(entries)]
        for cam in maps:
            self.handles["maps.f16"].write(np.ascontiguousarray(cam, MAP_DTYPE).tobytes())
        self.map_rows += len(maps)
        self.rows("maps_index.csv", rows)

    def commit(self, done: int) -> None:
        """Record that the first `done` images of the shard are fully written."""
        for handle in self.handles.values():
            handle.flush()
        self.done = done
        sizes = {name: (self.folder / name).stat().st_size for name in self.FILES}
        record = {"done": done, "map_rows": self.map_rows, "sizes": sizes}
        tmp = self.folder / "progress.json.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.folder / "progress.json")

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


# --------------------------------------------------------------------------- the merge


def _read_rows(path: Path, rank: int) -> Iterator[tuple[int, int, list[str]]]:
    with open(path, newline="") as handle:
        try:
            for row in csv.reader(handle):
                yield int(row[0]), rank, row
        except (ValueError, IndexError, csv.Error) as exc:
            raise AcolError(f"{path} is damaged ({exc}); localize again into a new "
                            f"--out") from None


def merged_rows(folders: list[Path], name: str) -> Iterator[tuple[int, list[str]]]:
    """Rows of every rank's file in global image order (each rank's file is in order)."""
    streams = [_read_rows(folder / name, rank) for rank, folder in enumerate(folders)]
    for _, rank, row in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
        yield rank, row


def merge_csv(folders: list[Path], name: str, target: Path, header: list[str],
              keep_empty: bool = True) -> int:
    """The ranks' `name` files as one CSV at `target` (without the merge key); the row
    count. With `keep_empty` False, no rows means no file."""
    count = 0
    with atomic_open(target, "w", newline="") as handle:
        # the shards hold the rows as made; the run's file is written through csv_writer
        writer = csv_writer(handle, lineterminator="\n")
        writer.writerow(header)
        for _, row in merged_rows(folders, name):
            writer.writerow(row[1:])
            count += 1
        if not count and not keep_empty:
            raise _NothingToWrite
    return count


class _NothingToWrite(Exception):
    """Raised inside atomic_open to drop an empty file instead of renaming it."""


def merge_csv_if_any(folders: list[Path], name: str, target: Path, header: list[str]) -> int:
    try:
        return merge_csv(folders, name, target, header, keep_empty=False)
    except _NothingToWrite:
        return 0


def merge_maps(folders: list[Path], out: Path, shape: tuple[int, int],
               classes: list[str], method: dict | None = None) -> int:
    """The ranks' maps, in image order, as OUT's map store; the number of maps. `method`
    (methods.method_record) goes into maps.json: which method and layer made the maps."""
    height, width = shape
    map_bytes = height * width * MAP_DTYPE.itemsize
    sources = []
    for folder in folders:
        rows = (folder / "maps.f16").stat().st_size // map_bytes if map_bytes else 0
        sources.append(np.memmap(folder / "maps.f16", dtype=MAP_DTYPE, mode="r",
                                 shape=(rows, height, width)) if rows else None)
    with MapStoreWriter(out, height, width) as store:
        for rank, row in merged_rows(folders, "maps_index.csv"):
            _, local_row, image, class_id, class_name, pred_rank, is_label = row
            store.add(image, int(class_id), class_name, int(pred_rank), int(is_label),
                      sources[rank][int(local_row)])
        return store.finish(classes, method)
