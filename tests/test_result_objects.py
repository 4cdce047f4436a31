"""Results passed as objects: a localize run and a score report each have one class that
reads their folder; calibration localizes and scores in memory; the report page draws
the annotations the score read; a method has one name on every page."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest
from test_compare import method_bits, write_report

import acol_eval.data.readers
from acol_eval.comparison.compare import CompareConfig
from acol_eval.comparison.compare import run as run_compare
from acol_eval.maps.reportfolder import ScoreReport, method_names
from acol_eval.maps.runfolder import LocalizeRun
from acol_eval.report import gallerypage
from acol_eval.scoring import coverage
from acol_eval.scoring.scoring import ScoreConfig, score
from conftest import (
    make_checkpoint,
    run_localize,
    synth_with_checkpoint,
    write_coco,
    write_texture_folder,
)


def refuse_reading(*args, **kwargs):
    raise RuntimeError("an annotation source or list file was read again")


# --------------------------------------------------------------------------- calibration


def test_calibration_localizes_and_scores_in_memory(tmp_path, monkeypatch):
    """No set.csv or image list is written, and no source or list file is read back:
    the images, boxes and threshold travel as objects."""
    from acol_eval.data.readers import read_source
    from acol_eval.training.calibration import calibrate

    data, _ = synth_with_checkpoint(tmp_path, train_per_class=1, val_per_class=2)
    annotations = read_source(f"cub:{data}").split("test")
    images = sorted(annotations.images["image"])
    monkeypatch.setattr(acol_eval.data.readers, "read_source", refuse_reading)
    monkeypatch.setattr("acol_eval.scoring.scoring.read_source", refuse_reading)
    monkeypatch.setattr("acol_eval.data.imagelist.read_source", refuse_reading)
    monkeypatch.setattr(coverage, "read_image_list", refuse_reading)
    calibration = calibrate(tmp_path / "m.pt", annotations, images, tmp_path / "train",
                            workers=0)
    assert calibration is not None and calibration.images == 6
    folder = tmp_path / "train" / "calibration"
    written = sorted(p.name for p in folder.iterdir())
    assert written == ["report", "run"]
    # the report's own threshold, at full precision, is the calibrated one
    report = ScoreReport.open(folder / "report")
    assert report.meta.images == 6 and report.meta.protocol == "native"
    best = report.summary.set_index("metric").loc["best_gt_known_loc"]
    assert float(best["threshold"]) == pytest.approx(calibration.threshold, abs=5e-7)
    assert float(best["value"]) == pytest.approx(calibration.gt_known, abs=5e-4)


# --------------------------------------------------------------------------- the report page



def gallery_spy(monkeypatch) -> list:
    """The GallerySource of each page written; reading any annotation source during the
    page raises."""
    seen = []
    real = gallerypage.gallery_source

    def spy(report, images, annotations=None):
        seen.append((real(report, images, annotations), annotations))
        return seen[-1][0]

    monkeypatch.setattr(gallerypage, "gallery_source", spy)
    monkeypatch.setattr(acol_eval.data.readers, "read_source", refuse_reading)
    return seen


def test_report_page_draws_the_label_rules_boxes(tmp_path, monkeypatch):
    """--label-rule most-boxes labels the image 'dog': the page is given the annotations
    score read under that rule (read again without it, the image is a 'cat')."""
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "a.npy", np.pad(np.ones((6, 6)), 2))
    seen = gallery_spy(monkeypatch)
    score(ScoreConfig(run=str(maps), annotations=f"coco:{write_coco(tmp_path)}",
                      out=str(tmp_path / "r"), protocol="native", label_rule="most-boxes",
                      workers=0))
    assert len(seen) == 1
    source, annotations = seen[0]
    assert annotations.images["label"].tolist() == ["dog"]
    assert np.array_equal(source.gt["a.jpg"], [[10, 10, 70, 70], [0, 0, 5, 5], [90, 90, 95, 95]])
    assert pd.read_csv(tmp_path / "r" / "per_image.csv")["label"].tolist() == ["dog"]
    assert ScoreReport.open(tmp_path / "r").meta.label_rule == "most-boxes"


def test_report_page_finds_the_images_under_the_images_root(tmp_path, monkeypatch):
    """--images ROOT: the csv source's sizes and root are those score read (the images
    are not beside the csv file), and the page reads no source itself."""
    photos = write_texture_folder(tmp_path / "photos", 2, 0, size=40, seed=1)
    names = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.png"))
    source = tmp_path / "ann" / "set.csv"
    source.parent.mkdir()
    source.write_text("image,label,x0,y0,x1,y1\n" +
                      "".join(f"{n},c,2,3,30,20\n" for n in names))
    maps = tmp_path / "maps"
    for name in names:
        (maps / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{name[:-4]}.npy", np.pad(np.ones((4, 4)), 2))
    seen = gallery_spy(monkeypatch)
    score(ScoreConfig(run=str(maps), annotations=f"csv:{source}", out=str(tmp_path / "r"),
                      protocol="native", images=str(photos), workers=0))
    source, annotations = seen[0]
    assert annotations is not None and source.roots[0] == photos.resolve()
    assert source.sizes == {n: (40.0, 40.0) for n in names}
    assert np.array_equal(source.gt[names[0]], [[2, 3, 30, 20]])


# --------------------------------------------------------------------------- names


def test_a_seed_group_has_one_name_in_leaderboard_and_page(tmp_path):
    """Two seeds in folders of one name: leaderboard.csv and report.html both call the
    group 'a/seed,b/seed' (the page once called it by its first seed's folder)."""
    rng = np.random.default_rng(3)
    names = [f"i{k}.jpg" for k in range(20)]
    seeds = [write_report(tmp_path / parent / "seed", names, **method_bits(rng, 20, 0.4))
             for parent in ("a", "b")]
    other = write_report(tmp_path / "other", names, **method_bits(rng, 20, 0.3))
    result = run_compare(CompareConfig(reports=[f"{seeds[0]},{seeds[1]}", str(other)],
                                       out=str(tmp_path / "cmp"), bootstrap=0),
                         log=lambda line: None)
    board = pd.read_csv(tmp_path / "cmp" / "leaderboard.csv")
    column = board.columns[0]
    assert board[column].tolist() == ["a/seed,b/seed", "other"]
    assert method_names([tuple(map(str, seeds)), (str(other),)]) == board[column].tolist()
    title = re.search(r"<title>(.*?)</title>",
                      (tmp_path / "cmp" / "report.html").read_text()).group(1)
    assert html.unescape(title) == "acol-eval compare: a/seed,b/seed, other"
    assert result.reference == "a/seed,b/seed"


# --------------------------------------------------------------------------- round trips


def test_localize_returns_the_run_that_opens_from_its_folder(tmp_path):
    images = write_texture_folder(tmp_path / "img", 2, 0, size=48, seed=4)
    make_checkpoint(tmp_path / "m.pt")
    result = run_localize(images, tmp_path / "run", checkpoint=str(tmp_path / "m.pt"),
                          top_k=2, cam_threshold=0.3)
    returned, opened = result.run, LocalizeRun.open(tmp_path / "run")
    assert returned.folder == opened.folder == tmp_path / "run"
    assert opened.localized() == returned.localized() and len(opened.localized()) == 4
    assert opened.record == returned.record
    assert opened.record["counts"]["images"] == result.images == 4
    assert opened.cam_threshold == (0.3, "flag")
    assert opened.method == "model"
    assert len(opened.maps().maps) == result.maps == 8
    assert opened.errors().empty
    assert opened.image_root == str(images.resolve())


def test_score_returns_the_report_that_opens_from_its_folder(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "a.npy", np.pad(np.ones((6, 6)), 2))
    result = score(ScoreConfig(run=str(maps), annotations=f"coco:{write_coco(tmp_path)}",
                               out=str(tmp_path / "r"), protocol="native", workers=0))
    opened = ScoreReport.open(tmp_path / "r")
    assert result.report.folder == opened.folder
    assert opened.meta == result.meta
    summary = opened.summary.set_index("metric")["value"]
    assert np.allclose(summary.to_numpy(float),
                       result.summary.set_index("metric")["value"].to_numpy(float),
                       rtol=1e-5, equal_nan=True)
    assert opened.per_image["image"].tolist() == ["a.jpg"]
    assert opened.outcomes().images.tolist() == ["a.jpg"]


def test_unfinished_and_missing_runs_are_one_line(tmp_path):
    from acol_eval.util.errors import AcolError

    (tmp_path / "run" / ".partial").mkdir(parents=True)
    with pytest.raises(AcolError, match="unfinished localize run"):
        LocalizeRun.open(tmp_path / "run")
    with pytest.raises(AcolError, match="not a localize run folder"):
        LocalizeRun.open(tmp_path / "nothing")
