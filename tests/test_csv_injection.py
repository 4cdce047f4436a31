"""CSV formula injection: an image or class named like a formula (=, +, -, @, tab, CR)
is written with a leading quote, so a spreadsheet shows it as text, and acol-eval's own
readers read every name back exactly (a name that itself begins with a quote too)."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pandas as pd
import pytest

from acol_eval.util.csvtext import cell, frame_to_csv, text, unescape_frame

NAMES = ["=HYPERLINK(1)", "+1+1", "-x", "@SUM(1)", "\tx", "\rx", "'quoted", "''two",
         "plain", "", "-0.5", "+3", "1e5"]


def formula_like(value: str) -> bool:
    """What a spreadsheet would evaluate (a plain number is a number)."""
    try:
        float(value)
        return False
    except ValueError:
        return value[:1] in ("=", "+", "-", "@", "\t", "\r")


def test_cells_round_trip_and_never_start_a_formula():
    for name in NAMES:
        written = cell(name)
        assert text(written) == name
        assert not formula_like(written), name
    assert cell("=1+1") == "'=1+1" and cell("'x") == "''x" and cell("-0.5") == "-0.5"
    assert cell(-3) == -3 and text(2.5) == 2.5  # numbers are left alone
    frame = pd.DataFrame({"image": NAMES, "value": np.arange(len(NAMES), dtype=float)})
    written = frame_to_csv(frame, index=False)
    assert not [c for row in csv.reader(written.splitlines()) for c in row if formula_like(c)]
    back = unescape_frame(pd.read_csv(__import__("io").StringIO(written), dtype={"image": str},
                                      keep_default_na=False))
    assert back["image"].tolist() == NAMES
    assert frame["image"].tolist() == NAMES  # the caller's frame is not changed


def test_a_quote_that_cell_did_not_add_is_the_names_own(tmp_path):
    """Another tool's predictions file may name an image `'x.jpg` (a quote before no
    trigger): `cell` never writes that, so reading it must not strip the quote."""
    from acol_eval.scoring.predictionfile import read_predictions

    assert text("'x.jpg") == "'x.jpg" and text("''x") == "'x" and text("'=1") == "=1"
    path = tmp_path / "other-tool.csv"
    path.write_text("image,pred_1\n'x.jpg,'bird\n'=y.jpg,cat\n")
    table = read_predictions(path)
    assert table["image"].tolist() == ["'x.jpg", "=y.jpg"]
    assert table["pred_1"].tolist() == ["'bird", "cat"]
    frame = unescape_frame(pd.DataFrame({"'own": ["'a"], "'=b": ["''c"]}))
    assert frame.columns.tolist() == ["'own", "=b"] and frame.iloc[0].tolist() == ["'a", "'c"]


def cells(path) -> list[str]:
    with open(path, newline="") as handle:
        return [c for row in csv.reader(handle) for c in row]


IMAGES = ["=cmd.png", "@at.png", "-minus.png", "'quote.png", "plain.png"]
CLASSES = ["=evil", "@class", "'kept"]


@pytest.mark.slow
def test_localize_boxes_and_score_write_safe_cells_and_read_names_back(tmp_path):
    from acol_eval import api
    from acol_eval.maps.reportfolder import ScoreReport
    from acol_eval.maps.runfolder import LocalizeRun
    from conftest import make_checkpoint

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in IMAGES:
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (48, 40, 3), np.uint8))
    make_checkpoint(tmp_path / "m.pt", classes=CLASSES)
    run = api.localize(folder, out=tmp_path / "run", checkpoint=tmp_path / "m.pt", top_k=2,
                       workers=0, device="cpu")
    new = api.boxes(run, out=tmp_path / "new", cam_threshold=0.4, workers=0)
    for written in ("run/predictions.csv", "run/maps_index.csv", "new/predictions.csv"):
        found = cells(tmp_path / written)
        assert not [c for c in found if formula_like(c)], written
        assert "'=cmd.png" in found and "''quote.png" in found
    for opened in (run, new, LocalizeRun.open(tmp_path / "new")):
        table = opened.predictions()
        assert sorted(table["image"]) == sorted(IMAGES)
        assert set(table["pred_1"]) <= set(CLASSES)
    store = api.open_maps(run)
    assert set(store.index["image"]) == set(IMAGES)
    assert set(store.index["class_name"]) == set(CLASSES)

    # score: annotations of the user's (read as they are), names written safely
    annotations = tmp_path / "ann.csv"
    with open(annotations, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "x0", "y0", "x1", "y1"])
        for k, name in enumerate(IMAGES):
            writer.writerow([name, CLASSES[k % 3], 2, 3, 30, 40])
    report = api.score(run, annotations=f"csv:{annotations}", out=tmp_path / "report",
                       protocol="native", images=folder, cam_curve_interval=0.01, workers=0)
    for name in ("per_image.csv", "per_class.csv", "summary.csv"):
        assert not [c for c in cells(tmp_path / "report" / name) if formula_like(c)], name
    opened = ScoreReport.open(tmp_path / "report")
    assert sorted(opened.per_image["image"]) == sorted(IMAGES)
    assert set(opened.per_image["label"]) == set(CLASSES)
    assert set(opened.per_class["class"]) == set(CLASSES)
    assert report.result.exit_code == 0
    other = api.score(run, annotations=f"csv:{annotations}", out=tmp_path / "other",
                      protocol="native", images=folder, cam_curve_interval=0.01, workers=0,
                      threshold=0.5)
    compared = api.compare(report, other, out=tmp_path / "cmp", bootstrap=0)
    assert compared.common == len(IMAGES)  # compare matched names and outcomes.npz
