"""`acol-eval boxes`: boxes redone from a run's map store equal localize's, byte for byte;
the store is shared by links; bad input is refused with one line and nothing written."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from acol_eval.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from acol_eval.maps.boxesconfig import BoxesConfig
from acol_eval.maps.boxing import run as run_boxes
from acol_eval.maps.localization import localize
from acol_eval.maps.localizeconfig import LocalizeConfig
from acol_eval.maps.overlays import write_overlay
from acol_eval.models.checkpoint import save_checkpoint
from acol_eval.models.model import build_model
from acol_eval.scoring.scoring import ScoreConfig, score
from acol_eval.util.errors import AcolError
from conftest import assert_one_line_error, run_cli

LOW, HIGH = 0.2, 0.55  # two CAM thresholds that box the synth images differently


def quiet(_message: str) -> None:
    pass


def tiny_checkpoint(path, classes):
    """A deterministic ACoL resnet18 (random weights, stride 16, 64 px input)."""
    torch.manual_seed(0)
    model = build_model("resnet18", len(classes), "p", [0.5], "linear", 16)
    save_checkpoint(path, {
        "arch": "resnet18", "recipe": "p", "deltas": [0.5], "head": "linear",
        "feature_stride": 16, "classes": classes, "input_size": 64,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "state_dict": model.state_dict(), "epoch": 0,
    })


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A synth set (9 test images with boxes), a checkpoint, and localize runs of it at
    LOW and HIGH (and at LOW with --all-boxes)."""
    from acol_eval.data.synth import SynthConfig, class_names, write_synth

    root = tmp_path_factory.mktemp("boxes")
    write_synth(root / "s", SynthConfig(classes=3, train_per_class=1, val_per_class=3,
                                        size=64, seed=3))
    tiny_checkpoint(root / "m.pt", class_names(3))
    runs = {}
    for name, threshold, all_boxes in (("low", LOW, False), ("high", HIGH, False),
                                       ("low_all", LOW, True)):
        localize(LocalizeConfig(images=f"cub:{root / 's'}", split="test",
                                out=str(root / name), checkpoint=str(root / "m.pt"),
                                top_k=2, cam_threshold=threshold, batch_size=16, workers=0,
                                device="cpu", all_boxes=all_boxes), quiet)
        runs[name] = root / name
    return {"root": root, "source": f"cub:{root / 's'}", **runs}


def boxes_of(run, out, **options):
    options.setdefault("workers", 0)
    return run_boxes(BoxesConfig(run=str(run), out=str(out), **options), quiet)


def test_boxes_predictions_equal_localize_at_two_thresholds(world, tmp_path):
    low, high = world["low"], world["high"]
    assert (low / "predictions.csv").read_bytes() != (high / "predictions.csv").read_bytes()
    to_high = boxes_of(low, tmp_path / "to_high", cam_threshold=HIGH)
    to_low = boxes_of(high, tmp_path / "to_low", cam_threshold=LOW)
    assert ((tmp_path / "to_high" / "predictions.csv").read_bytes()
            == (high / "predictions.csv").read_bytes())
    assert ((tmp_path / "to_low" / "predictions.csv").read_bytes()
            == (low / "predictions.csv").read_bytes())
    assert to_high.images == to_low.images == 9
    assert not (tmp_path / "to_high" / "boxes.csv").exists()


def test_worker_processes_give_the_same_files(world, tmp_path, monkeypatch):
    import acol_eval.maps.boxing

    monkeypatch.setattr(acol_eval.maps.boxing, "CHUNK", 2)  # 5 chunks for 9 images: order matters
    for workers in (0, 2):
        boxes_of(world["high"], tmp_path / f"w{workers}", cam_threshold=LOW, all_boxes=True,
                 overlays=str(tmp_path / f"ov{workers}"), workers=workers)
    for new in ("w0", "w2"):
        assert (tmp_path / new / "predictions.csv").read_bytes() == (
            world["low"] / "predictions.csv").read_bytes()
        assert (tmp_path / new / "boxes.csv").read_bytes() == (
            world["low_all"] / "boxes.csv").read_bytes()
    for picture in (tmp_path / "ov0").rglob("*.jpg"):
        twin = tmp_path / "ov2" / picture.relative_to(tmp_path / "ov0")
        assert twin.read_bytes() == picture.read_bytes()
    assert len(list((tmp_path / "ov2").rglob("*.jpg"))) == 9


def test_negative_workers_are_refused():
    with pytest.raises(AcolError, match="--workers"):
        BoxesConfig(run="r", out="o", cam_threshold=0.5, workers=-1)


def test_new_run_links_the_store_and_records_its_source(world, tmp_path):
    new = tmp_path / "new"
    boxes_of(world["low"], new, cam_threshold=HIGH)
    for name in ("maps.f16", "maps_index.csv", "maps.json"):
        assert (new / name).is_symlink()
        assert not os.path.isabs(os.readlink(new / name))  # survives moving both together
        assert (new / name).resolve() == (world["low"] / name).resolve()
    record = json.loads((new / "run.json").read_text())
    assert record["source_run"] == str(world["low"].resolve())
    assert record["cam_threshold"] == HIGH and record["cam_threshold_source"] == "flag"
    assert record["counts"]["images"] == 9
    # boxes of a boxes run link to the original files, not along a chain
    again = tmp_path / "again"
    boxes_of(new, again, cam_threshold=LOW)
    assert os.path.realpath(again / "maps.f16") == os.path.realpath(world["low"] / "maps.f16")
    assert (again / "predictions.csv").read_bytes() == (
        world["low"] / "predictions.csv").read_bytes()
    # RUN and NEW_RUN moved together keep working
    pair = tmp_path / "pair"
    pair.mkdir()
    shutil.copytree(world["low"], pair / "low")
    boxes_of(pair / "low", pair / "new", cam_threshold=HIGH)
    shutil.move(pair, tmp_path / "pair_moved")
    assert (tmp_path / "pair_moved" / "new" / "maps.f16").read_bytes() == (
        world["low"] / "maps.f16").read_bytes()


def test_all_boxes_equal_localize(world, tmp_path):
    new = tmp_path / "all"
    boxes_of(world["high"], new, cam_threshold=LOW, all_boxes=True)
    expected = (world["low_all"] / "boxes.csv").read_bytes()
    assert (new / "boxes.csv").read_bytes() == expected
    rows = list(csv.DictReader(open(new / "boxes.csv", newline="")))
    assert len(rows) > 9  # some top-1 map has several components at LOW
    # predictions.csv keeps the largest component with or without --all-boxes
    assert (new / "predictions.csv").read_bytes() == (
        world["low"] / "predictions.csv").read_bytes()


def test_overlays_land_inside_their_folder(world, tmp_path):
    overlays = tmp_path / "ov"
    result = boxes_of(world["low"], tmp_path / "new", cam_threshold=HIGH,
                      overlays=str(overlays))
    images = pd.read_csv(world["low"] / "predictions.csv", keep_default_na=False)
    written = sorted(p.relative_to(overlays).as_posix() for p in overlays.rglob("*.jpg"))
    assert written == sorted(f"{name}.jpg" for name in images["image"])
    assert result.overlays == 9 and result.overlay_failed == 0
    first = images.iloc[0]
    picture = cv2.imread(str(overlays / f"{first['image']}.jpg"))
    assert picture.shape[:2] == (first["height"], first["width"])


def test_write_overlay_keeps_hostile_names_inside(tmp_path):
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.full((20, 30, 3), 128, np.uint8))
    root = tmp_path / "deep" / "ov"
    cam = np.arange(12, dtype=np.float16).reshape(3, 4)
    box = np.array([[2, 3, 10, 12]])
    names = ["../../escape.png", "/etc/abs.png", "a/./b.png", "x.png", "x.jpg"]
    paths = [write_overlay(root, name, image, cam, box) for name in names]
    assert all(root.resolve() in p.resolve().parents for p in paths)
    assert len(set(paths)) == len(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "in.png"]
    assert cv2.imread(str(paths[0])).shape == (20, 30, 3)


def test_score_of_new_run_equals_score_of_run(world, tmp_path):
    new = tmp_path / "new"
    boxes_of(world["low"], new, cam_threshold=HIGH)
    reports = {}
    for name, run in (("run", world["low"]), ("new", new)):
        out = tmp_path / f"report_{name}"
        summary = score(ScoreConfig(run=str(run), annotations=world["source"], out=str(out),
                                    split="test", protocol="native", interval=0.01,
                                    workers=1, threshold=0.2)).summary  # not each run's
        reports[name] = summary
    assert reports["new"]["count"].max() == 9
    pd.testing.assert_frame_equal(reports["run"], reports["new"])


def test_threshold_from_a_native_report(world, tmp_path):
    report = tmp_path / "report"
    summary = score(ScoreConfig(run=str(world["low"]), annotations=world["source"],
                                out=str(report), split="test", protocol="native",
                                interval=0.01, workers=1)).summary
    best = summary.set_index("metric").loc["best_gt_known_loc", "threshold"]
    result = boxes_of(world["low"], tmp_path / "new", threshold_from=str(report))
    assert result.threshold.value == pytest.approx(best, abs=1e-9)
    rows = pd.read_csv(tmp_path / "new" / "predictions.csv")
    assert (rows["cam_threshold"] == result.threshold.value).all()
    record = json.loads((tmp_path / "new" / "run.json").read_text())
    assert record["cam_threshold_source"] == "report"
    assert record["cam_threshold_detail"] == str(report / "summary.csv")


# --------------------------------------------------------------------------- bad input


def snapshot(folder):
    """Every path under `folder` with the sha256 of its bytes (links by their text)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            state[str(path)] = "link:" + os.readlink(path)
        elif path.is_file():
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[str(path)] = "dir"
    return state


@pytest.fixture()
def bad_inputs(world, tmp_path):
    """A copy of a run, a truncated copy, a wsoleval report, a report without thresholds."""
    run = tmp_path / "run"
    shutil.copytree(world["low"], run)
    truncated = tmp_path / "truncated"
    shutil.copytree(world["low"], truncated)
    os.truncate(truncated / "maps.f16", (truncated / "maps.f16").stat().st_size - 2)
    score(ScoreConfig(run=str(run), annotations=world["source"], out=str(tmp_path / "wsol"),
                      split="test", protocol="wsoleval", interval=0.01, workers=1))
    empty = tmp_path / "no_thresholds"
    empty.mkdir()
    (empty / "summary.csv").write_text(
        "metric,value,threshold,iou,protocol,count,ci_low,ci_high\n"
        "cls_top1,33.3333,,,native,9,,\ncls_top5,66.6667,,,native,9,,\n"
        "pxap,41.2,,,native,9,,\n")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    return tmp_path


@pytest.mark.parametrize("arguments, phrase", [
    (["run", "--threshold-from", "run"], "not an acol-eval report"),
    (["run", "--threshold-from", "no_thresholds"], "has no best_gt_known_loc threshold"),
    (["run", "--threshold-from", "wsol"], "--protocol native"),
    (["run", "--cam-threshold", "1.5"], "outside [0, 1]"),
    (["run", "--cam-threshold", "-0.1"], "outside [0, 1]"),
    (["run", "--cam-threshold", "nan"], "outside [0, 1]"),
    (["run"], "give --cam-threshold T or --threshold-from REPORT"),
    (["run", "--cam-threshold", "0.5", "--threshold-from", "wsol"], "one of them"),
    (["truncated", "--cam-threshold", "0.5"], "maps.f16"),
    (["nowhere", "--cam-threshold", "0.5"], "not a localize run"),
])
def test_bad_input_is_one_line_and_writes_nothing(bad_inputs, arguments, phrase):
    folder = bad_inputs
    before = snapshot(folder)
    run, *options = arguments
    options = [str(folder / v) if v in ("run", "no_thresholds", "wsol") else v
               for v in options]
    result = run_cli("boxes", str(folder / run), "--out", str(folder / "new"), *options)
    assert_one_line_error(result, 2, phrase)
    assert snapshot(folder) == before


@pytest.mark.parametrize("out, phrase", [("full", "not empty"), ("run", "RUN itself"),
                                         ("run/inner", "inside it")])
def test_bad_output_folder_is_refused(bad_inputs, out, phrase):
    folder = bad_inputs
    before = snapshot(folder)
    result = run_cli("boxes", str(folder / "run"), "--out", str(folder / out),
                     "--cam-threshold", "0.5")
    assert_one_line_error(result, 2, phrase)
    assert snapshot(folder) == before


def test_overlays_need_findable_images(bad_inputs):
    folder = bad_inputs
    before = snapshot(folder)
    with pytest.raises(AcolError, match="not there"):
        boxes_of(folder / "run", folder / "new", cam_threshold=0.5,
                 overlays=str(folder / "ov"), images=str(folder / "full"))
    assert snapshot(folder) == before


def test_an_empty_new_run_folder_is_used(world, tmp_path):
    new = tmp_path / "empty"
    new.mkdir()
    boxes_of(world["low"], new, cam_threshold=HIGH)
    assert (new / "predictions.csv").read_bytes() == (
        world["high"] / "predictions.csv").read_bytes()


def test_a_damaged_index_fails_and_leaves_no_new_run(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["low"], run)
    lines = (run / "maps_index.csv").read_text().splitlines(keepends=True)
    last_image = lines[-1].split(",")[1]
    kept = [line for line in lines
            if not (line.split(",")[1] == last_image and line.split(",")[4] == "1")]
    (run / "maps_index.csv").write_text("".join(kept))
    before = snapshot(tmp_path)
    with pytest.raises(AcolError, match="no top-1 map for"):
        boxes_of(run, tmp_path / "new", cam_threshold=HIGH, overlays=str(tmp_path / "ov"))
    assert snapshot(tmp_path) == before  # the half-written NEW_RUN and overlays are gone


def test_an_unreadable_image_is_counted_and_exits_1(world, tmp_path):
    from acol_eval.data.readers import read_source

    images = tmp_path / "images"
    shutil.copytree(read_source(world["source"]).root, images)
    names = pd.read_csv(world["low"] / "predictions.csv")["image"].tolist()
    (images / names[-1]).write_bytes(b"not a picture")
    result = run_cli("boxes", str(world["low"]), "--out", str(tmp_path / "new"),
                     "--cam-threshold", "0.5", "--overlays", str(tmp_path / "ov"),
                     "--images", str(images))
    assert result.returncode == 1, result.stderr
    assert "1 overlays could not be drawn" in result.stderr
    assert "boxed 9 images at CAM threshold 0.5 (flag)" in result.stdout
    assert len(list((tmp_path / "ov").rglob("*.jpg"))) == 8
    record = json.loads((tmp_path / "new" / "run.json").read_text())
    assert record["counts"]["overlay_failed"] == 1 and record["counts"]["overlays"] == 8


def test_a_new_run_being_written_by_another_command_is_refused(world, tmp_path):
    from acol_eval.util.safeio import FolderLock

    new = tmp_path / "busy"
    with FolderLock(new, "localize"):
        before = snapshot(tmp_path)
        result = run_cli("boxes", str(world["low"]), "--out", str(new),
                         "--cam-threshold", "0.5", "--workers", "0")
        assert_one_line_error(result, 2, "another acol-eval command is writing")
        assert snapshot(tmp_path) == before


def test_overlays_show_ground_truth_class_and_score(world, tmp_path):
    """RUN was localised from a CUB-layout source, so boxes' overlays draw
    its ground-truth boxes (magenta) beside the predicted one, under a caption band."""
    from acol_eval.maps.maps import BOX_COLOUR, GT_COLOUR

    boxes_of(world["low"], tmp_path / "new", cam_threshold=HIGH,
             overlays=str(tmp_path / "ov"))
    truth = pd.read_csv(world["root"] / "s" / "annotations.csv")
    for row in pd.read_csv(tmp_path / "new" / "predictions.csv").itertuples():
        picture = cv2.cvtColor(cv2.imread(str(tmp_path / "ov" / f"{row.image}.jpg")),
                               cv2.COLOR_BGR2RGB).astype(int)
        x0, y0, x1, y1 = truth[truth["image"] == row.image][["x0", "y0", "x1", "y1"]].iloc[0]
        edge = np.concatenate([picture[y1 - 1, x0:x1], picture[y0:y1, x1 - 1]])
        magenta = np.abs(edge - np.array(GT_COLOUR)).max(axis=1) < 70
        green = np.abs(edge - np.array(BOX_COLOUR)).max(axis=1) < 70  # drawn on top
        assert magenta.mean() > 0.25 and (magenta | green).mean() > 0.7, row.image
        corner = picture[:6, :20]  # the caption band: white text on black
        assert (corner.max(axis=2) < 60).mean() > 0.3 and (corner.min(axis=2) > 180).any()


def test_progress_lines_count_images_as_chunks_come_back(world, tmp_path, monkeypatch):
    """Off a terminal, boxes says how far it got (run.json gives the total)."""
    import acol_eval.maps.boxing
    import acol_eval.util.progress

    monkeypatch.setattr(acol_eval.maps.boxing, "CHUNK", 4)
    monkeypatch.setattr(acol_eval.util.progress, "AFTER", 0.0)
    monkeypatch.setattr(acol_eval.util.progress, "PERIOD", 0.0)
    lines = []
    run_boxes(BoxesConfig(run=str(world["low"]), out=str(tmp_path / "new"),
                          cam_threshold=HIGH, workers=0), lines.append)
    assert [line.split(",")[0] for line in lines if line.startswith("boxes: ")] == [
        "boxes: 4/9 images", "boxes: 8/9 images", "boxes: 9/9 images"]
