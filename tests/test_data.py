import io

import numpy as np
import pytest
from PIL import Image

from acol_eval.data.datasets import decode_image
from acol_eval.data.readers import read_cub, read_folder, read_source
from acol_eval.util.errors import AcolError
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


# ---------------------------------------------------------------- the decoded-image cache

import pickle  # noqa: E402

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from acol_eval.data.datasets import (  # noqa: E402
    READY,
    UNREADABLE,
    DecodedCache,
    LabelledImages,
    collate_skipping,
    file_keys,
    train_transform,
)


def small_set(texture_folder, cache=None):
    table = read_folder(texture_folder)
    train = table.images[table.images["split"] == "train"].iloc[::8]  # 10 images
    items = [(image, int(label == "stripes")) for image, label in
             zip(train["image"], train["label"])]
    return LabelledImages(texture_folder, items, train_transform(48, 56), cache)


def epoch_tensors(dataset, workers):
    torch.manual_seed(7)
    loader = DataLoader(dataset, batch_size=4, num_workers=workers,
                        collate_fn=collate_skipping, generator=torch.Generator().manual_seed(1),
                        shuffle=True)
    return [(images, labels) for images, labels, _ in loader]


def test_cached_tensors_equal_uncached_ones_bit_for_bit(texture_folder):
    plain = small_set(texture_folder)
    cache = DecodedCache(56, len(plain))
    cached = small_set(texture_folder, cache)
    first = epoch_tensors(cached, 1)  # a forked worker fills the shared cache...
    assert cache.counts() == {"unseen": 0, "ready": 10, "unreadable": 0}  # ...seen here
    for workers in (1, 0):  # then read back from the cache, in a worker and in-process
        expected = epoch_tensors(plain, workers)
        for got in ([first, epoch_tensors(cached, 1)] if workers else
                    [epoch_tensors(cached, 0)]):
            assert len(got) == len(expected) == 3
            for (a, la), (b, lb) in zip(got, expected):
                assert torch.equal(a, b) and torch.equal(la, lb)


def test_disk_cache_is_reused_for_the_same_files_and_redone_for_changed_ones(
        texture_folder, tmp_path):
    dataset = small_set(texture_folder)
    key = {"side": 56, "files": file_keys(texture_folder, [i for i, _ in dataset.items])}
    first = DecodedCache(56, len(dataset), tmp_path / "c", key)
    assert not first.reused
    dataset.cache = first
    for index in range(len(dataset)):
        dataset[index]
    again = DecodedCache(56, len(dataset), tmp_path / "c", key)  # a killed run, rerun
    assert again.reused and again.counts()["ready"] == 10
    assert torch.equal(torch.from_numpy(again.pixels(3).copy()),
                       torch.from_numpy(first.pixels(3).copy()))
    spawned = pickle.loads(pickle.dumps(again))  # a spawned worker maps the same files
    assert spawned.state(3) == READY and (spawned.pixels(3) == first.pixels(3)).all()
    changed = {**key, "files": [[*key["files"][0][:2], 1], *key["files"][1:]]}  # an mtime
    fresh = DecodedCache(56, len(dataset), tmp_path / "c", changed)
    assert not fresh.reused and fresh.counts()["ready"] == 0


def test_unreadable_images_are_remembered_as_such(tmp_path):
    Image.new("RGB", (20, 20), "red").save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    cache = DecodedCache(16, 2)
    dataset = LabelledImages(tmp_path, [("good.png", 0), ("bad.png", 1)],
                             train_transform(16, 16), cache)
    assert dataset[1] is None and cache.state(1) == UNREADABLE
    assert dataset[0][0].shape == (3, 16, 16) and cache.state(0) == READY
    (tmp_path / "bad.png").unlink()  # read from the cache now, not the disk
    assert dataset[1] is None


def test_a_fifo_among_training_images_is_skipped_not_waited_on(tmp_path):
    """A FIFO named like an image (in a class folder or a list) would block open() for
    ever; decoding refuses non-regular files first, so training skips and counts it."""
    import os
    import signal
    import time

    from acol_eval.data.datasets import LabelledImages, eval_transform

    os.mkfifo(tmp_path / "pipe.jpg")
    dataset = LabelledImages(tmp_path, [("pipe.jpg", 0)], eval_transform(32))
    def hung(*_):
        raise TimeoutError("decoding a FIFO hung")

    previous = signal.signal(signal.SIGALRM, hung)  # a hang fails this test, not the suite
    signal.alarm(20)
    began = time.monotonic()
    try:
        assert dataset[0] is None
        # the loader swallows decode errors, the alarm's too: the time tells a hang
        assert time.monotonic() - began < 10
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
