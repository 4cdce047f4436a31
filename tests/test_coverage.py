"""Coverage is part of a result: a score over fewer images than the annotated split is
refused unless the user says the subset is intended, and then every output says
"N of M annotated images"."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from acol_eval.maps.reportfolder import ReportMeta
from acol_eval.scoring.scoring import ScoreConfig, score
from acol_eval.util.errors import AcolError
from conftest import assert_one_line_error, run_cli, write_wsol_metadata


def blob(box, side=100, grid=28):
    """A grid x grid map peaked over `box` (x0 y0 x1 y1 of a side x side image)."""
    yy, xx = np.mgrid[0:grid, 0:grid] * (side / grid)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 12.0 ** 2))


BOX = (20, 30, 60, 70)


@pytest.fixture
def twelve_of_a_hundred(tmp_path):
    """wsol metadata of 100 boxed images and .npy maps of the first 12 of them."""
    names = [f"c/{k:03d}.jpg" for k in range(100)]
    meta = write_wsol_metadata(tmp_path / "meta", [(n, "0", 100, 100) for n in names],
                               [f"{n},{','.join(map(str, BOX))}" for n in names])
    maps = tmp_path / "maps"
    (maps / "c").mkdir(parents=True)
    for name in names[:12]:
        np.save(maps / f"{name[:-4]}.npy", blob(BOX))
    return maps, f"wsol:{meta}", names


def test_twelve_maps_of_a_hundred_images_are_refused_in_one_line(twelve_of_a_hundred,
                                                                   tmp_path):
    maps, source, _ = twelve_of_a_hundred
    out = tmp_path / "report"
    result = run_cli("score", str(maps), "--annotations", source, "--out", str(out),
                     "--workers", "0")
    assert_one_line_error(result, 2, "12 of 100 annotated images", "88 have no map",
                          "0 maps have no annotation", "--allow-missing", "--image-list")
    assert not out.exists()  # refused before the report folder is touched
    # --strict is the default now: the same refusal
    strict = run_cli("score", str(maps), "--annotations", source, "--out", str(out),
                     "--workers", "0", "--strict")
    assert_one_line_error(strict, 2, "12 of 100 annotated images")


def test_allow_missing_says_twelve_of_a_hundred_in_every_output(twelve_of_a_hundred,
                                                                 tmp_path):
    maps, source, _ = twelve_of_a_hundred
    out = tmp_path / "report"
    result = run_cli("score", str(maps), "--annotations", source, "--out", str(out),
                     "--workers", "0", "--cam-curve-interval", "0.01", "--allow-missing")
    assert result.returncode == 0, result.stderr
    assert "coverage: 12 of 100 annotated images (--allow-missing)" in result.stdout
    assert "88 annotated images without a map" in result.stderr  # a plural, counted
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["coverage"]) == {"12 of 100"}
    assert summary.set_index("metric").at["max_box_acc", "value"] == pytest.approx(100.0)
    record = json.loads((out / "report.json").read_text())
    assert (record["images"], record["annotated"], record["subset"]) == (12, 100,
                                                                         "allow-missing")
    meta = ReportMeta.read(out)
    assert meta.partial and meta.coverage == "12 of 100 annotated images"


def test_a_whole_split_says_so_and_prints_no_coverage_line(twelve_of_a_hundred, tmp_path):
    maps, _, names = twelve_of_a_hundred
    meta = write_wsol_metadata(tmp_path / "meta12", [(n, "0", 100, 100) for n in names[:12]],
                               [f"{n},{','.join(map(str, BOX))}" for n in names[:12]])
    out = tmp_path / "whole"
    result = run_cli("score", str(maps), "--annotations", f"wsol:{meta}", "--out", str(out),
                     "--workers", "0", "--cam-curve-interval", "0.01")
    assert result.returncode == 0, result.stderr
    assert "coverage:" not in result.stdout
    assert set(pd.read_csv(out / "summary.csv")["coverage"]) == {"12 of 12"}
    meta = ReportMeta.read(out)
    assert not meta.partial and (meta.images, meta.annotated, meta.subset) == (12, 12, None)


def _score(maps, source, out, **options):
    return score(ScoreConfig(run=str(maps), annotations=source, out=str(out), workers=0,
                             interval=0.01, **options))


def test_an_image_list_names_the_subset(twelve_of_a_hundred, tmp_path):
    maps, source, names = twelve_of_a_hundred
    listed = tmp_path / "list.txt"
    listed.write_text("\n".join(names[:10]) + "\n\n")
    result = _score(maps, source, tmp_path / "listed", image_list=str(listed))
    assert (result.meta.images, result.meta.annotated, result.meta.subset) == (10, 100,
                                                                               "image-list")
    assert set(result.summary["coverage"]) == {"10 of 100"}
    # a listed image without a map is still missing
    listed.write_text("\n".join(names[:13]))
    with pytest.raises(AcolError, match="12 of the 13 listed images can be scored"):
        _score(maps, source, tmp_path / "thirteen", image_list=str(listed))
    assert _score(maps, source, tmp_path / "both", image_list=str(listed),
                  allow_missing=True).meta.coverage == "12 of 100 annotated images"
    # a name the split does not annotate is an error, not a silent drop
    listed.write_text(names[0] + "\nc/elsewhere.jpg\n")
    with pytest.raises(AcolError, match="1 name of 2 is not annotated.*'c/elsewhere.jpg'"):
        _score(maps, source, tmp_path / "stray", image_list=str(listed))
    assert not (tmp_path / "stray").exists()


def test_maps_the_annotations_do_not_know_are_refused(twelve_of_a_hundred, tmp_path):
    maps, _, names = twelve_of_a_hundred
    meta = write_wsol_metadata(tmp_path / "meta12", [(n, "0", 100, 100) for n in names[:12]],
                               [f"{n},{','.join(map(str, BOX))}" for n in names[:12]])
    np.save(maps / "c" / "stray.npy", blob(BOX))
    with pytest.raises(AcolError, match="12 of 12 annotated images .* 1 map has no "
                                        "annotation"):
        _score(maps, f"wsol:{meta}", tmp_path / "rep")
    result = _score(maps, f"wsol:{meta}", tmp_path / "rep", allow_missing=True)
    assert result.issues["map_without_annotation"] == 1
    assert result.meta.coverage == "12 of 12 annotated images"


def test_maps_of_another_split_are_not_counted_and_the_split_is_named(tmp_path):
    """A cub source with train and test: maps of every image, scored on test, are the
    whole test split; without --split the message names the splits."""
    from acol_eval.data.readers import read_source
    from acol_eval.data.synth import SynthConfig, write_synth

    write_synth(tmp_path / "s", SynthConfig(classes=2, train_per_class=3, val_per_class=3,
                                            size=64))
    source = read_source(f"cub:{tmp_path / 's'}")
    boxes = source.boxes.groupby("image")
    maps = tmp_path / "maps"
    for row in source.images.itertuples():
        path = maps / f"{row.image}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        box = boxes.get_group(row.image)[["x0", "y0", "x1", "y1"]].to_numpy()[0]
        np.save(path, blob(box, side=64))
    test = source.images[source.images["split"] == "test"]
    maps_test_only = tmp_path / "test_maps"
    for name in test["image"]:
        path = maps_test_only / f"{name}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((maps / f"{name}.npy").read_bytes())
    result = _score(maps, f"cub:{tmp_path / 's'}", tmp_path / "rep", split="test")
    assert "map_without_annotation" not in result.issues
    assert result.meta.coverage == f"{len(test)} of {len(test)} annotated images"
    with pytest.raises(AcolError, match=f"{len(test)} of {len(source.images)} annotated "
                                        f"images of the annotations .*--split picks one"):
        _score(maps_test_only, f"cub:{tmp_path / 's'}", tmp_path / "all")


def test_calibration_scores_the_images_it_localized(tmp_path):
    """A validation image localize cannot decode has no map: calibration names the
    localized images as its subset instead of being refused, and its report says so."""
    from acol_eval.data.readers import read_source
    from acol_eval.training.calibration import calibrate
    from conftest import synth_with_checkpoint

    data, _ = synth_with_checkpoint(tmp_path, train_per_class=1, val_per_class=2)
    annotations = read_source(f"cub:{data}").split("test")
    images = sorted(annotations.images["image"])
    (annotations.root / images[0]).write_bytes(b"not an image")
    calibration = calibrate(tmp_path / "m.pt", annotations, images, tmp_path / "train",
                            workers=0)
    assert calibration is not None and calibration.images == len(images) - 1 == 5
    meta = ReportMeta.read(tmp_path / "train" / "calibration" / "report")
    assert (meta.images, meta.annotated, meta.subset) == (5, 6, "image-list")


def test_bad_image_lists_and_contradicting_flags_are_one_line(twelve_of_a_hundred, tmp_path,
                                                              monkeypatch):
    from acol_eval.scoring import coverage

    maps, source, _ = twelve_of_a_hundred
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(AcolError, match="names no image"):
        _score(maps, source, tmp_path / "a", image_list=str(empty))
    with pytest.raises(AcolError, match="not a file"):
        _score(maps, source, tmp_path / "b", image_list=str(tmp_path))
    monkeypatch.setattr(coverage, "LIST_LIMIT", 2)
    with pytest.raises(AcolError, match="larger than"):
        _score(maps, source, tmp_path / "c", image_list=str(empty))
    with pytest.raises(AcolError, match="--strict .* --allow-missing contradict"):
        _score(maps, source, tmp_path / "d", strict=True, allow_missing=True)
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_map_label_on_labels_that_are_no_model_class_says_why_they_have_no_map(tmp_path):
    from tests.test_metric_names import GT, write_two_map_run

    run = write_two_map_run(tmp_path, [("i0.png", "a", "a", GT, GT),
                                       ("i1.png", "zebra", "a", GT, GT)])
    with pytest.raises(AcolError, match="1 of 2 annotated images .*1 has no map; 1 of them "
                                        "because the label is not a model class"):
        _score(run, f"csv:{tmp_path / 'ann.csv'}", tmp_path / "rep", map_choice="label",
               protocol="native")
