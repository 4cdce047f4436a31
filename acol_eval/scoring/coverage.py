"""Which annotated images a `score` covers, and when a partial cover is refused.

A score over fewer images than the annotated split is not the benchmark: twelve maps
scored against a 5,794-image test split give a number that looks like a CUB result
and is not one. So `score` refuses, before anything is written, when

- annotated images of the scored split have no map (or a map but no image size, which
  leaves a boxed image unscored just the same), or
- maps belong to images the annotation source does not know at all (a naming mismatch
  is the usual cause). Maps of images of *another* split of the same source are not
  counted: localizing a whole folder and scoring one split is normal.

unless the user says the subset is intended: `--allow-missing` (score what has a map)
or `--image-list FILE` (the names of the intended images; the annotated set becomes
those images, and a listed name the split does not annotate is an error). The report
then says "N of M annotated images" (M: the split's annotated images, whatever the
list), so a subset never passes for the whole split.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pandas as pd

from acol_eval.util.errors import AcolError
from acol_eval.util.progress import counted
from acol_eval.util.safeio import check_input_file

LIST_LIMIT = 256 << 20  # bytes: an image list of 256 MB is a mistake, not a list


class Subset(str, Enum):
    """Why a partial score was accepted (report.json's `subset`)."""

    ALLOW_MISSING = "allow-missing"
    IMAGE_LIST = "image-list"


@dataclass(frozen=True)
class Coverage:
    """annotated: M, the annotated images of the scored split; wanted: the images meant
    to be scored (M, or the --image-list's); mapped: of those, the ones with a map;
    unsized: of the mapped ones, boxed images without an image size; unknown_maps: maps
    of images the annotation source does not know; listed: wanted came from an
    --image-list; allow_missing: --allow-missing was given."""

    annotated: int
    wanted: int
    mapped: int
    unsized: int
    unknown_maps: int
    listed: bool = False
    allow_missing: bool = False

    @property
    def scorable(self) -> int:
        return self.mapped - self.unsized

    @property
    def refused(self) -> bool:
        """Wanted images cannot be scored, or maps belong to no annotated image (maps
        outside an --image-list do not count: the list chose the images), and
        --allow-missing was not given."""
        unknown = 0 if self.listed else self.unknown_maps
        return (self.scorable < self.wanted or unknown > 0) and not self.allow_missing

    @property
    def subset(self) -> Subset | None:
        """Why fewer than the annotated images are scored, None when all are."""
        if self.scorable >= self.annotated:
            return None
        return Subset.ALLOW_MISSING if self.scorable < self.wanted else Subset.IMAGE_LIST


def read_image_list(path: str | Path) -> list[str]:
    """The names of an --image-list file: one a line, blank lines and surrounding
    spaces ignored, each name once; a one-line AcolError for a file that cannot be one."""
    try:
        file = check_input_file(path, f"--image-list {path}", LIST_LIMIT,
                                "; give one image name a line")
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AcolError(f"--image-list {path}: unreadable "
                        f"({getattr(exc, 'strerror', None) or exc})") from None
    names = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not names:
        raise AcolError(f"--image-list {path}: names no image (one name a line)")
    return names


def wanted_images(split_images: pd.Series, image_list: str | None) -> pd.Index:
    """The images meant to be scored: the split's annotated images, or those of the
    --image-list, each of which must be one of them."""
    annotated = pd.Index(split_images.drop_duplicates())
    if image_list is None:
        return annotated
    listed = pd.Index(read_image_list(image_list))
    stray = listed[~listed.isin(annotated)]
    if len(stray):
        raise AcolError(f"--image-list {image_list}: {counted(len(stray), 'name')} of "
                        f"{len(listed)} {'is' if len(stray) == 1 else 'are'} not annotated "
                        f"in the scored split (e.g. {stray[0]!r}); list annotated image "
                        f"names as the annotations write them (e.g. {annotated[0]!r})")
    return listed


def check_coverage(coverage: Coverage, split: str | None, splits: list[str],
                   no_label_map: int = 0) -> None:
    """Refuse a partial score nobody asked for: one line with both counts and the
    opt-ins. no_label_map: images left without a map by --map label (their label is not
    a model class)."""
    if not coverage.refused:
        return
    where = f"of split {split}" if split else "of the annotations"
    lacking = coverage.wanted - coverage.mapped
    detail = [f"{lacking} {'has' if lacking == 1 else 'have'} no map"]
    if no_label_map:
        detail.append(f"{no_label_map} of them because the label is not a model class: "
                      f"--map auto scores their top-1 map")
    if coverage.unsized:
        detail.append(f"{coverage.unsized} with a map but no image size")
    scope = (f"{coverage.scorable} of {counted(coverage.annotated, 'annotated image')} {where}"
             if coverage.wanted == coverage.annotated else
             f"{coverage.scorable} of the {coverage.wanted} listed images")
    hint = ("" if split or len(splits) < 2 else
            f" (the annotations hold splits {', '.join(splits)}: --split picks one)")
    maps = counted(coverage.unknown_maps, "map")
    raise AcolError(
        f"score: {scope} can be scored ({'; '.join(detail)}); {maps} "
        f"{'has' if coverage.unknown_maps == 1 else 'have'} no annotation{hint}: pass "
        f"--allow-missing to score the subset, or --image-list FILE to name it")

