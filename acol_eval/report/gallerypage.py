"""The gallery of report.html: where its pictures come from (the scored run's maps, the
images under the roots report.json and run.json name, the annotations' boxes and
sizes, the run's predictions) and the figures built from them. Reads only the maps and
images of the few dozen images shown. The choice of images and the thumbnails'
drawing are acol_eval.report.gallery's pure functions; the page around them is
acol_eval.report.htmlreport's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from acol_eval.maps.reportfolder import ReportMeta, as_report
from acol_eval.maps.runfolder import LocalizeRun
from acol_eval.report import gallery
from acol_eval.report.htmlparts import (
    Report,
    esc,
    fmt_iou,
    fmt_number,
    jpeg_data_uri,
    section,
)
from acol_eval.report.htmlreport import per_image_threshold
from acol_eval.util.errors import AcolError
from acol_eval.util.progress import counted

if TYPE_CHECKING:
    from acol_eval.data.readers import Annotations

MAX_MAP_VALUES = 4096 * 4096  # a .npy map larger than this is not read for the gallery
MAX_IMAGE_PIXELS = 64_000_000  # larger non-JPEG images (no reduced decoding) are not shown


# --------------------------------------------------------------------------- gallery inputs


@dataclass
class GallerySource:
    """Where a report's gallery finds its pictures: the run's maps (store or .npy folder),
    image roots to try in order, ground-truth boxes and sizes from the annotations,
    top-1 predictions. Everything optional: what is missing is left off the pictures."""

    run: Path | None
    map_choice: str
    baseline: str | None
    roots: list[Path]
    gt: dict[str, np.ndarray]
    sizes: dict[str, tuple[float, float]]
    predictions: dict[str, tuple[str, float]]


def _annotations(report: Report, images: set[str], source: Annotations | None = None):
    """The annotations of the gallery's images: (root, gt boxes, sizes), or (None, {}, {})
    when there are none (the gallery then has no GT). `source`: the Annotations the job
    read (score); else the report folder reads the source report.json names."""
    if source is None:
        source = as_report(report.source or report.folder).annotations()
        if source is None:
            return None, {}, {}
    boxes = source.boxes[source.boxes["image"].isin(images)]
    gt = {name: group[["x0", "y0", "x1", "y1"]].to_numpy(np.float64)
          for name, group in boxes.groupby("image")}
    chosen = source.images[source.images["image"].isin(images)]
    sizes = {r.image: (float(r.width), float(r.height)) for r in chosen.itertuples()
             if pd.notna(r.width) and pd.notna(r.height)}
    return source.root, gt, sizes


def _image_roots(meta: ReportMeta | None, annotation_root, run: LocalizeRun | None
                 ) -> list[Path]:
    """Folders image names may be relative to, most specific first: report.json's
    images_root, the run's own roots (LocalizeRun.image_roots), the annotation root."""
    candidates = [meta.images_root if meta else None,
                  *(run.image_roots() if run else []), annotation_root]
    roots: list[Path] = []
    for candidate in candidates:
        if candidate and Path(candidate).is_dir() and Path(candidate) not in roots:
            roots.append(Path(candidate))
    return roots


def _predictions(run: Path | None, images: set[str]) -> dict[str, tuple[str, float]]:
    if run is None:
        return {}
    try:
        table = LocalizeRun(run).predictions(
            dtype={"pred_1": str}, usecols=lambda c: c in ("image", "pred_1", "score_1"))
    except (AcolError, pd.errors.ParserError):
        return {}
    if not {"image", "pred_1", "score_1"} <= set(table.columns):
        return {}
    table = table[table["image"].isin(images)]
    return {r.image: (r.pred_1, pd.to_numeric(r.score_1, errors="coerce"))
            for r in table.itertuples()}


def gallery_source(report: Report, images: set[str],
                   annotations: Annotations | None = None) -> GallerySource:
    meta = report.meta
    run = Path(meta.run) if meta and meta.run and Path(meta.run).is_dir() else None
    root, gt, sizes = _annotations(report, images, annotations)
    return GallerySource(run, meta.map_choice if meta else "auto",
                         meta.baseline if meta else None,
                         _image_roots(meta, root, LocalizeRun(run) if run else None),
                         gt, sizes,
                         _predictions(run, images))


def load_maps(source: GallerySource, images: list[str]) -> dict[str, np.ndarray]:
    """The scored map of each image that has one: from the map store (the label's map,
    or the top-1 map under map_choice 'top1' or where the label has none), or from
    RUN/<image>.npy or RUN/<image without extension>.npy. Reads those maps only. A
    centre-baseline report shows the centred Gaussian it scored."""
    if source.baseline == "centre":
        from acol_eval.maps.maps import centre_gaussian_map

        return dict.fromkeys(images, centre_gaussian_map(28, 28))
    run = source.run
    if run is None:
        return {}
    if LocalizeRun(run).has_maps:
        try:
            store = LocalizeRun(run).maps()
        except (AcolError, OSError, ValueError, KeyError):
            return {}
        index = store.index[store.index["image"].astype(str).isin(images)]
        label = index[index["is_label"] == 1].drop_duplicates("image")
        top1 = index[index["pred_rank"] == 1].drop_duplicates("image")
        rows = dict(zip(top1["image"].astype(str), top1["row"]))
        if source.map_choice != "top1":
            rows.update(zip(label["image"].astype(str), label["row"]))
        return {name: np.asarray(store.maps[int(row)], np.float32)
                for name, row in rows.items() if 0 <= int(row) < len(store.maps)}
    found = {}
    for name in images:
        if not contained_name(name):
            continue
        stem = name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name
        for candidate in (run / f"{name}.npy", run / f"{stem}.npy"):
            if candidate.is_file():
                found[name] = _read_npy(candidate)
                break
    return {k: v for k, v in found.items() if v is not None}


def _read_npy(path: Path) -> np.ndarray | None:
    try:
        values = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if values.dtype.kind not in "fiub" or values.size > MAX_MAP_VALUES:
        return None
    values = np.asarray(values, np.float32).squeeze()
    return values if values.ndim == 2 else None


def contained_name(name: str) -> bool:
    """Whether an image name of a report stays inside the folder it is relative to, read
    as written: relative, without '..', no drive. The file it names may be a link to
    elsewhere (an image folder of links is common, and localize follows them): the name
    is what a hostile per_image.csv could abuse, not the user's own links."""
    if not name or "\0" in name:
        return False
    posix, windows = PurePosixPath(name.replace("\\", "/")), PureWindowsPath(name)
    return not (posix.is_absolute() or windows.drive or windows.root
                or ".." in posix.parts)


def load_image(roots: list[Path], name: str, side: int
               ) -> tuple[np.ndarray, tuple[float, float]] | None:
    """RGB uint8 of the image `name` under the first root that holds it (a name that
    leaves its root is refused, a link under the root is followed), EXIF-oriented,
    decoded at a reduced JPEG scale near `side`, with its full (EXIF-oriented) width and
    height; None if no root holds a readable one."""
    from PIL import Image, ImageOps

    if not contained_name(name):
        return None
    for root in roots:
        path = root / name
        if not path.is_file():
            continue
        try:
            with Image.open(path) as image:
                width, height = image.size
                if image.format != "JPEG" and width * height > MAX_IMAGE_PIXELS:
                    return None
                if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation
                    width, height = height, width
                if image.format == "JPEG":
                    image.draft("RGB", (2 * side, 2 * side))
                image.load()
                picture = ImageOps.exif_transpose(image).convert("RGB")
            return np.asarray(picture), (float(width), float(height))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None
    return None


# --------------------------------------------------------------------------- gallery


# per_image.csv columns that may hold the predicted box in original pixels (x1/y1
# exclusive), beside x0..y1 in the protocol's frame; the first complete set wins
ORIGINAL_BOX_COLUMNS = [[f"{p}{c}" for c in ("x0", "y0", "x1", "y1")]
                        for p in ("orig_", "original_", "image_", "px_")] + [
    [f"{c}{s}" for c in ("x0", "y0", "x1", "y1")] for s in ("_orig", "_original", "_px")]


def predicted_box(row: pd.Series, protocol: str, frame: tuple[float, float]) -> np.ndarray:
    """The predicted box of a per_image.csv row as (0 or 1, 4) original pixels, x1/y1
    exclusive: an original-pixel column set when present, else x0..y1 read in the frame
    named by a `frame` column, else the protocol's (wsoleval: 224 x 224, inclusive)."""
    for columns in ORIGINAL_BOX_COLUMNS:
        if all(c in row for c in columns):
            values = pd.to_numeric(row[columns], errors="coerce").to_numpy(np.float64)
            if np.isfinite(values).all():
                return values[None]
    if not all(c in row for c in ("x0", "y0", "x1", "y1")):
        return np.zeros((0, 4))
    values = pd.to_numeric(row[["x0", "y0", "x1", "y1"]], errors="coerce").to_numpy(np.float64)
    if not np.isfinite(values).all():
        return np.zeros((0, 4))
    named = str(row.get("frame", "")) if pd.notna(row.get("frame", np.nan)) else ""
    if "224" in named or (not named and protocol.startswith("wsoleval")):
        return gallery.wsoleval_to_original(values, frame[0], frame[1])
    return values[None]


def _caption(row: pd.Series, source: GallerySource, reason: str | None) -> str:
    name = str(row["image"])
    lines = [f'<div class="why">{esc(reason)}</div>'] if reason else []
    lines.append(f'<div class="name" title="{esc(name)}">{esc(name.rsplit("/", 1)[-1])}</div>')
    label = row.get("label", "")
    predicted = source.predictions.get(name)
    said = [f"class {esc(label)}"] if isinstance(label, str) and label else []
    if predicted:
        said.append(f"top-1 {esc(predicted[0])} {fmt_number(predicted[1], 2)}")
    if said:
        lines.append(f"<div>{' &middot; '.join(said)}</div>")
    iou = fmt_iou(row.get("iou", ""))
    error = row.get("error", "")
    error_text = f" &middot; {esc(str(error).replace('_', ' '))}" if isinstance(error, str) else ""
    lines.append(f"<div>IoU <b>{iou}</b>{error_text}</div>")
    return "".join(lines)


def picture(row: pd.Series, source: GallerySource, maps: dict[str, np.ndarray],
            protocol: str) -> tuple[str, bool]:
    """The thumbnail of a per_image.csv row as a data URI, and whether it has GT boxes."""
    name = str(row["image"])
    loaded = load_image(source.roots, name, gallery.THUMB_SIDE)
    image, frame = (loaded if loaded else (None, source.sizes.get(name)))
    frame = source.sizes.get(name, frame)
    gt = source.gt.get(name, np.zeros((0, 4)))
    if frame is None:  # no size anywhere: the map alone, in the wsoleval frame, no GT
        frame, gt = (float(gallery.WSOLEVAL_SIDE),) * 2, np.zeros((0, 4))
    boxes = predicted_box(row, protocol, frame)
    thumb = gallery.thumbnail(image, maps.get(name), frame, gt, boxes)
    return jpeg_data_uri(thumb), len(gt) > 0


def card(row: pd.Series, source: GallerySource, maps: dict[str, np.ndarray], protocol: str,
         reason: str | None) -> str:
    """A gallery figure; a picture that cannot be drawn (an odd map or image) leaves a
    line saying so instead of stopping the page: the report's numbers are written."""
    import cv2

    try:
        uri, _ = picture(row, source, maps, protocol)
        shown = f'<img src="{uri}" alt="{esc(row["image"])}">'
    except (cv2.error, OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        shown = f'<p class="note">no picture: {esc(str(exc).splitlines()[0][:100])}</p>'
    return (f'<figure class="thumb">{shown}'
            f"<figcaption>{_caption(row, source, reason)}</figcaption></figure>")


def box_key(where: str) -> str:
    """The colour key of the gallery's pictures; `where`: the predicted box's threshold."""
    return (f'<p class="key"><span class="sw" style="border-color:rgb{gallery.GT_COLOUR}">'
            f'</span> ground truth <span class="sw" style="border-color:'
            f'rgb{gallery.PREDICTED_COLOUR}"></span> predicted box at {esc(where)}, over '
            f"the scored map</p>")


def gallery_section(report: Report, annotations: Annotations | None = None) -> str:
    picked = gallery.pick_gallery(report.per_image)
    if not len(picked):
        return section("gallery", "Gallery", '<p class="note">per_image.csv has no images '
                       "with an IoU to show.</p>")
    names = picked["image"].astype(str).tolist()
    source = gallery_source(report, set(names), annotations)
    maps = load_maps(source, names)
    missing = []
    if not maps:
        missing.append("maps (the scored run is not reachable)")
    if not source.roots:
        missing.append("images")
    if not source.gt:
        missing.append("ground-truth boxes (annotations not readable)")
    note = (f'<p class="note">Shown without {esc(", ".join(missing))}.</p>' if missing else "")
    cards = [card(row, source, maps, report.protocol, row["reason"])
             for _, row in picked.iterrows()]
    return section("gallery", f"Gallery ({counted(len(cards), 'image')})",
                   box_key(per_image_threshold(report)) + note
                   + f'<div class="grid">{"".join(cards)}</div>')
