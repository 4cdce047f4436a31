import io

import numpy as np
import pytest
from PIL import Image

from acol_eval.data import decode_image
from acol_eval.errors import AcolError
from acol_eval.readers import read_cub, read_folder, read_source
from conftest import shared_data


def test_folder_reader_splits_and_classes(texture_folder):
    table = read_folder(texture_folder)
    assert table.classes == ["checker", "stripes"]
    assert table.splits == ["train", "val"]
    counts = table.images.groupby(["split", "label"]).size().to_dict()
    assert counts == {("train", "checker"): 40, ("train", "stripes"): 40,
                      ("val", "checker"): 16, ("val", "stripes"): 16}
    assert table.images["image"].iloc[0] == "train/checker/checker_000.png"


def test_folder_reader_flat_layout_and_errors(tmp_path):
    (tmp_path / "flat" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "cat" / "a.JPG")
    flat = read_folder(tmp_path / "flat")
    assert flat.splits == ["all"] and flat.images["image"].tolist() == ["cat/a.JPG"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(AcolError, match="no images found"):
        read_folder(tmp_path / "empty")
    (tmp_path / "flat" / "dog").mkdir()
    with pytest.raises(AcolError, match="class folder .*dog has no images"):
        read_folder(tmp_path / "flat")


def test_cub_reader_on_real_cub10():
    table = read_source(str(shared_data() / "cub10"))  # detected as cub
    assert len(table.classes) == 10 and table.classes[0] == "001.Black_footed_Albatross"
    assert len(table.images) == 543
    assert (table.images["split"] == "train").sum() == 300
    assert (table.images["split"] == "test").sum() == 243
    assert len(table.boxes) == 543
    first = table.boxes.iloc[0]
    # bounding_boxes.txt line 1: "1 60.0 27.0 325.0 304.0" (x y w h)
    assert first["image"] == table.images["image"].iloc[0]
    assert (first["x0"], first["y0"], first["x1"], first["y1"]) == (60.0, 27.0, 385.0, 331.0)
    assert (table.root / table.images["image"].iloc[0]).is_file()


def test_cub_and_folder_prefixes(tmp_path):
    with pytest.raises(AcolError, match="unknown annotation format 'nope'"):
        read_source("nope:" + str(tmp_path))
    with pytest.raises(AcolError, match="missing annotation file"):
        read_cub(tmp_path)


def save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_decode_awkward_images(tmp_path):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    cases = {
        "grey.jpg": save(rgb.convert("L"), "JPEG"),
        "palette.png": save(rgb.convert("P"), "PNG"),
        "rgba.png": save(rgb.convert("RGBA"), "PNG"),
        "cmyk.jpg": save(rgb.convert("CMYK"), "JPEG"),
        "png_named.jpg": save(rgb, "PNG"),
        "deep.png": save(Image.fromarray((np.arange(1500).reshape(30, 50) * 40).astype(np.uint16)),
                         "PNG"),
        "rotated.jpg": save(rgb, "JPEG", exif=exif.tobytes()),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        image = decode_image(tmp_path / name)
        assert image.mode == "RGB", name
        expected = (30, 50) if name == "rotated.jpg" else (50, 30)
        assert image.size == expected, name
    deep = np.asarray(decode_image(tmp_path / "deep.png"))
    assert deep.max() > 200 and deep.min() == 0  # 16-bit range scaled, not clipped to 255
