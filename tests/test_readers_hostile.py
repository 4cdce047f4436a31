"""Hostile and careless annotation files, reader by reader.

Each case builds a source in a fresh folder and says what must come of it: an unusable
source is one AcolError line naming the problem; a bad annotation is dropped or repaired
and counted, and the count is exactly the one given. Never a traceback, never a hang,
never an allocation sized by a number in a file.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from acol_eval.data.readers import MAX_IMAGE_PIXELS, read_source
from acol_eval.util.errors import AcolError


@dataclass(frozen=True)
class Error:
    """The source is unusable: one line that contains `phrase`."""

    phrase: str


@dataclass(frozen=True)
class Counted:
    """The source reads: exactly these issue counts, and (when given) so many rows."""

    issues: dict
    images: int | None = None
    boxes: int | None = None


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def picture(path: Path, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)
    return path


def huge_png(path: Path, width: int, height: int) -> Path:
    """A valid 1x1 PNG whose header claims width x height: a decompression bomb's shape
    without its bytes (only a reader that trusts the header would allocate it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00")
    return write(path, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
                 + chunk(b"IEND", b""))


# --------------------------------------------------------------------------- COCO

GOOD_BOX = {"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10]}


def coco(tmp: Path, images=None, categories=None, annotations=None,
         text: str | bytes | None = None) -> str:
    document = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
        if images is None else images,
        "categories": [{"id": 1, "name": "cat"}] if categories is None else categories,
        "annotations": [GOOD_BOX] if annotations is None else annotations,
    }
    content = json.dumps(document) if text is None else text
    return f"coco:{write(tmp / 'c.json', content)}"


def coco_box(**changes):
    return lambda tmp: coco(tmp, annotations=[{**GOOD_BOX, **changes}, GOOD_BOX])


def coco_image(**changes):
    return lambda tmp: coco(tmp, images=[{"id": 1, "file_name": "a.png", **changes}])


def coco_directory(tmp: Path) -> str:
    (tmp / "x.json").mkdir()
    return f"coco:{tmp / 'x.json'}"


COCO = [
    ("top-level-list", lambda t: coco(t, text="[]"), Error("its top level is a list")),
    ("top-level-number", lambda t: coco(t, text="3"), Error("its top level is a int")),
    ("top-level-string", lambda t: coco(t, text='"x"'), Error("not a COCO instances file")),
    ("not-json", lambda t: coco(t, text="{"), Error("is not JSON")),
    ("nested-too-deep", lambda t: coco(t, text="[" * 200_000), Error("nested too deeply")),
    ("integer-of-5000-digits", lambda t: coco(t, text="1" * 5000), Error("not usable JSON")),
    ("images-an-object", lambda t: coco(t, images={"id": 1}), Error("'images' must be a list")),
    ("annotations-a-string", lambda t: coco(t, annotations="x"),
     Error("'annotations' must be a list")),
    ("categories-null", lambda t: coco(t, text='{"categories": null}'),
     Error("'categories' must be a list")),
    ("a-directory", coco_directory, Error("is not a regular file")),
    ("bbox-a-number", coco_box(bbox=5), Counted({"bad_box": 1}, 1, 1)),
    ("bbox-a-string-of-four", coco_box(bbox="1234"), Counted({"bad_box": 1}, 1, 1)),
    ("bbox-three-values", coco_box(bbox=[1, 2, 3]), Counted({"bad_box": 1}, 1, 1)),
    ("bbox-five-values", coco_box(bbox=[1, 2, 3, 4, 5]), Counted({"bad_box": 1}, 1, 1)),
    ("bbox-with-null", coco_box(bbox=[1, None, 3, 4]), Counted({"bad_box": 1}, 1, 1)),
    ("bbox-of-booleans", coco_box(bbox=[True, 0, 3, 4]), Counted({"bad_box": 1}, 1, 1)),
    ("bbox-of-text-numbers", coco_box(bbox=["1", "2", "3", "4"]), Counted({"bad_box": 1}, 1, 1)),
    ("bbox-nested", coco_box(bbox=[[1], 2, 3, 4]), Counted({"bad_box": 1}, 1, 1)),
    ("bbox-missing", coco_box(bbox=None), Counted({"bad_box": 1}, 1, 1)),
    ("bbox-nan", lambda t: coco(t, text=json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{**GOOD_BOX, "bbox": [float("nan"), 1, 2, 2]}, GOOD_BOX]})),
     Counted({"bad_box": 1}, 1, 1)),
    ("bbox-infinite", coco_box(bbox=[1, 1, float("inf"), 2]), Counted({"bad_box": 1}, 1, 1)),
    ("bbox-1e400", lambda t: coco(t, text=json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "categories": [{"id": 1, "name": "cat"}], "annotations": [GOOD_BOX]})[:-2]
        + ', {"image_id": 1, "category_id": 1, "bbox": [1e400, 1, 2, 2]}]}'),
     Counted({"bad_box": 1}, 1, 1)),
    ("bbox-integer-past-float", coco_box(bbox=[10 ** 400, 1, 2, 2]),
     Counted({"bad_box": 1}, 1, 1)),
    ("bbox-far-past-the-edge", coco_box(bbox=[1e30, 1, 5, 5]),
     Counted({"clipped_box": 1, "empty_box": 1}, 1, 1)),
    ("image-id-a-list", coco_box(image_id=[1]), Counted({"box_without_image": 1}, 1, 1)),
    ("category-id-an-object", coco_box(category_id={"id": 1}),
     Counted({"unknown_class": 1}, 1, 1)),
    ("annotation-not-an-object", lambda t: coco(t, annotations=["x", 3, None, GOOD_BOX]),
     Counted({"box_without_image": 3}, 1, 1)),
    ("image-not-an-object", lambda t: coco(t, images=["a.png"]), Counted(
        {"bad_row": 1, "box_without_image": 1}, 0, 0)),
    ("image-without-file-name", coco_image(file_name=None), Counted(
        {"bad_row": 1, "box_without_image": 1}, 0, 0)),
    ("image-file-name-a-list", coco_image(file_name=["a.png"]), Counted(
        {"bad_row": 1, "box_without_image": 1}, 0, 0)),
    ("image-id-repeated", lambda t: coco(t, images=[
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 1, "file_name": "b.png"}]), Counted({"duplicate_row": 1}, 1, 1)),
    ("category-name-null", lambda t: coco(t, categories=[{"id": 1, "name": None}]),
     Counted({"bad_row": 1, "unknown_class": 1}, 1, 0)),
    ("width-text", coco_image(width="abc", height=30), Counted({"bad_size": 1}, 1, 1)),
    ("width-1e300", coco_image(width=1e300, height=30), Counted({"bad_size": 1}, 1, 1)),
    ("size-60000-square", coco_image(width=60000, height=60000), Counted({"bad_size": 1}, 1, 1)),
    ("width-negative", coco_image(width=-5, height=30), Counted({"bad_size": 1}, 1, 1)),
    ("non-utf8-bytes", lambda t: coco(t, text=b'{"images": [{"id": 1, "file_name": "a\xff.png",'
                                            b' "width": 4, "height": 3}]}'),
     Counted({"non_utf8_line": 1}, 1, 0)),
]


# --------------------------------------------------------------------------- labelme


def labelme(tmp: Path, *shapes, **document) -> str:
    content = {"shapes": list(shapes), "imagePath": "a.jpg", "imageWidth": 40,
               "imageHeight": 30, **document}
    write(tmp / "l" / "a.json", json.dumps(content))
    return f"labelme:{tmp / 'l'}"


def rectangle(points, **changes):
    return {"label": "cat", "points": points, "shape_type": "rectangle", **changes}


GOOD_SHAPE = rectangle([[1, 1], [5, 6]])


def labelme_text(text: str | bytes):
    return lambda tmp: (write(tmp / "l" / "a.json", text), f"labelme:{tmp / 'l'}")[1]


def labelme_with_odd_files(tmp: Path) -> str:
    source = labelme(tmp, GOOD_SHAPE)
    (tmp / "l" / "folder.json").mkdir()
    os.mkfifo(tmp / "l" / "pipe.json")
    return source


LABELME = [
    ("points-of-three-coordinates", lambda t: labelme(t, rectangle([[1, 2, 3], [4, 5, 6]]),
                                                       GOOD_SHAPE), Counted({"bad_box": 1}, 1, 1)),
    ("points-null", lambda t: labelme(t, rectangle(None), GOOD_SHAPE),
     Counted({"not_a_rectangle": 1}, 1, 1)),
    ("points-a-string", lambda t: labelme(t, rectangle("ab"), GOOD_SHAPE),
     Counted({"not_a_rectangle": 1}, 1, 1)),
    ("point-with-null", lambda t: labelme(t, rectangle([[1, None], [4, 5]]), GOOD_SHAPE),
     Counted({"bad_box": 1}, 1, 1)),
    ("point-a-number", lambda t: labelme(t, rectangle([1, [4, 5]]), GOOD_SHAPE),
     Counted({"bad_box": 1}, 1, 1)),
    ("point-of-text", lambda t: labelme(t, rectangle([["1", "2"], [4, 5]]), GOOD_SHAPE),
     Counted({"bad_box": 1}, 1, 1)),
    ("point-infinite", lambda t: labelme(t, rectangle([[1, 2], [1e999, 5]]), GOOD_SHAPE),
     Counted({"bad_box": 1}, 1, 1)),
    ("shape-not-an-object", lambda t: labelme(t, "rect", 7, None, GOOD_SHAPE),
     Counted({"not_a_rectangle": 3}, 1, 1)),
    ("polygon-shape", lambda t: labelme(t, rectangle([[1, 1], [5, 6], [2, 9]],
                                                     shape_type="polygon"), GOOD_SHAPE),
     Counted({"not_a_rectangle": 1}, 1, 1)),
    ("label-null", lambda t: labelme(t, rectangle([[1, 1], [5, 6]], label=None)),
     Counted({}, 1, 1)),
    ("shapes-not-a-list", labelme_text(json.dumps({"shapes": {"a": 1}, "imagePath": "a.jpg"})),
     Error("no usable labelme files")),
    ("top-level-list", labelme_text("[1, 2]"), Error("no usable labelme files")),
    ("broken-json", labelme_text('{"shapes": ['), Error("no usable labelme files")),
    ("integer-of-5000-digits", labelme_text('{"shapes": [], "imagePath": "a.jpg", "x": '
                                            + "1" * 5000 + "}"), Error("no usable labelme files")),
    ("image-path-a-number", lambda t: labelme(t, GOOD_SHAPE, imagePath=12), Counted({}, 1, 1)),
    ("windows-image-path", lambda t: labelme(t, GOOD_SHAPE, imagePath="..\\pics\\a.jpg"),
     Counted({}, 1, 1)),
    ("width-text", lambda t: labelme(t, GOOD_SHAPE, imageWidth="abc"),
     Counted({"bad_size": 1}, 1, 1)),
    ("width-1e300", lambda t: labelme(t, GOOD_SHAPE, imageWidth=1e300),
     Counted({"bad_size": 1}, 1, 1)),
    ("directory-and-fifo-named-json", labelme_with_odd_files,
     Counted({"unreadable_file": 1}, 1, 1)),
    ("no-json-at-all", lambda t: (picture(t / "l" / "a.jpg"), f"labelme:{t / 'l'}")[1],
     Error("no labelme JSON files")),
]


# --------------------------------------------------------------------------- VOC


def voc(tmp: Path, body: str = "", size: str = "<width>40</width><height>30</height>",
        raw: str | bytes | None = None) -> str:
    obj = ("<object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>9</xmax>"
           "<ymax>8</ymax></bndbox></object>")
    text = raw if raw is not None else (
        f"<annotation><filename>a.jpg</filename><size>{size}</size>{obj}{body}</annotation>")
    write(tmp / "v" / "annotations" / "a.xml", text)
    return f"voc:{tmp / 'v'}"


def voc_box(**values):
    fields = {"xmin": "1", "ymin": "2", "xmax": "9", "ymax": "8", **values}
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items() if v is not None)
    return lambda tmp: voc(tmp, f"<object><name>dog</name><bndbox>{inner}</bndbox></object>")


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">' + "".join(
    f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(9))
    + "]><annotation><filename>&j;</filename></annotation>")
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   "<annotation><filename>&x;</filename></annotation>")


def voc_with_directory(tmp: Path) -> str:
    source = voc(tmp)
    (tmp / "v" / "annotations" / "sub.xml").mkdir()
    return source


VOC = [
    ("width-text", lambda t: voc(t, size="<width>abc</width><height>30</height>"),
     Counted({"bad_size": 1}, 1, 1)),
    ("width-1e300", lambda t: voc(t, size="<width>1e300</width><height>30</height>"),
     Counted({"bad_size": 1}, 1, 1)),
    ("size-60000-square", lambda t: voc(t, size="<width>60000</width><height>60000</height>"),
     Counted({"bad_size": 1}, 1, 1)),
    ("width-zero-means-unknown", lambda t: voc(t, size="<width>0</width><height>0</height>"),
     Counted({}, 1, 1)),
    ("malformed-xml", lambda t: voc(t, raw="<annotation><filename>a.jpg</filen"),
     Error("no usable VOC files")),
    ("billion-laughs", lambda t: voc(t, raw=BILLION_LAUGHS), Error("no usable VOC files")),
    ("external-entity", lambda t: voc(t, raw=EXTERNAL_ENTITY), Error("no usable VOC files")),
    ("bndbox-missing-ymax", voc_box(ymax=None), Counted({"bad_box": 1}, 1, 1)),
    ("bndbox-text", voc_box(xmin="abc"), Counted({"bad_box": 1}, 1, 1)),
    ("bndbox-nan", voc_box(xmin="nan"), Counted({"bad_box": 1}, 1, 1)),
    ("bndbox-inf", voc_box(xmax="inf"), Counted({"bad_box": 1}, 1, 1)),
    ("bndbox-absent", lambda t: voc(t, "<object><name>dog</name></object>"),
     Counted({"bad_box": 1}, 1, 1)),
    ("non-utf8-bytes", lambda t: voc(t, raw=b"<annotation><filename>a\xff.jpg</filename>"
                                            b"</annotation>"), Counted({"non_utf8_line": 1}, 1, 0)),
    ("directory-named-xml", voc_with_directory, Counted({}, 1, 1)),
    ("no-xml", lambda t: (write(t / "v" / "x.txt", "x"), f"voc:{t / 'v'}")[1],
     Error("no VOC XML files")),
]


# --------------------------------------------------------------------------- CUB

CUB_FILES = {"images.txt": "1 c/a.jpg\n2 c/b.jpg\n", "image_class_labels.txt": "1 1\n2 1\n",
             "train_test_split.txt": "1 1\n2 0\n", "classes.txt": "1 c\n",
             "bounding_boxes.txt": "1 1 2 5 5\n2 1 2 5 5\n"}


def cub(**changes):
    def build(tmp: Path) -> str:
        for name, content in {**CUB_FILES, **changes}.items():
            if content is not None:
                write(tmp / "cub" / name, content)
        return f"cub:{tmp / 'cub'}"
    return build


def cub_directory(tmp: Path) -> str:
    (tmp / "cub" / "images.txt").mkdir(parents=True)
    return cub(**{"images.txt": None})(tmp)


CUB = [
    ("box-nan", cub(**{"bounding_boxes.txt": "1 nan 2 5 5\n2 1 2 5 5\n"}),
     Counted({"bad_box": 1}, 2, 1)),
    ("box-inf", cub(**{"bounding_boxes.txt": "1 1 2 inf 5\n2 1 2 5 5\n"}),
     Counted({"bad_box": 1}, 2, 1)),
    ("box-minus-inf-plus-inf", cub(**{"bounding_boxes.txt": "1 -inf 2 inf 5\n2 1 2 5 5\n"}),
     Counted({"bad_box": 1}, 2, 1)),
    ("box-text-leaves-the-others", cub(**{"bounding_boxes.txt": "1 abc 2 5 5\n2 1 2 5 5\n"}),
     Counted({"bad_box": 1}, 2, 1)),
    ("box-of-an-unknown-id", cub(**{"bounding_boxes.txt": "1 1 2 5 5\n2 1 2 5 5\n9 1 1 2 2\n"}),
     Counted({"box_without_image": 1}, 2, 2)),
    ("image-without-label", cub(**{"image_class_labels.txt": "1 1\n"}),
     Counted({"image_without_label": 1}, 1, 1)),
    ("image-without-split", cub(**{"train_test_split.txt": "2 0\n"}),
     Counted({"image_without_split": 1}, 1, 1)),
    ("label-superscript-two", cub(**{"image_class_labels.txt": "1 1\n2 \u00b2\n"}),
     Counted({"bad_row": 1, "image_without_label": 1}, 1, 1)),
    ("id-superscript-two", cub(**{"images.txt": "1 c/a.jpg\n\u00b2 c/b.jpg\n"}),
     Counted({"bad_row": 1, "box_without_image": 1}, 1, 1)),
    ("id-a-fraction", cub(**{"images.txt": "1 c/a.jpg\n1.5 c/b.jpg\n"}),
     Counted({"bad_row": 1, "box_without_image": 1}, 1, 1)),
    ("id-of-40-digits", cub(**{"images.txt": "1 c/a.jpg\n" + "9" * 40 + " c/b.jpg\n"}),
     Counted({"bad_row": 1, "box_without_image": 1}, 1, 1)),
    ("split-seven", cub(**{"train_test_split.txt": "1 1\n2 7\n"}),
     Counted({"bad_row": 1, "image_without_split": 1}, 1, 1)),
    ("class-id-unknown", cub(**{"image_class_labels.txt": "1 1\n2 5\n"}),
     Counted({"unknown_class": 1}, 1, 1)),
    ("non-utf8-bytes", cub(**{"images.txt": b"1 c/a\xff.jpg\n2 c/b.jpg\n"}),
     Counted({"non_utf8_line": 1}, 2, 2)),
    ("ragged-line", cub(**{"bounding_boxes.txt": "1 1 2 5\n2 1 2 5 5\n"}),
     Counted({"wrong_column_count": 1}, 2, 1)),
    ("empty-images-file", cub(**{"images.txt": ""}),
     Counted({"empty_file": 1, "box_without_image": 2}, 0, 0)),
    ("images-file-a-directory", cub_directory, Error("is not a regular file")),
    ("classes-file-missing", cub(**{"classes.txt": None}), Error("missing annotation file")),
]


# --------------------------------------------------------------------------- wsol

WSOL_FILES = {"image_ids.txt": "val/a.jpg\nval/b.jpg\n",
              "class_labels.txt": "val/a.jpg,0\nval/b.jpg,1\n",
              "image_sizes.txt": "val/a.jpg,40,30\nval/b.jpg,40,30\n",
              "localization.txt": "val/a.jpg,1,2,9,8\nval/b.jpg,1,2,9,8\n"}


def wsol(**changes):
    def build(tmp: Path) -> str:
        for name, content in {**WSOL_FILES, **changes}.items():
            if content is not None:
                write(tmp / "test" / name, content)
        return f"wsol:{tmp / 'test'}"
    return build


MASK_LINES = "val/a.jpg,val/a_m1.png,val/a_ignore.png\nval/a.jpg,val/a_m2.png,\n"

WSOL = [
    ("label-superscript-two", wsol(**{"class_labels.txt": "val/a.jpg,0\nval/b.jpg,\u00b2\n"}),
     Counted({"bad_label": 1}, 2, 2)),
    ("label-text", wsol(**{"class_labels.txt": "val/a.jpg,0\nval/b.jpg,cat\n"}),
     Counted({"bad_label": 1}, 2, 2)),
    ("image-without-label", wsol(**{"class_labels.txt": "val/a.jpg,0\n"}),
     Counted({"image_without_label": 1}, 2, 2)),
    ("size-60000-square", wsol(**{"image_sizes.txt": "val/a.jpg,60000,60000\n"}),
     Counted({"bad_size": 1}, 2, 2)),
    ("size-1e300", wsol(**{"image_sizes.txt": "val/a.jpg,1e300,30\nval/b.jpg,40,30\n"}),
     Counted({"bad_size": 1}, 2, 2)),
    ("size-text", wsol(**{"image_sizes.txt": "val/a.jpg,abc,30\nval/b.jpg,40,30\n"}),
     Counted({"bad_size": 1}, 2, 2)),
    ("box-nan", wsol(**{"localization.txt": "val/a.jpg,nan,2,9,8\nval/b.jpg,1,2,9,8\n"}),
     Counted({"bad_box": 1}, 2, 1)),
    ("box-of-an-unknown-image", wsol(**{"localization.txt": "val/z.jpg,1,2,9,8\n"}),
     Counted({"box_without_image": 1}, 2, 0)),
    ("ragged-box-line", wsol(**{"localization.txt": "val/a.jpg,1,2,9\nval/b.jpg,1,2,9,8\n"}),
     Counted({"wrong_column_count": 1}, 2, 1)),
    ("several-masks-of-one-image", wsol(**{"localization.txt": MASK_LINES}), Counted({}, 2, 0)),
    ("mask-line-without-mask", wsol(**{"localization.txt": MASK_LINES + "val/b.jpg,,\n"}),
     Counted({"bad_row": 1}, 2, 0)),
    ("mask-of-an-unknown-image", wsol(**{"localization.txt": MASK_LINES + "val/z.jpg,m.png,\n"}),
     Counted({"mask_without_image": 1}, 2, 0)),
    ("empty-sizes-file", wsol(**{"image_sizes.txt": ""}), Counted({}, 2, 2)),
    ("no-sizes-file", wsol(**{"image_sizes.txt": None}), Counted({}, 2, 2)),
    ("ids-file-missing", wsol(**{"image_ids.txt": None}), Error("missing annotation file")),
]


# --------------------------------------------------------------------------- CSV

HEADER = "image,label,x0,y0,x1,y1\n"


def csv_file(content: str | bytes, image: bool = True):
    def build(tmp: Path) -> str:
        if image:
            picture(tmp / "images" / "a.png")
        return f"csv:{write(tmp / 'ann.csv', content)}"
    return build


def csv_directory(tmp: Path) -> str:
    (tmp / "x.csv").mkdir()
    return f"csv:{tmp / 'x.csv'}"


CSV = [
    ("missing-columns", csv_file("image,label\na.png,cat\n"), Error("the first line must be")),
    ("header-only-two-fields-quoted", csv_file('"image,label"\n'), Error("the first line must be")),
    ("empty-file", csv_file(""), Counted({"empty_file": 1}, 0, 0)),
    ("blank-lines-only", csv_file("\n\n  \n"), Counted({"empty_file": 1}, 0, 0)),
    ("header-only", csv_file(HEADER), Counted({}, 0, 0)),
    ("ragged-rows", csv_file(HEADER + "a.png,cat,1,1,5,5\na.png,cat,1\na.png,cat,1,1,5,5,x,y\n"),
     Counted({"wrong_column_count": 2}, 1, 1)),
    ("field-past-the-csv-limit", csv_file(HEADER + '"' + "x" * 200_000 + '",c,1,1,2,2\n'
                                          "a.png,cat,1,1,5,5\n"), Counted({"bad_row": 1}, 1, 1)),
    ("empty-image-name", csv_file(HEADER + ",cat,1,1,5,5\na.png,cat,1,1,5,5\n"),
     Counted({"bad_row": 1}, 1, 1)),
    ("box-text", csv_file(HEADER + "a.png,cat,abc,1,5,5\na.png,cat,1,1,5,5\n"),
     Counted({"bad_box": 1}, 1, 1)),
    ("box-inf", csv_file(HEADER + "a.png,cat,1,1,inf,5\na.png,cat,1,1,5,5\n"),
     Counted({"bad_box": 1}, 1, 1)),
    ("box-1e300-is-clipped-to-the-image", csv_file(HEADER + "a.png,cat,1,1,1e300,5\n"),
     Counted({"clipped_box": 1}, 1, 1)),
    ("image-without-boxes", csv_file(HEADER + "a.png,cat,,,,\n"), Counted({}, 1, 0)),
    ("nul-byte", csv_file(HEADER + "a\x00.png,cat,1,1,5,5\na.png,cat,1,1,5,5\n"),
     Counted({}, 2, 2)),
    ("non-utf8-bytes", csv_file(HEADER.encode() + b"a\xff.png,cat,1,1,5,5\n"),
     Counted({"non_utf8_line": 1}, 1, 1)),
    ("a-directory", csv_directory, Error("is not a regular file")),
    ("image-a-fifo", lambda t: (os.mkfifo(t / "p.png"), csv_file(
        HEADER + "p.png,cat,1,1,5,5\n", image=False)(t))[1], Counted({}, 1, 1)),
    ("image-header-of-60000-square", lambda t: (huge_png(t / "images" / "h.png", 60000, 60000),
                                                csv_file(HEADER + "h.png,cat,1,1,5,5\n")(t))[1],
     Counted({"bad_size": 1}, 1, 1)),
]


# --------------------------------------------------------------------------- masks


def mask_pixels(dtype=np.uint8, value=1) -> np.ndarray:
    pixels = np.zeros((30, 40), dtype)
    pixels[5:15, 3:9] = value
    return pixels


def masks_of(make_mask, image_size=(40, 30), name="a.png"):
    def build(tmp: Path) -> str:
        picture(tmp / "m" / "pics" / "a.jpg", image_size)
        mask_file = tmp / "m" / "masks" / name
        mask_file.parent.mkdir(parents=True, exist_ok=True)
        made = make_mask(mask_file)
        if isinstance(made, Image.Image):
            made.save(mask_file)
        return f"masks:{tmp / 'm'}"
    return build


def palette_mask(_: Path) -> Image.Image:
    image = Image.fromarray(mask_pixels()).convert("P")
    image.putpalette([0, 0, 0, 0, 0, 1] + [0] * 762)  # index 1 is almost black
    return image


def rgba_mask(_: Path) -> Image.Image:
    pixels = np.zeros((30, 40, 4), np.uint8)
    pixels[..., 3] = 255  # opaque everywhere: alpha says nothing
    pixels[5:15, 3:9, 2] = 1  # a blue too dark to survive a greyscale conversion
    return Image.fromarray(pixels, "RGBA")


MASK_BOX = [3.0, 5.0, 9.0, 15.0]

MASKS = [
    ("mode-L-values-0-1", masks_of(lambda _: Image.fromarray(mask_pixels())), Counted({}, 1, 1)),
    ("mode-1", masks_of(lambda _: Image.fromarray(mask_pixels(value=255)).convert("1")),
     Counted({}, 1, 1)),
    ("mode-P-index-1", masks_of(palette_mask), Counted({}, 1, 1)),
    ("mode-I16-value-1", masks_of(lambda _: Image.fromarray(mask_pixels(np.uint16))),
     Counted({}, 1, 1)),
    ("mode-F-with-nan", masks_of(lambda _: Image.fromarray(np.where(
        mask_pixels(np.float32) > 0, 0.5, np.nan).astype(np.float32)), name="a.tif"),
     Counted({}, 1, 1)),
    ("mode-RGBA-dark-blue", masks_of(rgba_mask), Counted({}, 1, 1)),
    ("mode-LA", masks_of(lambda _: Image.fromarray(mask_pixels()).convert("LA")),
     Counted({}, 1, 1)),
    ("mode-CMYK", masks_of(lambda _: Image.fromarray(mask_pixels(value=255)).convert("CMYK"),
                           name="a.tif"), Counted({}, 1, 1)),
    ("garbage-bytes", masks_of(lambda f: write(f, b"not a png")),
     Counted({"unreadable_file": 1}, 0, 0)),
    ("header-of-60000-square", masks_of(lambda f: huge_png(f, 60000, 60000)),
     Counted({"unreadable_file": 1}, 0, 0)),
    ("a-directory-named-png", masks_of(lambda f: f.mkdir()), Counted({"image_without_mask": 1},
                                                                      0, 0)),
    ("all-background", masks_of(lambda _: Image.new("L", (40, 30))),
     Counted({"empty_mask": 1}, 1, 0)),
    ("another-size", masks_of(lambda _: Image.fromarray(mask_pixels()), image_size=(80, 60)),
     Counted({"mask_size_mismatch": 1}, 1, 1)),
    ("mask-without-image", masks_of(lambda f: (Image.fromarray(mask_pixels()).save(
        f.with_name("z.png")), Image.fromarray(mask_pixels()))[1]),
     Counted({"mask_without_image": 1}, 1, 1)),
]


# --------------------------------------------------------------------------- folders, sources


def folder_with(*names: str, files=()):
    def build(tmp: Path) -> str:
        for name in names:
            picture(tmp / "f" / name)
        for name in files:
            write(tmp / "f" / name, "{}")
        return f"folder:{tmp / 'f'}"
    return build


FOLDERS = [
    ("hidden-folder-is-no-class", folder_with("cat/a.jpg", ".ipynb_checkpoints/a.jpg"),
     Counted({}, 1, 0)),
    ("run-folder-is-no-class", folder_with("cat/a.jpg", "run/overlays/a.jpg",
                                           files=["run/run.json"]), Counted({}, 1, 0)),
    ("run-folder-inside-a-class", folder_with("cat/a.jpg", "cat/run/overlays/b.jpg",
                                              files=["cat/run/maps.json"]), Counted({}, 1, 0)),
    ("unfinished-run-inside-a-class", folder_with("cat/a.jpg", "cat/r/.partial/x.jpg",
                                                  "cat/r/o/b.jpg"), Counted({}, 1, 0)),
    ("empty-class-folder", lambda t: ((t / "f" / "dog").mkdir(parents=True),
                                      folder_with("cat/a.jpg")(t))[1], Error("has no images")),
    ("nothing", lambda t: ((t / "f").mkdir(), f"folder:{t / 'f'}")[1], Error("no images found")),
]

def nested_folders(tmp: Path) -> str:
    deep = tmp / "f" / "cat"
    deep.mkdir(parents=True)
    for _ in range(1100):  # past Python's recursion limit (mkdir's parents= recurses too)
        deep = deep / "d"
        deep.mkdir()
    picture(deep / "x.jpg")
    return str(tmp / "f")


SOURCES = [
    ("folders-nested-1100-deep", nested_folders, Error("maximum recursion depth")),
    ("empty-string", lambda t: "", Error("the annotation source is empty")),
    ("format-without-path", lambda t: "cub:", Error("cub: needs a path")),
    ("nul-byte-in-path", lambda t: f"csv:{t}/a\x00.csv", Error("a\\x00.csv' does not exist")),
    ("newline-in-path", lambda t: f"{t}/a\nb.csv", Error("a\\nb.csv' does not exist")),
    ("name-too-long", lambda t: f"{t}/{'x' * 5000}.csv", Error("cannot use annotation source")),
    ("unknown-format", lambda t: f"nope:{t}", Error("unknown annotation format 'nope'")),
    ("a-fifo", lambda t: (os.mkfifo(t / "p.csv"), str(t / "p.csv"))[1],
     Error("cannot tell the annotation format")),
    ("named-fifo", lambda t: (os.mkfifo(t / "p.csv"), f"csv:{t / 'p.csv'}")[1],
     Error("is not a regular file")),
]

CASES = [pytest.param(build, expect, id=f"{reader}-{name}")
         for reader, cases in (("coco", COCO), ("labelme", LABELME), ("voc", VOC),
                               ("cub", CUB), ("wsol", WSOL), ("csv", CSV), ("masks", MASKS),
                               ("folder", FOLDERS), ("source", SOURCES))
         for name, build, expect in cases]


@pytest.mark.parametrize("build, expect", CASES)
def test_hostile_source_is_one_line_error_or_counted_issues(tmp_path, build, expect):
    try:
        _check_hostile_source(tmp_path, build, expect)
    finally:
        # rm, not shutil: pytest's own clean-up recurses and dies on the 1100-deep tree,
        # at the end of this session and of every later one on the same machine
        subprocess.run(["rm", "-rf", str(tmp_path)], check=False)


def _check_hostile_source(tmp_path, build, expect):
    source = build(tmp_path)
    if isinstance(expect, Error):
        with pytest.raises(AcolError) as error:
            read_source(source)
        message = str(error.value)
        assert expect.phrase in message and "\n" not in message, message
        return
    table = read_source(source)
    assert table.issues == expect.issues
    if expect.images is not None:
        assert len(table.images) == expect.images
    if expect.boxes is not None:
        assert len(table.boxes) == expect.boxes
    sizes = table.images[["width", "height"]].to_numpy(dtype=float)
    known = ~np.isnan(sizes).any(axis=1)
    assert (sizes[known].prod(axis=1) <= MAX_IMAGE_PIXELS).all()
    assert np.isfinite(table.boxes[["x0", "y0", "x1", "y1"]].to_numpy(dtype=float)).all()


@pytest.mark.parametrize("build", [build for name, build, _ in MASKS if name.startswith("mode")],
                         ids=[name for name, _, _ in MASKS if name.startswith("mode")])
def test_masks_of_odd_modes_give_the_tight_rectangle(tmp_path, build):
    table = read_source(build(tmp_path))
    assert table.boxes[["x0", "y0", "x1", "y1"]].values.tolist() == [MASK_BOX]


def test_a_mask_of_another_size_is_scaled_into_the_image_frame(tmp_path):
    table = read_source(masks_of(lambda _: Image.fromarray(mask_pixels()),
                                 image_size=(80, 60))(tmp_path))
    assert table.boxes[["x0", "y0", "x1", "y1"]].values.tolist() == [[6.0, 10.0, 18.0, 30.0]]
    assert table.images[["width", "height"]].values.tolist() == [[80.0, 60.0]]


def test_one_bad_cub_value_does_not_spoil_the_other_boxes(tmp_path):
    table = read_source(cub(**{"bounding_boxes.txt": "1 nan 2 5 5\n2 1 2 5 5\n"})(tmp_path))
    assert table.boxes[["image", "x0", "y0", "x1", "y1"]].values.tolist() == [
        ["c/b.jpg", 1.0, 2.0, 6.0, 7.0]]


def test_a_wsol_label_that_only_looks_like_a_digit_is_left_empty(tmp_path):
    table = read_source(wsol(**{"class_labels.txt": "val/a.jpg,007\nval/b.jpg,\u00b2\n"})(tmp_path))
    assert table.images["label"].tolist() == ["7", ""] and table.classes == ["7"]


def test_coco_bbox_that_is_a_string_never_becomes_a_box(tmp_path):
    table = read_source(coco_box(bbox="1234")(tmp_path))
    assert table.boxes[["x0", "y0", "x1", "y1"]].values.tolist() == [[1.0, 2.0, 11.0, 12.0]]


def test_windows_labelme_image_path_names_the_image_beside_the_json(tmp_path):
    table = read_source(labelme(tmp_path, GOOD_SHAPE, imagePath="..\\pics\\b.jpg"))
    assert table.images["image"].tolist() == ["b.jpg"]
