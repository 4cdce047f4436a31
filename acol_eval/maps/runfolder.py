"""The run folder of `localize` (and of `boxes`, which boxes one again): what is in it,
read here only.

RUN/
    predictions.csv   one row per image: size, top-k predictions, the first box
    errors.csv        images that could not be read (only when some failed)
    run.json          the arguments, model, image root, CAM threshold and its source
    maps.json, maps.f16, maps_index.csv   the map store (acol_eval.maps.mapstore)
    .partial/         the shards of an unfinished run, until its merge

`score`, `boxes`, the report's gallery, `--threshold-from`'s rescore hint and
calibration open a run through `LocalizeRun`; `localize` returns one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from acol_eval.maps.mapstore import PARTIAL, MapStore, check_finished, open_map_array, open_maps
from acol_eval.util.csvtext import unescape_frame
from acol_eval.util.errors import AcolError

PREDICTIONS_FILE = "predictions.csv"
ERRORS_FILE = "errors.csv"
RECORD_FILE = "run.json"
MAPS_META_FILE = "maps.json"


@dataclass(frozen=True, eq=False)
class LocalizeRun:
    """One localize run folder. Nothing is read on construction; `open` checks that the
    folder is a finished run (one AcolError line otherwise)."""

    folder: Path
    # what the localize (LocalizeResult) or boxes (BoxesResult) call that returned it
    # did; None for a run opened from its folder
    result: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, folder: str | Path) -> LocalizeRun:
        """A finished localize run: refused when it is no folder, when its merge has
        not run yet (its work still in RUN/.partial) or when it has no map store."""
        run = cls(Path(folder))
        if not run.folder.is_dir():
            raise AcolError(f"{run.folder} is not a localize run folder")
        run.check_finished()
        if not run.has_maps:
            raise AcolError(f"{run.folder} has no {MAPS_META_FILE}: not a localize run")
        return run

    # ----------------------------------------------------------------- state

    @property
    def has_maps(self) -> bool:
        """The folder holds a map store (a localize run, not a folder of .npy maps)."""
        return (self.folder / MAPS_META_FILE).exists()

    @property
    def unfinished(self) -> bool:
        """Stopped before its merge: its shards are in RUN/.partial, no map store yet."""
        return (self.folder / PARTIAL).is_dir() and not self.has_maps

    def check_finished(self) -> None:
        """One AcolError line, saying how to finish it, when the run is unfinished."""
        check_finished(self.folder)

    # ----------------------------------------------------------------- tables

    def read_csv(self, name: str, **kwargs) -> pd.DataFrame:
        """One of the run's tables, image names as text, empty fields as ''; one AcolError
        line when it is missing or unreadable."""
        path = self.folder / name
        dtype = {"image": str, **kwargs.pop("dtype", {})}
        try:
            return unescape_frame(pd.read_csv(path, dtype=dtype, keep_default_na=False,
                                              **kwargs))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise AcolError(f"{path} is missing or not readable "
                            f"({getattr(exc, 'strerror', None) or exc})") from None

    def predictions(self, **kwargs) -> pd.DataFrame:
        """predictions.csv (pandas.read_csv's keyword arguments, e.g. usecols)."""
        return self.read_csv(PREDICTIONS_FILE, **kwargs)

    @property
    def per_image(self) -> pd.DataFrame:
        """predictions.csv as a DataFrame: one row per image (size, top-k, first box)."""
        return self.predictions()

    def _repr_html_(self) -> str:
        """A notebook's view: images, map method, threshold, the first rows."""
        from acol_eval.maps.notebookview import run_html

        return run_html(self)

    def errors(self) -> pd.DataFrame:
        """errors.csv (image, reason); empty when every image was read."""
        if not (self.folder / ERRORS_FILE).is_file():
            return pd.DataFrame(columns=["image", "reason"])
        return self.read_csv(ERRORS_FILE)

    def localized(self) -> list[str]:
        """The images the run has maps of, in predictions.csv's order; [] when it has
        no readable predictions.csv."""
        try:
            table = self.predictions(usecols=["image"])
        except AcolError:
            return []
        return list(dict.fromkeys(table["image"]))

    # ----------------------------------------------------------------- run.json

    @cached_property
    def record(self) -> dict:
        """run.json as a dict; {} when there is none or it is not a JSON object."""
        path = self.folder / RECORD_FILE
        try:
            record = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    @property
    def arguments(self) -> dict:
        """The localize arguments run.json records (its `arguments`)."""
        return record_arguments(self.record)

    @property
    def image_root(self) -> str | None:
        """Where the run's image names resolve, as localize resolved it."""
        root = self.record.get("image_root")
        return str(root) if root else None

    def image_roots(self) -> list[str]:
        """Folders the run's image names may be relative to (record_image_roots)."""
        return record_image_roots(self.record)

    @property
    def cam_threshold(self) -> tuple[float | None, str | None]:
        """(threshold, source) the run boxed with, as run.json records them: the value
        and 'flag', 'report', 'checkpoint' or 'default'; (None, None) without them."""
        value = self.record.get("cam_threshold")
        source = self.record.get("cam_threshold_source")
        return value, (str(source) if source is not None else None)

    # ----------------------------------------------------------------- maps

    @cached_property
    def maps_meta(self) -> dict:
        """maps.json as a dict; {} when it is missing or unreadable."""
        try:
            meta = json.loads((self.folder / MAPS_META_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    @property
    def method(self) -> str:
        """The map method that made the maps, as maps.json records it ('model' when it
        does not say: runs before post-hoc methods existed)."""
        method = self.maps_meta.get("method")
        return str(method) if method else "model"

    def maps(self) -> MapStore:
        """The map store, memory-mapped, checked (mapstore.open_maps)."""
        return open_maps(self.folder)

    def map_array(self) -> tuple[np.ndarray, list[str]]:
        """The maps alone and the class names (mapstore.open_map_array)."""
        return open_map_array(self.folder)


def record_arguments(record: dict) -> dict:
    """The localize arguments a run.json record holds; {} when it holds none."""
    arguments = record.get("arguments")
    return arguments if isinstance(arguments, dict) else {}


def record_image_roots(record: dict) -> list[str]:
    """Folders a run's image names may be relative to, most specific first, from its
    run.json record: the resolved image root, its --image-root, its IMAGES argument
    (FORMAT:PATH, a folder, or a list file's folder)."""
    arguments = record_arguments(record)
    found = [record.get("image_root"), arguments.get("image_root")]
    images = arguments.get("images")
    if isinstance(images, str) and images:
        fmt, sep, rest = images.partition(":")
        path = Path(rest if sep and len(fmt) > 1 else images)
        found.append(path if path.is_dir() else path.parent)
    return [str(r) for r in found if isinstance(r, (str, Path)) and r]
