"""Every annotation format into one table; bad annotations repaired or dropped, and counted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from acol_eval.data.readers import detect_format, read_source
from acol_eval.util.errors import AcolError
from conftest import shared_data, write_wsol_metadata


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
    horse = shared_data() / "horse"
    table = read_source(str(horse))
    assert len(table.masks) == 49 and table.classes == ["horse"] and table.issues == {}
    boxes = table.boxes.set_index("image")
    for image, mask in zip(table.masks["image"], table.masks["mask"]):
        pixels = np.asarray(Image.open(horse / mask))  # values 0/1 as shipped
        rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
        tight = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)  # x1, y1 exclusive
        assert tuple(boxes.loc[image, ["x0", "y0", "x1", "y1"]]) == tight, image
        # the rectangle is tight: every edge row and column holds a horse pixel
        assert pixels[tight[1]].any() and pixels[tight[3] - 1].any()
        assert pixels[:, tight[0]].any() and pixels[:, tight[2] - 1].any()
    assert boxes.loc["horse279.png", ["x0", "y0", "x1", "y1"]].tolist() == [
        *_tight_box_of(horse / "mask_test" / "horse279.png")]


def _tight_box_of(mask_file):
    """The same rectangle by a second route: the bounding box of the nonzero pixels as
    Pillow computes it (left, upper, right, lower; right and lower exclusive)."""
    return Image.open(mask_file).point(lambda v: 255 if v else 0).getbbox()


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


# --------------------------------------------------------------------------- image roots


def test_csv_images_elsewhere_resolve_under_image_root_and_give_their_sizes(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 30)).save(photos / "a.png")
    (tmp_path / "notes").mkdir()
    file = write_csv(tmp_path / "notes" / "ann.csv", ["a.png,cat,10,10,50,20"])
    alone = read_source(str(file))
    assert alone.root == file.parent and alone.images["width"].isna().all()
    assert alone.boxes[["x1"]].values.tolist() == [[50.0]]  # no size: nothing to clip to
    table = read_source(str(file), image_root=photos)
    assert table.root == photos
    assert table.images[["width", "height"]].values.tolist() == [[40.0, 30.0]]
    assert table.boxes[["x0", "y0", "x1", "y1"]].values.tolist() == [[10.0, 10.0, 40.0, 20.0]]
    assert table.issues == {"clipped_box": 1}


def test_absolute_image_paths_are_kept_and_honoured_whatever_the_root(tmp_path):
    photos = tmp_path / "elsewhere"
    photos.mkdir()
    Image.new("RGB", (64, 48)).save(photos / "x.jpg")
    absolute = (photos / "x.jpg").as_posix()
    file = write_csv(tmp_path / "ann.csv", [f"{absolute},dog,1,2,3,4"])
    coco = {"images": [{"id": 7, "file_name": absolute}],
            "categories": [{"id": 1, "name": "dog"}],
            "annotations": [{"image_id": 7, "category_id": 1, "bbox": [1, 2, 2, 2]}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    for table in (read_source(str(file)), read_source(f"coco:{tmp_path / 'c.json'}"),
                  read_source(str(file), image_root=tmp_path / "elsewhere")):
        assert table.images["image"].tolist() == [absolute]
        assert (table.root / table.images["image"][0]) == photos / "x.jpg"
        assert table.images[["width", "height"]].values.tolist() == [[64.0, 48.0]]
        assert table.boxes[["x0", "y0", "x1", "y1"]].values.tolist() == [[1.0, 2.0, 3.0, 4.0]]


def test_coco_sizes_are_read_under_the_image_root(tmp_path):
    (tmp_path / "val2017").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "val2017" / "a.jpg")
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 3, "name": "x"}],
            "annotations": [{"image_id": 1, "category_id": 3, "bbox": [5, 5, 100, 100]}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances.json").write_text(json.dumps(coco))
    source = f"coco:{tmp_path / 'annotations' / 'instances.json'}"
    assert read_source(source).images["width"].isna().all()
    table = read_source(source, image_root=str(tmp_path / "val2017"))
    assert table.images[["width", "height"]].values.tolist() == [[20.0, 10.0]]
    assert table.boxes[["x1", "y1"]].values.tolist() == [[20.0, 10.0]]


def test_image_root_that_is_not_a_folder_is_one_line_error(tmp_path):
    write_csv(tmp_path / "ann.csv", ["a.png,cat,1,1,2,2"])
    for root in (tmp_path / "nope", tmp_path / "ann.csv", ""):
        with pytest.raises(AcolError, match="does not exist or is not a folder") as error:
            read_source(str(tmp_path / "ann.csv"), image_root=root)
        assert "\n" not in str(error.value)


def test_wsol_sizes_come_from_the_images_only_under_an_image_root(tmp_path):
    meta = write_wsol_metadata(tmp_path / "meta" / "test", [("val/a.png", "0", 40, 30)],
                               ["val/a.png,1,1,5,5"])
    (meta / "image_sizes.txt").write_text("")
    Image.new("RGB", (16, 12)).save(tmp_path / "a.png")
    (tmp_path / "images" / "val").mkdir(parents=True)
    Image.new("RGB", (16, 12)).save(tmp_path / "images" / "val" / "a.png")
    assert read_source(f"wsol:{meta}").images["width"].isna().all()
    table = read_source(f"wsol:{meta}", image_root=tmp_path / "images")
    assert table.images[["width", "height"]].values.tolist() == [[16.0, 12.0]]
    assert table.issues == {}


# --------------------------------------------------------------------------- masks


def test_openimages_metadata_as_shipped_reads_with_unknown_sizes_and_its_masks(tmp_path):
    import shutil

    real = shared_data() / "wsol-metadata" / "OpenImages" / "val"
    copy = shutil.copytree(real, tmp_path / "OpenImages" / "val")
    assert (copy / "image_sizes.txt").stat().st_size == 0  # as shipped
    table = read_source(str(copy))
    assert table.issues == {}
    assert len(table.images) == 2500 and table.images["width"].isna().all()
    assert table.images["height"].isna().all()
    lines = [line for line in (real / "localization.txt").read_text().splitlines() if line]
    assert len(table.masks) == len(lines) == 3854
    assert len(table.boxes) == 0  # mask-only annotations: no invented boxes
    per_image = table.masks.groupby("image").size()
    assert per_image.max() > 1  # several instance masks of one image stay separate rows
    first = lines[0].split(",")
    row = table.masks.iloc[0]
    assert [row["image"], row["mask"], row["ignore"]] == first
    assert table.classes[:3] == ["0", "1", "2"] and len(table.classes) == 100


def _mask_source(tmp_path, mask: Image.Image, image_size=None):
    (tmp_path / "pics").mkdir(exist_ok=True)
    (tmp_path / "masks").mkdir(exist_ok=True)
    Image.new("RGB", image_size or mask.size).save(tmp_path / "pics" / "a.jpg")
    mask.save(tmp_path / "masks" / "a.png")
    return read_source(f"masks:{tmp_path}")


def test_a_mask_of_another_size_than_its_image_is_counted_and_its_box_scaled(tmp_path):
    pixels = np.zeros((30, 40), np.uint8)
    pixels[5:15, 3:9] = 1
    table = _mask_source(tmp_path, Image.fromarray(pixels), image_size=(80, 60))
    assert table.issues == {"mask_size_mismatch": 1}
    assert table.images[["width", "height"]].values.tolist() == [[80.0, 60.0]]
    assert table.boxes[["x0", "y0", "x1", "y1"]].values.tolist() == [[6.0, 10.0, 18.0, 30.0]]


def test_an_empty_mask_has_no_box_but_keeps_its_image_and_mask(tmp_path):
    table = _mask_source(tmp_path, Image.new("L", (40, 30)))
    assert table.issues == {"empty_mask": 1}
    assert len(table.images) == 1 and len(table.masks) == 1 and len(table.boxes) == 0


# --------------------------------------------------------------------------- detection


def _images(folder, *names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(folder / name)
    return folder


def test_a_stray_json_or_a_run_folder_leaves_an_image_folder_a_folder(tmp_path):
    folder = _images(tmp_path / "shots", "cat/a.jpg", "dog/b.jpg")
    (folder / "config.json").write_text('{"lr": 0.1}')
    (folder / "cat" / "notes.json").write_text("[1, 2]")
    assert detect_format(folder) == "folder"
    run = folder / "run1"
    run.mkdir()
    (run / "run.json").write_text('{"images": 2}')
    (run / "maps.json").write_text('{"format": "acol-eval-maps"}')
    _images(run, "overlays/a.jpg")
    (run / ".partial").mkdir()
    assert detect_format(folder) == "folder"
    table = read_source(str(folder))
    assert table.classes == ["cat", "dog"] and len(table.images) == 2


def test_labelme_is_detected_from_a_labelme_file_and_reads_past_run_folders(tmp_path):
    folder = _images(tmp_path / "l", "a.jpg")
    shape = {"label": "cat", "points": [[1, 1], [5, 6]], "shape_type": "rectangle"}
    (folder / "a.json").write_text(json.dumps(
        {"shapes": [shape], "imagePath": "a.jpg", "imageWidth": 8, "imageHeight": 8}))
    (folder / "run").mkdir()
    (folder / "run" / "run.json").write_text("{}")
    (folder / "run" / "extra.json").write_text(json.dumps({"shapes": [], "imagePath": "z.jpg"}))
    assert detect_format(folder) == "labelme"
    table = read_source(str(folder))
    assert table.images["image"].tolist() == ["a.jpg"] and table.issues == {}
    assert table.boxes[["x0", "y0", "x1", "y1"]].values.tolist() == [[1.0, 1.0, 5.0, 6.0]]


def test_a_folder_whose_class_is_named_mask_is_not_a_mask_source(tmp_path):
    folder = _images(tmp_path / "faces", "with_mask/a.jpg", "no_cover/b.jpg")
    assert detect_format(folder) == "folder"
    _images(tmp_path / "seg", "images/a.jpg", "masks/a.png")
    assert detect_format(tmp_path / "seg") == "masks"


def test_real_fruits_stay_labelme_and_a_stray_xml_is_not_voc(tmp_path):
    assert detect_format(shared_data() / "fruits") == "labelme"
    folder = _images(tmp_path / "p", "cat/a.jpg")
    (folder / "camera.xml").write_text("<exif><model>x</model></exif>")
    assert detect_format(folder) == "folder"


def test_csv_names_that_already_start_with_images_still_find_their_images(tmp_path):
    Image.new("RGB", (40, 30)).save((tmp_path / "images").mkdir() or tmp_path / "images" / "a.png")
    with_prefix = read_source(str(write_csv(tmp_path / "a.csv", ["images/a.png,cat,1,1,50,5"])))
    assert with_prefix.root == tmp_path
    plain = read_source(str(write_csv(tmp_path / "b.csv", ["a.png,cat,1,1,50,5"])))
    assert plain.root == tmp_path / "images"
    for table in (with_prefix, plain):
        assert table.images[["width", "height"]].values.tolist() == [[40.0, 30.0]]
        assert table.boxes["x1"].tolist() == [40.0] and table.issues == {"clipped_box": 1}


IMAGENET_XML = """<annotation><folder>val</folder><filename>{name}</filename>
<size><width>40</width><height>30</height><depth>3</depth></size>
<object><name>n01751748</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>50</xmax>
<ymax>20</ymax></bndbox></object></annotation>"""


def test_imagenet_xml_filename_without_extension_names_the_image_file(tmp_path):
    name = "ILSVRC2012_val_00000001"
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / f"{name}.xml").write_text(IMAGENET_XML.format(name=name))
    (tmp_path / "classes.txt").write_text("n01751748 sea_snake\n")
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "images" / f"{name}.JPEG", "JPEG")
    table = read_source(str(tmp_path))
    assert table.images[["image", "label"]].values.tolist() == [[f"{name}.JPEG", "sea_snake"]]
    assert table.boxes[["image", "x1"]].values.tolist() == [[f"{name}.JPEG", 40.0]]
    assert (table.root / table.images["image"][0]).is_file()
    (tmp_path / "images" / f"{name}.JPEG").unlink()
    assert read_source(str(tmp_path)).images["image"].tolist() == [name]  # nothing to find
