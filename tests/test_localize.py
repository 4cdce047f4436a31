"""`acol-eval localize`: maps, boxes, awkward files, resume, torchrun, overlays, real data."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from acol_eval.boxes import native_boxes, upsample_map
from acol_eval.checkpoint import save_checkpoint
from acol_eval.data import IMAGENET_MEAN, IMAGENET_STD, decode_image, eval_transform
from acol_eval.mapstore import open_maps
from acol_eval.model import build_model
from conftest import ROOT, run_cli, shared_data, write_texture_folder, write_wsol_metadata

CLASSES = ["checker", "stripes", "third"]


def make_checkpoint(path, recipe="pp", zero_heads=False, seed=0, classes=CLASSES):
    torch.manual_seed(seed)
    model = build_model("resnet18", len(classes), recipe, [0.5], "linear", 16)
    if zero_heads:
        for head in model.heads:
            torch.nn.init.zeros_(head.classifier.weight)
            torch.nn.init.zeros_(head.classifier.bias)
    save_checkpoint(path, {
        "arch": "resnet18", "recipe": recipe, "deltas": [0.5], "head": "linear",
        "feature_stride": 16, "classes": classes, "input_size": 64,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "state_dict": model.state_dict(), "epoch": 0,
    })
    return model.eval()


def synth_with_checkpoint(tmp_path, train_per_class, val_per_class):
    """A small synth set under tmp_path/s and a recipe-p checkpoint over its classes."""
    from acol_eval.synth import SynthConfig, class_names, write_synth

    write_synth(tmp_path / "s", SynthConfig(classes=3, train_per_class=train_per_class,
                                            val_per_class=val_per_class, size=64))
    names = class_names(3)
    make_checkpoint(tmp_path / "m.pt", recipe="p", classes=names)
    return tmp_path / "s", names


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_texture_folder(tmp_path_factory.mktemp("img"), 6, 3, size=72, seed=5)


def test_stored_maps_equal_maps_from_the_model(images, tmp_path):
    model = make_checkpoint(tmp_path / "m.pt")
    run = tmp_path / "run"
    result = run_cli("localize", str(images), "--out", str(run), "--checkpoint",
                     str(tmp_path / "m.pt"), "--top-k", "3", "--batch-size", "4",
                     "--workers", "0")
    assert result.returncode == 0, result.stderr
    store = open_maps(run)
    assert store.classes == CLASSES and len(store.index) == 18 * 3
    transform = eval_transform(64)
    differ = 0
    for image, rows in store.index.groupby("image", sort=False):
        batch = transform(decode_image(images / image))[None]
        classes = torch.tensor([rows["class_id"].tolist()])
        with torch.no_grad():
            expected = model.class_maps(batch, classes)[0].numpy()
        got = np.asarray(store.maps[rows["row"].to_numpy()], np.float32)
        assert np.allclose(got, expected, atol=2e-3), image
        # class-specific erasing: where two classes' first maps differ, so do their
        # second classifier's maps (the same weights, other erased positions)
        with torch.no_grad():
            per = model.classifier_maps(model.backbone(batch), classes)[0]
        if not torch.equal(per[0, 0], per[1, 0]):
            assert not torch.equal(per[0, 1], per[1, 1])
            differ += 1
    assert differ > 0
    predictions = read_rows(run / "predictions.csv")
    assert [r["image"] for r in predictions] == sorted(r["image"] for r in predictions)
    assert len(predictions) == 18 and predictions[0]["cam_threshold"] == "0.2"
    meta = json.loads((run / "run.json").read_text())
    assert meta["counts"] == {"images": 18, "failed": 0, "maps": 54, "unknown_labels": 0}
    assert len(meta["model"]["sha256"]) == 64


def blank(value=0.0):
    return np.full((375, 500), value, np.float32)  # a 500 x 375 (width x height) image


def test_boxes_from_hand_made_maps_on_a_non_square_image():
    two = blank()
    two[10:50, 20:100] = 1.0  # 40 x 80 = 3200 pixels
    two[200:230, 300:330] = 0.9  # 900 pixels
    assert native_boxes(two, 0.2).tolist() == [[20, 10, 100, 50]]
    assert native_boxes(two, 0.2, all_boxes=True).tolist() == [[20, 10, 100, 50],
                                                                [300, 200, 330, 230]]
    diagonal = blank()
    diagonal[100:120, 100:120] = 1.0
    diagonal[120:130, 120:150] = 1.0  # touches the first only at a corner
    assert native_boxes(diagonal, 0.5).tolist() == [[100, 100, 150, 130]]
    border = blank()
    border[300:375, 450:500] = 1.0
    assert native_boxes(border, 0.5).tolist() == [[450, 300, 500, 375]]
    assert native_boxes(blank(0.7), 0.2).shape == (0, 4)
    nan = blank()
    nan[0, 0] = np.nan
    assert native_boxes(nan, 0.2).shape == (0, 4)
    # a 4 x 4 low-resolution map upsampled to the image keeps its blob in place
    low = np.zeros((3, 4), np.float32)
    low[0, 3] = 1.0
    box = native_boxes(upsample_map(low, 500, 375), 0.5)[0]
    assert 375 <= box[0] and box[2] == 500 and box[1] == 0 and box[3] <= 125


def test_constant_maps_give_empty_box_fields(images, tmp_path):
    make_checkpoint(tmp_path / "zero.pt", zero_heads=True)
    run = tmp_path / "run"
    result = run_cli("localize", str(images), "--out", str(run), "--checkpoint",
                     str(tmp_path / "zero.pt"), "--workers", "0")
    assert result.returncode == 0, result.stderr
    rows = read_rows(run / "predictions.csv")
    assert all((r["x0"], r["y0"], r["x1"], r["y1"]) == ("", "", "", "") for r in rows)
    assert not np.asarray(open_maps(run).maps).any()  # constant maps are stored as zeros


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_awkward_files(tmp_path):
    folder = tmp_path / "awkward"
    (folder / "deep" / "er").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (60, 90, 3), np.uint8))  # 90 x 60
    exif = Image.Exif()
    exif[0x0112] = 8
    files = {
        "grey.jpg": encode(rgb.convert("L"), "JPEG"),
        "palette.PNG": encode(rgb.convert("P"), "PNG"),
        "rgba.png": encode(rgb.convert("RGBA"), "PNG"),
        "deep/er/cmyk.JpEg": encode(rgb.convert("CMYK"), "JPEG"),
        "sixteen.png": encode(Image.fromarray((rng.integers(0, 65535, (60, 90))).astype(
            np.uint16)), "PNG"),
        "png_inside.jpg": encode(rgb, "PNG"),
        "rotated.jpg": encode(rgb, "JPEG", exif=exif.tobytes()),
        "huge.jpg": encode(rgb.resize((4000, 3000)), "JPEG", quality=70),
        "webp.webp": encode(rgb, "WEBP"),
        "bad/garbage.jpg": b"this is not an image",
        "bad/truncated.jpg": encode(rgb, "JPEG")[:200],
        "bad/empty.png": b"",
        "notes.txt": b"not an image extension: ignored",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    make_checkpoint(tmp_path / "m.pt")
    run = tmp_path / "run"
    result = run_cli("localize", str(folder), "--out", str(run), "--checkpoint",
                     str(tmp_path / "m.pt"), "--workers", "1", "--batch-size", "3")
    assert result.returncode == 1, result.stderr
    assert "3 could not be decoded" in result.stdout
    rows = {r["image"]: r for r in read_rows(run / "predictions.csv")}
    expected_sizes = {name: (90, 60) for name in files if not name.startswith("bad/")
                      and name != "notes.txt"}
    expected_sizes["rotated.jpg"] = (60, 90)
    expected_sizes["huge.jpg"] = (4000, 3000)
    assert {k: (int(v["width"]), int(v["height"])) for k, v in rows.items()} == expected_sizes
    for row in rows.values():
        x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
        assert 0 <= x0 < x1 <= int(row["width"]) and 0 <= y0 < y1 <= int(row["height"])
    errors = read_rows(run / "errors.csv")
    assert sorted(e["image"] for e in errors) == ["bad/empty.png", "bad/garbage.jpg",
                                                  "bad/truncated.jpg"]
    assert all(e["reason"] for e in errors)


def test_resume_after_sigkill_gives_the_same_files(tmp_path):
    folder = write_texture_folder(tmp_path / "many", 60, 0, size=64, seed=2)
    make_checkpoint(tmp_path / "m.pt")
    args = ["localize", str(folder), "--checkpoint", str(tmp_path / "m.pt"), "--batch-size",
            "4", "--workers", "0", "--top-k", "2"]
    straight = tmp_path / "straight"
    assert run_cli(*args, "--out", str(straight)).returncode == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "ACOL_EVAL_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args, "--out",
                                str(killed)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    progress = killed / ".partial" / "rank0" / "progress.json"
    deadline = time.monotonic() + 300
    while process.poll() is None:
        assert time.monotonic() < deadline
        try:
            if json.loads(progress.read_text())["done"] >= 40:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "predictions.csv").exists()  # it really was cut short
    resumed = run_cli(*args, "--out", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    for name in ("predictions.csv", "maps_index.csv", "maps.json"):
        assert (straight / name).read_bytes() == (killed / name).read_bytes(), name
    assert np.array_equal(open_maps(straight).maps, open_maps(killed).maps)
    assert not (killed / ".partial").exists()


def test_rerun_with_other_arguments_is_refused(images, tmp_path):
    make_checkpoint(tmp_path / "m.pt")
    run = tmp_path / "run"
    (run / ".partial").mkdir(parents=True)
    (run / ".partial" / "arguments.json").write_text('{"top_k": 99}')
    result = run_cli("localize", str(images), "--out", str(run), "--checkpoint",
                     str(tmp_path / "m.pt"))
    assert result.returncode == 2 and "other arguments" in result.stderr
    assert (run / ".partial" / "arguments.json").read_text() == '{"top_k": 99}'


def test_two_gloo_processes_match_one(images, tmp_path):
    make_checkpoint(tmp_path / "m.pt")
    common = [str(images), "--checkpoint", str(tmp_path / "m.pt"), "--batch-size", "4",
              "--workers", "0", "--device", "cpu"]
    single = tmp_path / "single"
    assert run_cli("localize", *common, "--out", str(single)).returncode == 0
    double = tmp_path / "double"
    env = {**os.environ, "ACOL_EVAL_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", str(ROOT / "cli.py"), "localize", *common, "--out", str(double)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (single / "predictions.csv").read_bytes() == (double / "predictions.csv").read_bytes()
    assert (single / "maps_index.csv").read_bytes() == (double / "maps_index.csv").read_bytes()
    assert np.allclose(np.asarray(open_maps(single).maps, np.float32),
                       np.asarray(open_maps(double).maps, np.float32), atol=2e-3)
    assert json.loads((double / "run.json").read_text())["processes"] == 2


def test_overlay_has_the_image_size_and_the_box_colour(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    image = np.full((150, 210, 3), 128, np.uint8)
    cv2.imwrite(str(folder / "a.png"), image)
    make_checkpoint(tmp_path / "m.pt")
    run = tmp_path / "run"
    result = run_cli("localize", str(folder), "--out", str(run), "--checkpoint",
                     str(tmp_path / "m.pt"), "--overlays", str(tmp_path / "ov"),
                     "--workers", "0")
    assert result.returncode == 0, result.stderr
    row = read_rows(run / "predictions.csv")[0]
    x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
    drawn = cv2.cvtColor(cv2.imread(str(tmp_path / "ov" / "a.jpg")), cv2.COLOR_BGR2RGB)
    assert drawn.shape == (150, 210, 3)
    edge = np.concatenate([drawn[y0, x0:x1], drawn[y1 - 1, x0:x1], drawn[y0:y1, x0],
                           drawn[y0:y1, x1 - 1]]).astype(int)
    green = (edge[:, 1] > 200) & (edge[:, 0] < 90) & (edge[:, 2] < 90)
    assert green.mean() > 0.9


def test_label_maps_are_stored_for_annotation_sources(tmp_path):
    _, names = synth_with_checkpoint(tmp_path, 2, 2)
    run = tmp_path / "run"
    result = run_cli("localize", f"cub:{tmp_path / 's'}", "--split", "test", "--out", str(run),
                     "--checkpoint", str(tmp_path / "m.pt"), "--top-k", "1", "--workers", "0")
    assert result.returncode == 0, result.stderr
    rows = read_rows(run / "predictions.csv")
    assert len(rows) == 6 and {r["label"] for r in rows} == set(names)
    index = open_maps(run).index
    assert (index.groupby("image")["is_label"].sum() == 1).all()
    for row in rows:
        mine = index[index["image"] == row["image"]]
        assert set(mine["class_name"]) == {row["label"], row["pred_1"]}


@pytest.mark.parametrize("folder", ["raccoon/images", "fruits"])
def test_imagenet_mobilenet_over_real_photos(folder, tmp_path):
    source = shared_data() / folder
    run = tmp_path / "run"
    result = run_cli("localize", str(source), "--out", str(run), "--arch", "mobilenet_v2",
                     "--weights", "imagenet", "--batch-size", "16", "--top-k", "3",
                     env={"TORCH_HOME": str(tmp_path / "no-hub")}, timeout=900)
    assert result.returncode == 0, result.stderr
    rows = read_rows(run / "predictions.csv")
    assert len(rows) == (200 if folder.startswith("raccoon") else 300)
    for row in rows:
        width, height = int(row["width"]), int(row["height"])
        with Image.open(source / row["image"]) as image:
            assert (width, height) == image.size or (height, width) == image.size
        x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def test_centre_gaussian_baseline():
    from acol_eval.maps import centre_gaussian_map

    cam = centre_gaussian_map(4, 6)
    assert cam.shape == (4, 6) and np.allclose(cam, cam[::-1, ::-1])  # symmetric
    assert cam[1, 2] == cam.max() and cam[0, 0] == cam.min()
    # one side away from the centre in x: exp(-(0.5^2)/(2*0.25^2)) = exp(-2)
    wide = centre_gaussian_map(1, 1000)
    assert abs(wide[0, 0] / wide.max() - np.exp(-2)) < 0.01


def test_labels_for_a_plain_folder_come_from_another_source(tmp_path):
    _, names = synth_with_checkpoint(tmp_path, 1, 1)
    run = tmp_path / "run"
    result = run_cli("localize", str(tmp_path / "s" / "images"), "--labels",
                     f"csv:{tmp_path / 's' / 'annotations.csv'}", "--out", str(run),
                     "--checkpoint", str(tmp_path / "m.pt"), "--top-k", "1", "--workers", "0")
    assert result.returncode == 0, result.stderr
    rows = read_rows(run / "predictions.csv")
    assert [r["label"] for r in rows] == [r["image"].split("/")[1] for r in rows]
    assert open_maps(run).index["is_label"].sum() == 6


def test_wsol_metadata_with_images_elsewhere_trains_and_localises(tmp_path):
    from acol_eval.synth import SynthConfig, write_synth

    write_synth(tmp_path / "s", SynthConfig(classes=2, train_per_class=3, val_per_class=1,
                                            size=64))
    rows = read_rows(tmp_path / "s" / "annotations.csv")
    names = sorted({r["label"] for r in rows})
    train = [r for r in rows if r["split"] == "train"]
    meta = write_wsol_metadata(
        tmp_path / "meta" / "train",
        [(r["image"], names.index(r["label"]), 64, 64) for r in train],
        [f"{r['image']},{r['x0']},{r['y0']},{r['x1']},{r['y1']}" for r in train])
    images = tmp_path / "s" / "images"
    result = run_cli("train", "--data", f"wsol:{meta}", "--images", str(images), "--out",
                     str(tmp_path / "train"), "--arch", "resnet18", "--weights", "none",
                     "--epochs", "1", "--input-size", "64", "--batch-size", "4",
                     "--workers", "0")
    assert result.returncode == 0, result.stderr
    result = run_cli("localize", f"wsol:{meta}", "--image-root", str(images), "--out",
                     str(tmp_path / "run"), "--checkpoint", str(tmp_path / "train" / "last.pt"),
                     "--top-k", "1", "--workers", "0")
    assert result.returncode == 0, result.stderr
    predictions = read_rows(tmp_path / "run" / "predictions.csv")
    assert len(predictions) == 6 and {p["label"] for p in predictions} == {"0", "1"}
    assert open_maps(tmp_path / "run").index["is_label"].sum() == 6
