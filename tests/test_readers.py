"""Every annotation format into one table; bad annotations repaired or dropped, and counted."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from acol_eval.readers import read_source
from tests.conftest import shared_data


@pytest.mark.parametrize("source, fmt, images, boxes", [
    ("cub10", "cub", 543, 543), ("wsol-metadata/CUB/test", "wsol", 5794, 5794),
    ("raccoon", "voc", 200, 217), ("fruits", "labelme", 300, 582), ("horse", "masks", 49, 49),
])
def test_real_sources_are_detected_and_read(source, fmt, images, boxes):
    table = read_source(str(shared_data() / source))
    named = read_source(f"{fmt}:{shared_data() / source}")
    assert len(table.images) == len(named.images) == images
    assert len(table.boxes) == len(named.boxes) == boxes
    assert table.images["width"].notna().all()


def test_real_cub_box_past_the_edge_is_clipped_and_counted():
    table = read_source(str(shared_data() / "cub10"))
    assert table.issues == {"clipped_box": 1}
    sizes = table.images.set_index("image")
    merged = table.boxes.join(sizes, on="image")
    assert (merged["x1"] <= merged["width"]).all() and (merged["y1"] <= merged["height"]).all()


def test_horse_mask_boxes_are_the_tight_rectangle_of_the_mask():
    table = read_source(str(shared_data() / "horse"))
    assert len(table.masks) == 49 and table.classes == ["horse"]


def write_csv(path, lines):
    path.write_text("image,label,x0,y0,x1,y1\n" + "".join(line + "\n" for line in lines))
    return path


def test_csv_and_coco_of_the_same_annotations_read_to_equal_tables(tmp_path):
    rows = [("a.jpg", "cat", 1, 2, 11, 22, 100, 50), ("b.jpg", "dog", 0, 0, 5, 5, 20, 20)]
    write_csv(tmp_path / "ann.csv", [f"{n},{c},{x0},{y0},{x1},{y1}"
                                     for n, c, x0, y0, x1, y1, _, _ in rows])
    coco = {"images": [{"id": i, "file_name": r[0], "width": r[6], "height": r[7]}
                       for i, r in enumerate(rows)],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            "annotations": [{"image_id": i, "category_id": 1 + (r[1] == "dog"),
                             "bbox": [r[2], r[3], r[4] - r[2], r[5] - r[3]]}
                            for i, r in enumerate(rows)]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    from_csv = read_source(str(tmp_path / "ann.csv"))
    from_coco = read_source(str(tmp_path / "ann.json"))
    pd.testing.assert_frame_equal(from_csv.boxes, from_coco.boxes)
    assert from_csv.images[["image", "label"]].equals(from_coco.images[["image", "label"]])
    assert from_coco.images["width"].tolist() == [100, 20]


def test_every_bad_annotation_is_counted_not_fatal(tmp_path):
    (tmp_path / "images").mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "images" / "a.png")
    file = tmp_path / "ann.csv"
    file.write_bytes(
        b"image,label,x0,y0,x1,y1\n"
        b"a.png,cat,10,10,50,20\n"      # past the right edge (width 40): clipped
        b"a.png,cat,20,5,10,15\n"       # inverted: dropped
        b"a.png,cat,5,5,5,15\n"         # empty: dropped
        b"a.png,cat,1,1,4,4\n"
        b"a.png,cat,1,1,4,4\n"          # duplicate box: dropped
        b"a.png,cat,1,2\n"              # wrong column count: dropped
        b"b\xff.png,cat,1,1,4,4\n")     # non-UTF-8 bytes: replaced, counted
    table = read_source(str(file))
    assert table.issues["clipped_box"] == 1
    assert table.issues["inverted_box"] == 1
    assert table.issues["empty_box"] == 1
    assert table.issues["duplicate_box"] == 1
    assert table.issues["wrong_column_count"] == 1
    assert table.issues["non_utf8_line"] == 1
    assert table.boxes[table.boxes["image"] == "a.png"][["x0", "x1"]].values.tolist() == [
        [10.0, 40.0], [1.0, 4.0]]


def test_empty_file_and_unknown_class_are_counted(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    assert read_source(str(tmp_path / "empty.csv")).issues == {"empty_file": 1}
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 2, 2]}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert read_source(f"coco:{tmp_path / 'c.json'}").issues == {"unknown_class": 1}


def test_duplicate_image_rows_in_cub_are_counted(tmp_path):
    for name, text in {"images.txt": "1 a/x.jpg\n1 a/x.jpg\n2 a/y.jpg\n",
                       "image_class_labels.txt": "1 1\n2 9\n",
                       "train_test_split.txt": "1 0\n2 0\n", "classes.txt": "1 a\n",
                       "bounding_boxes.txt": "1 0 0 5 5\n2 0 0 5 5\n"}.items():
        (tmp_path / name).write_text(text)
    table = read_source(str(tmp_path))
    assert table.issues["duplicate_row"] == 1 and table.issues["unknown_class"] == 1
    assert table.images["image"].tolist() == ["a/x.jpg"]
