"""Annotation readers: every source becomes one :class:`Annotations` table.

One row per image (path, class name, split, size when known), one row per box
(x0, y0, x1, y1 in original pixels of the image, x0/y0 inclusive, x1/y1 exclusive)
and one row per mask file. A source is named `FORMAT:PATH` or given as a bare
path whose format is detected (:func:`detect_format`). A new format is a function
`reader(PATH, image_root=None) -> Annotations` added to `READERS` as a `Reader` with
a one-line summary and its box format (and, when it can be recognised, to
`detect_format`); readers convert boxes with boxformats.convert.

Image names. The `image` column holds each image's path as the source writes it,
with `/` separators: relative to `Annotations.root`, which is `image_root` when the
caller gives one (`read_source(..., image_root=...)`) and otherwise the format's
own default (beside the file, its images/ folder, CUB's images/, ...). An absolute
path in a source (a CSV image, a COCO file_name, a VOC filename) is kept absolute
as written, e.g. `/data/photos/x.jpg`: consumers join `root / image`, which for an
absolute name is that name, so the file is found whatever the root. Names are
read, never trusted for writing: output paths are derived through safeio.

Trust. Every reader survives hostile files: an unusable source (missing, a folder
where a file is needed, not JSON, a COCO file that is not an object, a CSV without
its header) is one AcolError line; a bad annotation is dropped or repaired and
counted in `Annotations.issues`, never a traceback. The counts:
  duplicate_row, bad_row (a record without a usable id, name or value), bad_label,
  image_without_label, image_without_split, wrong_column_count, non_utf8_line,
  empty_file, unreadable_file, not_labelme_file, unknown_class;
  bad_box (non-numbers, infinities, not four values), inverted_box, empty_box,
  duplicate_box, clipped_box (past the image edge), box_without_image,
  not_a_rectangle;
  bad_size (a size that is not a positive number, or more than MAX_IMAGE_PIXELS:
  counted and made unknown, never clamped, so no later step allocates it);
  image_without_mask, mask_without_image, mask_size_mismatch (box scaled into the
  image frame), empty_mask (no box).
Mask-only annotations (wsol OpenImages) have no box rows; only `masks:` makes
boxes, because there the box is by definition the tight rectangle of the mask.
"""

from acol_eval.data.readers.folders import read_folder, read_mask, read_masks
from acol_eval.data.readers.jsonfiles import COCO_LABEL_RULES, read_coco, read_labelme
from acol_eval.data.readers.source import (
    READERS,
    Reader,
    detect_format,
    format_descriptions,
    read_source,
)
from acol_eval.data.readers.table import (
    BOX_COLUMNS,
    IMAGE_COLUMNS,
    IMAGE_EXTENSIONS,
    MASK_COLUMNS,
    MAX_IMAGE_PIXELS,
    VALIDATION_SPLITS,
    Annotations,
    finish,
    is_acol_output,
    is_image_file,
    outside_outputs,
)
from acol_eval.data.readers.textfiles import read_csv, read_cub, read_wsol
from acol_eval.data.readers.voc import read_voc

__all__ = [
    "BOX_COLUMNS", "COCO_LABEL_RULES", "IMAGE_COLUMNS", "IMAGE_EXTENSIONS", "MASK_COLUMNS",
    "MAX_IMAGE_PIXELS", "READERS", "VALIDATION_SPLITS", "Annotations", "Reader",
    "detect_format", "format_descriptions",
    "finish", "is_acol_output", "is_image_file", "outside_outputs", "read_coco", "read_csv",
    "read_cub", "read_folder", "read_labelme", "read_mask", "read_masks", "read_source",
    "read_voc", "read_wsol",
]
