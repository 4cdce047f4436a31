"""Top-1 and Top-5 Loc for maps from other tools: `score MAPS --predictions FILE`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from acol_eval.scoring import predictionfile
from acol_eval.scoring.scoring import ScoreConfig, score
from acol_eval.util.errors import AcolError
from conftest import assert_one_line_error, run_cli, write_wsol_metadata
from tests.test_coverage import BOX, blob

NAMES = [f"c/{k}.jpg" for k in range(4)]
LABELS = ["0", "1", "2", "0"]


@pytest.fixture
def npy_world(tmp_path):
    """Four images of classes 0, 1, 2, 0 with right maps, except image 3's (elsewhere)."""
    meta = write_wsol_metadata(tmp_path / "meta",
                               [(n, c, 100, 100) for n, c in zip(NAMES, LABELS)],
                               [f"{n},{','.join(map(str, BOX))}" for n in NAMES])
    maps = tmp_path / "maps" / "c"
    maps.mkdir(parents=True)
    for k in range(len(NAMES)):
        np.save(maps / f"{k}.jpg.npy", blob(BOX if k < 3 else (60, 60, 95, 95)))
    return tmp_path / "maps", f"wsol:{meta}"


def write_predictions(path, rows, header="image,pred_1,pred_2,pred_3"):
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


# image 0 right at top 1; 1 right at top 2; 2 wrong in the top 3; 3 right, bad map
ROWS = [["c/0.jpg", "0", "1", "2"], ["c/1", "0", "1", "2"], ["c/2.jpg", "0", "1", "1"],
        ["c/3.jpg", "0", "2", "1"]]


def _score(maps, source, out, **options):
    return score(ScoreConfig(run=str(maps), annotations=source, out=str(out), workers=0,
                             interval=0.01, **options))


def test_predictions_give_npy_maps_classification_and_top1_top5_loc(npy_world, tmp_path):
    maps, source = npy_world
    file = write_predictions(tmp_path / "p.csv", ROWS)
    summary = _score(maps, source, tmp_path / "rep", predictions=str(file)
                     ).summary.set_index("metric")
    assert summary.at["cls_top1", "value"] == pytest.approx(50.0)  # images 0 and 3
    assert summary.at["cls_top5", "value"] == pytest.approx(75.0)  # and image 1
    assert summary.at["gt_known_loc", "value"] == pytest.approx(75.0)  # image 3's map
    assert summary.at["top1_loc", "value"] == pytest.approx(25.0)  # image 0 only
    assert summary.at["top5_loc", "value"] == pytest.approx(50.0)  # images 0 and 1
    per_image = pd.read_csv(tmp_path / "rep" / "per_image.csv").set_index("image")
    assert list(per_image["top1_correct"]) == [1, 0, 0, 1]


def test_without_predictions_npy_maps_have_no_classification(npy_world, tmp_path):
    maps, source = npy_world
    summary = _score(maps, source, tmp_path / "rep").summary.set_index("metric")
    assert not {"cls_top1", "top1_loc", "top5_loc"} & set(summary.index)


def test_fewer_than_five_predictions_of_more_classes_give_no_top5(npy_world, tmp_path):
    maps, source = npy_world
    file = write_predictions(tmp_path / "p.csv", [r[:3] for r in ROWS],
                             header="image,pred_1,pred_2")
    summary = _score(maps, source, tmp_path / "rep", predictions=str(file)
                     ).summary.set_index("metric")
    assert "cls_top5" not in summary.index and "top5_loc" not in summary.index
    assert summary.at["top1_loc", "value"] == pytest.approx(25.0)


@pytest.mark.parametrize("rows, header, phrase", [
    (ROWS, "image,label,score", "needs the columns image and pred_1"),
    (ROWS, "name,pred_1,pred_2,pred_3", "needs the columns image and pred_1"),
    ([*ROWS, ["c/0.jpg", "1", "0", "2"]], None, "image 'c/0.jpg' has two rows"),
    ([*ROWS, ["c/0", "1", "0", "2"]], None, "image 'c/0.jpg' has two rows"),
    ([*ROWS, ["d/9.jpg", "1", "0", "2"]], None, "1 image the annotations do not know"),
    (ROWS[:3], None, "no row for 1 of the 4 scored images (e.g. 'c/3.jpg')"),
    ([[r[0], "cat", "dog", "eel"] for r in ROWS], None, "no predicted class is an "
                                                        "annotation label"),
])
def test_hostile_prediction_files_are_one_line_errors(npy_world, tmp_path, rows, header,
                                                       phrase):
    maps, source = npy_world
    file = write_predictions(tmp_path / "p.csv", rows, header or "image,pred_1,pred_2,pred_3")
    out = tmp_path / "rep"
    result = run_cli("score", str(maps), "--annotations", source, "--out", str(out),
                     "--predictions", str(file), "--workers", "0")
    assert_one_line_error(result, 2, phrase)
    assert not out.exists()


def test_huge_prediction_files_are_refused_before_reading(npy_world, tmp_path, monkeypatch):
    maps, source = npy_world
    file = write_predictions(tmp_path / "p.csv", ROWS)
    monkeypatch.setattr(predictionfile, "MAX_ROWS", 3)
    with pytest.raises(AcolError, match="more than 3 rows"):
        _score(maps, source, tmp_path / "rows", predictions=str(file))
    monkeypatch.setattr(predictionfile, "MAX_BYTES", 10)
    with pytest.raises(AcolError, match="larger than"):
        _score(maps, source, tmp_path / "bytes", predictions=str(file))
    with pytest.raises(AcolError, match="not a file"):
        _score(maps, source, tmp_path / "none", predictions=str(tmp_path / "nope.csv"))


def test_a_localize_run_keeps_its_own_predictions(tmp_path):
    from tests.test_metric_names import IMAGES, write_two_map_run

    run = write_two_map_run(tmp_path, IMAGES)
    file = write_predictions(tmp_path / "p.csv", [["i0.png", "a"]], "image,pred_1")
    with pytest.raises(AcolError, match="--predictions is for folders of .npy maps"):
        _score(run, f"csv:{tmp_path / 'ann.csv'}", tmp_path / "rep", predictions=str(file))
