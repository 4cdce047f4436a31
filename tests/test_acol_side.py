"""The ACoL-side script's pure helpers (benchmarks/acol_side_cub10.py): candidates, the
validation list, the choice by mean validation score. No data, no model."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from acol_side_cub10 import (  # noqa: E402
    annotation_names,
    calibrated_threshold,
    choose,
    parse_candidates,
    validation_images,
    validation_list,
)


def test_candidates_name_method_and_layer():
    assert parse_candidates("model, layercam@backbone.13,,gradcam++") == [
        ("model", "model", None),
        ("layercam-backbone13", "layercam", "backbone.13"),
        ("gradcampp", "gradcam++", None),
    ]


def test_choice_is_the_best_mean_over_seeds_not_the_best_single_seed():
    table = pd.DataFrame({0: [60.0, 70.0, 62.0], 1: [61.0, 50.0, 62.0]},
                         index=["model", "gradcam", "layercam"])
    # gradcam has the best seed (70) but mean 60; layercam's 62 beats model's 60.5
    assert choose(table) == "layercam"


def test_a_tie_goes_to_the_earlier_candidate():
    table = pd.DataFrame({0: [64.0, 66.0], 1: [66.0, 64.0]}, index=["model", "layercam"])
    assert choose(table) == "model"


def test_validation_list_names_images_as_the_annotations_do(tmp_path):
    root = tmp_path / "images"
    for name in ["001.A/a1.jpg", "002.B/b1.jpg"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"jpeg")
    calibration = tmp_path / "run" / "calibration" / "run"
    calibration.mkdir(parents=True)
    (calibration / "predictions.csv").write_text(
        f"image,label\n{root}/002.B/b1.jpg,002.B\n{root}/001.A/a1.jpg,001.A\n")
    (calibration / "run.json").write_text(f'{{"image_root": "{root}"}}')
    assert validation_images(calibration / "predictions.csv") == [
        f"{root}/002.B/b1.jpg", f"{root}/001.A/a1.jpg"]
    assert annotation_names([f"{root}/001.A/a1.jpg"], root) == ["001.A/a1.jpg"]

    listing = validation_list(tmp_path / "run", tmp_path / "lists" / "val-s0")
    assert listing.read_text().splitlines() == ["002.B/b1.jpg", "001.A/a1.jpg"]
    # each name resolves from the list's folder (as localize reads a list) to the image
    for name in listing.read_text().splitlines():
        assert (listing.parent / name).resolve() == (root / name).resolve()


def test_the_calibrated_threshold_is_validations_best_for_gt_known(tmp_path):
    (tmp_path / "summary.csv").write_text(
        "metric,value,threshold\n"
        "gt_known_loc,60,0.323\n"          # the run's carried threshold: not this map's own
        "best_gt_known_loc,71.7,0.279\n"
        "max_box_acc_v2@50,71.7,0.3\n")
    assert calibrated_threshold(tmp_path) == 0.279
