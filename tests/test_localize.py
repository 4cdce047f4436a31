"""`localize` as a library: maps, boxes, rows, awkward files, resume, torchrun, overlays,
real data, and hostile inputs (the CLI's messages are in test_cli.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from acol_eval.data.datasets import decode_image, eval_transform
from acol_eval.data.imagelist import label_indices, list_images
from acol_eval.maps.boxes import native_boxes, upsample_map
from acol_eval.maps.localizeconfig import LocalizeConfig
from acol_eval.maps.localizerows import (
    image_boxes,
    prediction_header,
    prediction_row,
    stored_maps,
)
from acol_eval.maps.mapstore import MapStoreWriter, open_maps
from acol_eval.util.errors import AcolError
from conftest import (
    CLASSES,
    ROOT,
    assert_one_line_error,
    make_checkpoint,
    read_rows,
    run_cli,
    run_localize,
    shared_data,
    synth_with_checkpoint,
    tree_state,
    write_images,
    write_texture_folder,
    write_wsol_metadata,
)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_texture_folder(tmp_path_factory.mktemp("img"), 6, 3, size=72, seed=5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    make_checkpoint(path)
    return path


@contextmanager
def deadline(seconds):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class Stop(Exception):
    """Raised from the log callback: the run stops right after recording itself in
    .partial, as a kill at that moment would leave it."""


def stop(message):
    raise Stop(message)


# --------------------------------------------------------------------------- maps and boxes


def test_stored_maps_equal_maps_from_the_model(images, tmp_path):
    model = make_checkpoint(tmp_path / "m.pt")
    run = tmp_path / "run"
    result = run_localize(images, run, checkpoint=str(tmp_path / "m.pt"), top_k=3, batch_size=4)
    assert (result.images, result.failed, result.maps) == (18, 0, 54)
    store = open_maps(run)
    assert store.classes == CLASSES and len(store.index) == 18 * 3
    transform = eval_transform(64)
    differ = 0
    for image, rows in list(store.index.groupby("image", sort=False))[::3]:
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
    assert meta["arguments"]["workers"] == 0 and meta["arguments"]["seed"] == 0
    assert not (run / ".partial").exists() and not (run / "errors.csv").exists()


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


def test_image_boxes_and_rows_from_a_hand_made_batch():
    low = np.zeros((2, 4), np.float16)
    low[1, 0] = 1.0  # bottom-left quarter of a 400 x 100 image
    cam, boxes = image_boxes(low, 400, 100, 0.5, all_boxes=False)
    assert cam.shape == (100, 400)
    (x0, y0, x1, y1), = boxes.tolist()
    assert x0 == 0 and y1 == 100 and 100 <= x1 <= 150 and 25 <= y0 <= 50
    predicted, scores = np.array([2, 0]), np.array([0.7, 0.2])
    # the label (1) is not predicted: its map is stored after the top k, rank 0
    assert stored_maps(predicted, 1, CLASSES) == [
        (0, 2, "third", 1, 0), (1, 0, "checker", 2, 0), (2, 1, "stripes", 0, 1)]
    assert stored_maps(predicted, 0, CLASSES) == [(0, 2, "third", 1, 0), (1, 0, "checker", 2, 1)]
    assert stored_maps(predicted, -1, CLASSES)[1] == (1, 0, "checker", 2, 0)
    row = prediction_row(7, "a.jpg", (400, 100), 1, CLASSES, predicted, scores, boxes, 0.5)
    assert row[:7] == [7, "a.jpg", 400, 100, "stripes", "third", "checker"]
    assert row[7:9] == ["0.700000", "0.200000"] and row[-1] == 0.5
    empty = prediction_row(0, "b.jpg", (4, 4), -1, CLASSES, predicted, scores,
                           np.zeros((0, 4)), 0.2)
    assert empty[4] == "" and empty[9:13] == ["", "", "", ""]
    assert len(prediction_header(2)) == len(row) - 1


def test_label_indices_take_names_and_plain_ascii_ids():
    ids, unknown = label_indices(["stripes", None, "2", "²", "7", float("nan"), "dog"], CLASSES)
    assert ids == [1, -1, 2, -1, -1, -1, -1] and unknown == 3


def test_map_store_writer_round_trips_and_leaves_nothing_when_interrupted(tmp_path):
    maps = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 10
    with MapStoreWriter(tmp_path, 3, 4) as store:
        store.add("a.jpg", 1, "stripes", 1, 0, maps[0])
        store.add("a.jpg", 0, "checker", 0, 1, maps[1])
        assert store.finish(CLASSES) == 2
    opened = open_maps(tmp_path)
    assert np.array_equal(opened.maps, maps.astype(np.float16))
    assert opened.index["pred_rank"].tolist() == [1, 0] and opened.classes == CLASSES
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(RuntimeError), MapStoreWriter(other, 3, 4) as store:
        store.add("a.jpg", 1, "stripes", 1, 0, maps[0])
        raise RuntimeError("killed")
    assert list(other.iterdir()) == []


def test_constant_maps_give_empty_box_fields(images, tmp_path):
    make_checkpoint(tmp_path / "zero.pt", zero_heads=True)
    run = tmp_path / "run"
    run_localize(images, run, checkpoint=str(tmp_path / "zero.pt"))
    rows = read_rows(run / "predictions.csv")
    assert len(rows) == 18
    assert all((r["x0"], r["y0"], r["x1"], r["y1"]) == ("", "", "", "") for r in rows)
    assert not np.asarray(open_maps(run).maps).any()  # constant maps are stored as zeros


# --------------------------------------------------------------------------- awkward files


def encode(image, fmt, **kwargs):
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_awkward_files(tmp_path, checkpoint):
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
    run = tmp_path / "run"
    result = run_localize(folder, run, checkpoint=str(checkpoint), workers=1, batch_size=3)
    assert (result.images, result.failed) == (9, 3)
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


def test_fifo_folder_and_dangling_link_in_a_list_are_error_rows(tmp_path, checkpoint):
    """A FIFO in a list file used to block the sweep forever."""
    write_images(tmp_path, ["good.png"])
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    listing = tmp_path / "list.txt"
    listing.write_text("good.png\n\n# a comment\n  pipe.jpg  \nfolder.jpg\ngone.jpg\n"
                       "missing.jpg\ngood.png\n")
    with deadline(120):
        result = run_localize(listing, tmp_path / "run", checkpoint=str(checkpoint))
    assert (result.images, result.failed) == (1, 4)
    reasons = {e["image"]: e["reason"] for e in read_rows(tmp_path / "run" / "errors.csv")}
    assert set(reasons) == {"pipe.jpg", "folder.jpg", "gone.jpg", "missing.jpg"}
    assert reasons["pipe.jpg"] == "OSError: not a regular file (a FIFO, device or socket)"
    assert reasons["folder.jpg"] == "OSError: a folder, not an image file"
    assert reasons["missing.jpg"].startswith("FileNotFoundError")


def test_a_folder_scan_skips_fifos(tmp_path):
    write_images(tmp_path, ["a.png"])
    os.mkfifo(tmp_path / "pipe.png")
    assert list_images(str(tmp_path)).images == ["a.png"]


def test_a_list_whose_entries_all_fail_keeps_nothing(tmp_path, checkpoint):
    """No decodable image used to end in ZeroDivisionError at the merge; such a run now
    ends in one line (exit 1) and keeps nothing that would block its --out."""
    from acol_eval.maps.localization import NothingLocalised

    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    listing = tmp_path / "list.txt"
    listing.write_text("bad.jpg\nmissing.png\n")
    with pytest.raises(NothingLocalised, match=r"\(2 failures; first: bad\.jpg: "):
        run_localize(listing, tmp_path / "run", checkpoint=str(checkpoint))
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_with_input_size_zero_is_refused(tmp_path, images):
    make_checkpoint(tmp_path / "zero.pt", input_size=0)
    with pytest.raises(AcolError, match="input_size 0"):
        run_localize(images, tmp_path / "run", checkpoint=str(tmp_path / "zero.pt"))
    make_checkpoint(tmp_path / "std.pt", std=[0.2, 0.0, 0.2])
    with pytest.raises(AcolError, match="std"):
        run_localize(images, tmp_path / "run", checkpoint=str(tmp_path / "std.pt"))
    assert not (tmp_path / "run").exists()


def test_names_that_are_not_utf8_are_error_rows_without_a_crash(tmp_path, checkpoint):
    """OpenCV's imwrite segfaulted on such a name with --overlays; in a
    subprocess, so that a crash fails this test instead of killing the suite."""
    folder = tmp_path / "img"
    write_images(folder, ["good.png"])
    os.rename(folder / "good.png", os.fsencode(folder) + b"/caf\xe9.png")
    write_images(folder, ["good.png"], seed=1)
    result = run_cli("localize", str(folder), "--out", str(tmp_path / "run"), "--checkpoint",
                     str(checkpoint), "--workers", "0", "--overlays", str(tmp_path / "ov"),
                     timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "1 could not be read or decoded" in result.stdout
    errors = read_rows(tmp_path / "run" / "errors.csv")
    assert [e["image"] for e in errors] == ["caf\\xe9.png"]
    assert "UTF-8" in errors[0]["reason"]
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == [".acol-eval.lock",
                                                                   "good.png.jpg"]


def test_a_name_with_a_carriage_return_or_newline_localizes_and_reads_back(tmp_path,
                                                                            checkpoint):
    """The per-process shards are read back by the merge: an unquoted CR in a name
    split its row there (a traceback, and the same on every rerun)."""
    names = ["a\rb.png", "c\nd.png", "plain.png"]
    write_images(tmp_path / "img", names)
    result = run_localize(tmp_path / "img", tmp_path / "run", checkpoint=str(checkpoint))
    assert (result.images, result.failed) == (3, 0)
    predicted = read_rows(tmp_path / "run" / "predictions.csv")
    assert sorted(row["image"] for row in predicted) == sorted(names)


def test_a_list_file_that_is_not_utf8_is_read(tmp_path, checkpoint):
    write_images(tmp_path, ["a.png"])
    (tmp_path / "list.txt").write_bytes(b"a.png\nb\xff.png\n")
    result = run_localize(tmp_path / "list.txt", tmp_path / "run", checkpoint=str(checkpoint))
    assert (result.images, result.failed) == (1, 1)
    assert read_rows(tmp_path / "run" / "errors.csv")[0]["image"] == "b\\xff.png"


# --------------------------------------------------------------------------- resume


def test_resume_after_sigkill_gives_the_same_files(tmp_path):
    folder = write_texture_folder(tmp_path / "many", 60, 0, size=64, seed=2)
    make_checkpoint(tmp_path / "m.pt")
    args = ["localize", str(folder), "--checkpoint", str(tmp_path / "m.pt"), "--batch-size",
            "4", "--workers", "0", "--top-k", "2"]
    straight = tmp_path / "straight"
    run_localize(folder, straight, checkpoint=str(tmp_path / "m.pt"), batch_size=4, top_k=2)
    killed = tmp_path / "killed"
    env = {**os.environ, "ACOL_EVAL_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args, "--out",
                                str(killed)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    progress = killed / ".partial" / "rank0" / "progress.json"
    limit = time.monotonic() + 300
    while process.poll() is None:
        assert time.monotonic() < limit
        try:
            if json.loads(progress.read_text())["done"] >= 40:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "predictions.csv").exists()  # it really was cut short
    messages = []
    result = run_localize(folder, killed, log=messages.append, checkpoint=str(tmp_path / "m.pt"),
                          batch_size=4, top_k=2)
    assert result.resumed and messages[0].startswith("resuming 120 images")
    for name in ("predictions.csv", "maps_index.csv", "maps.json"):
        assert (straight / name).read_bytes() == (killed / name).read_bytes(), name
    assert np.array_equal(open_maps(straight).maps, open_maps(killed).maps)
    assert not (killed / ".partial").exists()


def test_score_and_boxes_say_an_unfinished_run_must_be_finished(images, tmp_path, checkpoint):
    run = tmp_path / "run"
    with pytest.raises(Stop):
        run_localize(images, run, log=stop, checkpoint=str(checkpoint))
    (tmp_path / "ann.csv").write_text("image,label,x0,y0,x1,y1\n"
                                      "train/checker/checker_000.png,checker,1,1,9,9\n")
    for command in (["boxes", str(run), "--out", str(tmp_path / "new"), "--cam-threshold", "0.5"],
                    ["score", str(run), "--annotations", f"csv:{tmp_path / 'ann.csv'}",
                     "--out", str(tmp_path / "rep")]):
        assert_one_line_error(run_cli(*command), 2, "is an unfinished localize run",
                              "rerun the same localize command")
    assert not (tmp_path / "new").exists() and not (tmp_path / "rep").exists()


def test_a_resumed_run_gives_no_speed_it_did_not_measure(images, tmp_path, checkpoint):
    """The images of a resumed run were mostly localised by the killed call: dividing all
    of them by this call's seconds would print a speed nobody measured."""
    run = tmp_path / "run"
    with pytest.raises(Stop):
        run_localize(images, run, log=stop, checkpoint=str(checkpoint))
    result = run_cli("localize", str(images), "--out", str(run), "--checkpoint",
                     str(checkpoint), "--workers", "0")
    assert result.returncode == 0, result.stderr
    assert "localised 18 images (finished a resumed run in " in result.stdout
    assert "img/s" not in result.stdout.splitlines()[-1]


def test_rerun_with_other_arguments_is_refused(images, tmp_path, checkpoint):
    run = tmp_path / "run"
    with pytest.raises(Stop):
        run_localize(images, run, log=stop, checkpoint=str(checkpoint))
    record = (run / ".partial" / "record.json").read_bytes()
    with pytest.raises(AcolError, match=r"other arguments \(--top-k 5 \(now 2\)\)"):
        run_localize(images, run, checkpoint=str(checkpoint), top_k=2)
    with pytest.raises(AcolError, match=r"\(--cam-threshold None \(now 0\.5\), cam threshold "
                                        r"0\.2 \(now 0\.5\)\)"):
        run_localize(images, run, checkpoint=str(checkpoint), cam_threshold=0.5)
    assert (run / ".partial" / "record.json").read_bytes() == record
    # --workers, --device and the like may change between the parts of a run
    result = run_localize(images, run, checkpoint=str(checkpoint), workers=1, device="cpu")
    assert result.resumed and result.images == 18


def test_a_checkpoint_from_before_its_runs_last_epoch_is_said_and_recorded(images, tmp_path):
    """best.pt of a killed run (or one chosen early) is not the finished model: localize
    says which epoch of how many it holds, and run.json records both."""
    make_checkpoint(tmp_path / "early.pt", epoch=1, args={"epochs": 5})
    make_checkpoint(tmp_path / "done.pt", epoch=5, args={"epochs": 5})
    lines: list[str] = []
    run_localize(images, tmp_path / "early", log=lines.append,
                 checkpoint=str(tmp_path / "early.pt"))
    assert [line for line in lines if "epoch" in line] == [
        "note: the checkpoint holds epoch 1 of its run's 5 (best.pt is the epoch of best "
        "validation accuracy, or the run stopped early: train --resume finishes it)"]
    model = json.loads((tmp_path / "early" / "run.json").read_text())["model"]
    assert (model["epoch"], model["epochs"]) == (1, 5)
    lines.clear()
    run_localize(images, tmp_path / "done", log=lines.append,
                 checkpoint=str(tmp_path / "done.pt"))
    assert not [line for line in lines if "epoch" in line]


def test_resume_refuses_a_rewritten_checkpoint(images, tmp_path):
    """A checkpoint rewritten at the same path between kill and rerun."""
    make_checkpoint(tmp_path / "m.pt", seed=0)
    run = tmp_path / "run"
    with pytest.raises(Stop):
        run_localize(images, run, log=stop, checkpoint=str(tmp_path / "m.pt"))
    before = tree_state(run)
    make_checkpoint(tmp_path / "m.pt", seed=1)
    with pytest.raises(AcolError, match="another model"):
        run_localize(images, run, checkpoint=str(tmp_path / "m.pt"))
    assert tree_state(run) == before


def test_resume_refuses_changed_images(tmp_path, checkpoint):
    folder = write_images(tmp_path / "img", ["a.png", "b.png"])
    run = tmp_path / "run"
    with pytest.raises(Stop):
        run_localize(folder, run, log=stop, checkpoint=str(checkpoint))
    original, info = (folder / "b.png").read_bytes(), os.stat(folder / "b.png")
    write_images(folder, ["b.png"], size=(80, 56), seed=3)  # same name, new content
    with pytest.raises(AcolError, match="other images"):
        run_localize(folder, run, checkpoint=str(checkpoint))
    (folder / "b.png").write_bytes(original)
    os.utime(folder / "b.png", ns=(info.st_atime_ns, info.st_mtime_ns))
    write_images(folder, ["c.png"])  # b.png as it was, but one image more
    with pytest.raises(AcolError, match="other images"):
        run_localize(folder, run, checkpoint=str(checkpoint))
    (folder / "c.png").unlink()
    assert run_localize(folder, run, checkpoint=str(checkpoint)).resumed


def test_a_failed_start_leaves_nothing_and_the_corrected_command_works(tmp_path, images,
                                                                        checkpoint):
    """A bad checkpoint or an empty folder used to leave .partial behind."""
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    run = tmp_path / "run"
    with pytest.raises(AcolError, match="not a readable acol-eval checkpoint"):
        run_localize(images, run, checkpoint=str(tmp_path / "bad.pt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AcolError, match="no images found"):
        run_localize(tmp_path / "empty", run, checkpoint=str(checkpoint))
    assert not run.exists()
    assert run_localize(images, run, checkpoint=str(checkpoint)).images == 18


def test_random_models_are_seeded(tmp_path):
    """`--arch X --weights none` drew a new model every run."""
    folder = write_images(tmp_path / "img", ["a.png", "b.png"])
    common = {"arch": "resnet18", "weights": "none", "top_k": 2}
    run_localize(folder, tmp_path / "one", **common)
    run_localize(folder, tmp_path / "two", **common)
    run_localize(folder, tmp_path / "three", seed=1, **common)
    one, two, three = (np.asarray(open_maps(tmp_path / n).maps, np.float32)
                       for n in ("one", "two", "three"))
    assert np.array_equal(one, two) and one.std() > 0
    assert not np.allclose(one, three)
    assert (tmp_path / "one" / "predictions.csv").read_bytes() == \
        (tmp_path / "two" / "predictions.csv").read_bytes()
    assert json.loads((tmp_path / "three" / "run.json").read_text())["model"]["seed"] == 1


def test_two_gloo_processes_match_one(images, tmp_path, checkpoint):
    common = [str(images), "--checkpoint", str(checkpoint), "--batch-size", "4",
              "--workers", "0", "--device", "cpu"]
    single = tmp_path / "single"
    run_localize(images, single, checkpoint=str(checkpoint), batch_size=4, device="cpu")
    double = tmp_path / "double"
    env = {**os.environ, "ACOL_EVAL_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", str(ROOT / "cli.py"), "localize", *common, "--out", str(double)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    # one process with 2 threads against 2 processes with 1 thread each: oneDNN's
    # channels_last kernels split their sums by thread, so scores may differ in the last
    # printed digit; everything else (classes, boxes, order) must be equal
    one, two = (pd.read_csv(f / "predictions.csv", keep_default_na=False)
                for f in (single, double))
    scores = [c for c in one.columns if c.startswith("score_")]
    pd.testing.assert_frame_equal(one.drop(columns=scores), two.drop(columns=scores))
    assert np.allclose(one[scores], two[scores], atol=2e-6, rtol=0)
    assert (single / "maps_index.csv").read_bytes() == (double / "maps_index.csv").read_bytes()
    assert np.allclose(np.asarray(open_maps(single).maps, np.float32),
                       np.asarray(open_maps(double).maps, np.float32), atol=2e-3)
    assert json.loads((double / "run.json").read_text())["processes"] == 2


# --------------------------------------------------------------------------- overlays


def test_overlay_has_the_image_size_and_the_box_colour(tmp_path, checkpoint):
    folder = tmp_path / "one"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((150, 210, 3), 128, np.uint8))
    run = tmp_path / "run"
    run_localize(folder, run, checkpoint=str(checkpoint), overlays=str(tmp_path / "ov"))
    row = read_rows(run / "predictions.csv")[0]
    x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
    drawn = cv2.cvtColor(cv2.imread(str(tmp_path / "ov" / "a.png.jpg")), cv2.COLOR_BGR2RGB)
    assert drawn.shape == (150, 210, 3)
    edge = np.concatenate([drawn[y0, x0:x1], drawn[y1 - 1, x0:x1], drawn[y0:y1, x0],
                           drawn[y0:y1, x1 - 1]]).astype(int)
    green = (edge[:, 1] > 200) & (edge[:, 0] < 90) & (edge[:, 2] < 90)
    assert green.mean() > 0.9


def test_overlays_of_absolute_and_parent_names_stay_inside(tmp_path, checkpoint):
    """A list of absolute paths with --overlays replaced the photos."""
    photos = write_images(tmp_path / "photos", ["x.jpg", "y.png"])
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "list.txt").write_text(f"{photos / 'x.jpg'}\n../photos/y.png\n")
    before = tree_state(photos)
    ov = tmp_path / "ov"
    run_localize(lists / "list.txt", tmp_path / "run", checkpoint=str(checkpoint),
                 overlays=str(ov))
    assert tree_state(photos) == before
    written = sorted(p.relative_to(ov).as_posix() for p in ov.rglob("*.jpg"))
    assert written == [f"_abs{photos}/x.jpg".replace("//", "/"), "_up/photos/y.png.jpg"]


def test_overlays_of_x_png_and_x_jpg_do_not_collide(tmp_path, checkpoint):
    folder = write_images(tmp_path / "img", ["x.png"], seed=1)
    write_images(folder, ["x.jpg"], size=(40, 90), seed=2)
    run_localize(folder, tmp_path / "run", checkpoint=str(checkpoint),
                 overlays=str(tmp_path / "ov"))
    shapes = {p.name: cv2.imread(str(p)).shape for p in (tmp_path / "ov").glob("*.jpg")}
    assert shapes == {"x.png.jpg": (56, 72, 3), "x.jpg": (90, 40, 3)}


@pytest.mark.parametrize("where", ["images", "parent", "listed", "not empty"])
def test_overlays_that_could_replace_an_input_are_refused(tmp_path, checkpoint, where):
    folder = write_images(tmp_path / "img", ["a.png", "sub/b.png"])
    source, overlays = folder, folder
    if where == "parent":
        overlays = tmp_path
    elif where == "listed":
        (tmp_path / "list.txt").write_text(f"{folder / 'sub' / 'b.png'}\n")
        source, overlays = tmp_path / "list.txt", folder / "sub"
    elif where == "not empty":
        overlays = tmp_path / "ov"
        write_images(overlays, ["a.png.jpg"])
    before = tree_state(tmp_path)
    with pytest.raises(AcolError, match="--overlays"):
        run_localize(source, tmp_path / "run", checkpoint=str(checkpoint),
                     overlays=str(overlays))
    assert tree_state(tmp_path) == before


# --------------------------------------------------------------------------- what IMAGES is


def test_out_inside_the_image_folder_and_json_beside_the_images(tmp_path, checkpoint):
    """A run folder or a .json inside IMAGES made it labelme annotations."""
    folder = write_images(tmp_path / "img", ["a.png", "b/c.jpg"])
    (folder / "notes.json").write_text('{"not": "labelme"}')
    first = run_localize(folder, folder / "run", checkpoint=str(checkpoint),
                         overlays=str(folder / "ov"))
    second = run_localize(folder, folder / "run2", checkpoint=str(checkpoint))
    assert first.images == second.images == 2
    assert [r["image"] for r in read_rows(folder / "run2" / "predictions.csv")] == \
        ["a.png", "b/c.jpg"]
    # labelme is still read when named
    with pytest.raises(AcolError):
        list_images(f"labelme:{folder / 'notes.json'}")


def test_labelled_sources_are_still_recognised(tmp_path):
    data, names = synth_with_checkpoint(tmp_path, 1, 1)
    listing = list_images(str(data), split="test")
    assert len(listing.images) == 3 and set(listing.labels) == set(names)


def test_label_maps_are_stored_for_annotation_sources(tmp_path):
    _, names = synth_with_checkpoint(tmp_path, 2, 2)
    run = tmp_path / "run"
    run_localize(f"cub:{tmp_path / 's'}", run, split="test", checkpoint=str(tmp_path / "m.pt"),
                 top_k=1)
    rows = read_rows(run / "predictions.csv")
    assert len(rows) == 6 and {r["label"] for r in rows} == set(names)
    index = open_maps(run).index
    assert (index.groupby("image")["is_label"].sum() == 1).all()
    for row in rows:
        mine = index[index["image"] == row["image"]]
        assert set(mine["class_name"]) == {row["label"], row["pred_1"]}


def test_labels_for_a_plain_folder_come_from_another_source(tmp_path):
    _, names = synth_with_checkpoint(tmp_path, 1, 1)
    run = tmp_path / "run"
    run_localize(tmp_path / "s" / "images", run,
                 labels=f"csv:{tmp_path / 's' / 'annotations.csv'}",
                 checkpoint=str(tmp_path / "m.pt"), top_k=1)
    rows = read_rows(run / "predictions.csv")
    assert [r["label"] for r in rows] == [r["image"].split("/")[1] for r in rows]
    assert open_maps(run).index["is_label"].sum() == 6


def test_wsol_metadata_with_images_elsewhere_trains_and_localises(tmp_path):
    from acol_eval.data.synth import SynthConfig, write_synth

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
    run_localize(f"wsol:{meta}", tmp_path / "run", image_root=str(images),
                 checkpoint=str(tmp_path / "train" / "last.pt"), top_k=1)
    predictions = read_rows(tmp_path / "run" / "predictions.csv")
    assert len(predictions) == 6 and {p["label"] for p in predictions} == {"0", "1"}
    assert open_maps(tmp_path / "run").index["is_label"].sum() == 6


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("options, phrase", [
    ({"top_k": 0}, "--top-k"),
    ({"batch_size": 0}, "--batch-size"),
    ({"batch_size": 10**9}, "--batch-size"),
    ({"cam_threshold": float("nan")}, "--cam-threshold"),
    ({"cam_threshold": -0.1}, "--cam-threshold"),
    ({"cam_threshold": float("inf")}, "--cam-threshold"),
    ({"workers": -3}, "--workers"),
    ({"workers": 10**6}, "--workers"),
    ({"device": "gpu"}, "unknown device"),
    ({"device": "cuda:x"}, "unknown device"),
    ({"device": ""}, "unknown device"),
    ({"seed": -1}, "--seed"),
    ({"feature_stride": 7}, "--feature-stride"),
    ({"arch": "resnet18"}, "either --checkpoint"),
    ({"checkpoint": None}, "either --checkpoint"),
])
def test_odd_values_are_refused_by_the_config(options, phrase):
    """Every refusal is made when the config is built, before any I/O."""
    fields = {"images": "x", "out": "y", "checkpoint": "m.pt", **options}
    with pytest.raises(AcolError, match=phrase):
        LocalizeConfig(**fields)


def test_the_config_is_frozen_and_resolves_workers_once():
    config = LocalizeConfig(images="x", out="y", checkpoint="m.pt")
    assert isinstance(config.workers, int) and config.workers >= 1
    with pytest.raises(AttributeError):
        config.top_k = 3  # type: ignore[misc]
    assert LocalizeConfig(images="x", out="y", checkpoint="m.pt", top_k=10**6).top_k == 10**6


def test_a_huge_top_k_is_every_class(tmp_path, checkpoint):
    folder = write_images(tmp_path / "img", ["a.png"])
    result = run_localize(folder, tmp_path / "run", checkpoint=str(checkpoint), top_k=10**6)
    assert result.maps == 3
    assert list(read_rows(tmp_path / "run" / "predictions.csv")[0])[4:7] == \
        ["pred_1", "pred_2", "pred_3"]


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize("folder", ["raccoon/images", "fruits"])
def test_imagenet_mobilenet_over_real_photos(folder, tmp_path, monkeypatch):
    source = shared_data() / folder
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-hub"))
    monkeypatch.setenv("ACOL_EVAL_OFFLINE", "1")
    run = tmp_path / "run"
    run_localize(source, run, arch="mobilenet_v2", weights="imagenet", batch_size=16, top_k=3,
                 workers=1)
    rows = read_rows(run / "predictions.csv")
    assert len(rows) == (200 if folder.startswith("raccoon") else 300)
    for row in rows:
        width, height = int(row["width"]), int(row["height"])
        with Image.open(source / row["image"]) as image:
            assert (width, height) == image.size or (height, width) == image.size
        x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    if folder.startswith("raccoon"):
        _score_top1_maps_of_a_plain_classifier(run, shared_data() / "raccoon", tmp_path)


def _score_top1_maps_of_a_plain_classifier(run, raccoon, tmp_path):
    """'raccoon' is no ImageNet class, so the label's map does not exist;
    `score --map top1` scores the top-1 class's map of all 200 photos against the VOC
    boxes, and `--map label` is one line naming the cause."""
    from acol_eval.scoring.scoring import ScoreConfig, score
    from acol_eval.util.errors import AcolError

    source = f"voc:{raccoon / 'annotations'}"
    result = score(ScoreConfig(run=str(run), annotations=source, out=str(tmp_path / "top1"),
                               map_choice="top1", interval=0.01, workers=0))
    summary = result.summary.set_index("metric")
    assert summary.at["max_box_acc_v2", "count"] == 200
    assert summary.at["max_box_acc_v2", "value"] > 50  # a raccoon fills much of its photo
    # 'raccoon' is no model class: classification can be neither right nor wrong, so no
    # cls_* or top-k Loc rows, and no box is called a wrong class
    assert not {"cls_top1", "cls_top5", "top1_loc", "best_top5_loc"} & set(summary.index)
    errors = set(pd.read_csv(tmp_path / "top1" / "per_image.csv")["error"])
    assert "wrong_class" not in errors and "correct" in errors
    with pytest.raises(AcolError) as error:
        score(ScoreConfig(run=str(run), annotations=source, out=str(tmp_path / "label"),
                          map_choice="label", interval=0.01, workers=0))
    assert "class" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "label").exists()


def test_centre_gaussian_baseline():
    from acol_eval.maps.maps import centre_gaussian_map

    cam = centre_gaussian_map(4, 6)
    assert cam.shape == (4, 6) and np.allclose(cam, cam[::-1, ::-1])  # symmetric
    assert cam[1, 2] == cam.max() and cam[0, 0] == cam.min()
    # one side away from the centre in x: exp(-(0.5^2)/(2*0.25^2)) = exp(-2)
    wide = centre_gaussian_map(1, 1000)
    assert abs(wide[0, 0] / wide.max() - np.exp(-2)) < 0.01


def test_an_uncalibrated_checkpoint_boxes_at_0_2_and_says_so(tmp_path):
    """Checkpoints from before calibration carry no threshold: localize uses 0.2, says
    it is uncalibrated, and run.json records the default as the source."""
    make_checkpoint(tmp_path / "m.pt")
    write_images(tmp_path / "images", ["a.png"])
    said = []
    run_localize(tmp_path / "images", tmp_path / "run", log=said.append,
                 checkpoint=str(tmp_path / "m.pt"))
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (record["cam_threshold"], record["cam_threshold_source"]) == (0.2, "default")
    assert any("uncalibrated" in line for line in said)
    assert read_rows(tmp_path / "run" / "predictions.csv")[0]["cam_threshold"] == "0.2"


def test_a_calibrated_checkpoint_boxes_at_its_threshold_unless_told(tmp_path):
    make_checkpoint(tmp_path / "m.pt", cam_threshold=0.61,
                    cam_threshold_source="best GT-known Loc 80.0% on 10 images")
    write_images(tmp_path / "images", ["a.png"])
    run_localize(tmp_path / "images", tmp_path / "run", checkpoint=str(tmp_path / "m.pt"))
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (record["cam_threshold"], record["cam_threshold_source"]) == (0.61, "checkpoint")
    run_localize(tmp_path / "images", tmp_path / "run2", checkpoint=str(tmp_path / "m.pt"),
                 cam_threshold=0.3)
    assert read_rows(tmp_path / "run2" / "predictions.csv")[0]["cam_threshold"] == "0.3"


def test_one_image_file_is_a_list_of_one(tmp_path):
    """A photo given as IMAGES was read as a list file ('it holds NUL bytes')."""
    write_images(tmp_path / "images", ["a.png", "b.png"])
    run_localize(tmp_path / "images" / "b.png", tmp_path / "run", arch="resnet18",
                 weights="none", top_k=1)
    assert [r["image"] for r in read_rows(tmp_path / "run" / "predictions.csv")] == ["b.png"]


def test_a_checkpoint_folder_names_the_file_to_give(tmp_path):
    from acol_eval.util.errors import AcolError

    (tmp_path / "train").mkdir()
    make_checkpoint(tmp_path / "train" / "best.pt")
    write_images(tmp_path / "images", ["a.png"])
    with pytest.raises(AcolError, match="is a folder, not a file; did you mean .*best.pt"):
        run_localize(tmp_path / "images", tmp_path / "run", checkpoint=str(tmp_path / "train"))
    assert not (tmp_path / "run").exists()
