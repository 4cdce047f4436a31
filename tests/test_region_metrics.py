"""The region metrics (score --region-metrics) on maps whose values are known by hand:
their tie rules, the pointing game's tolerance, the edge cases (an empty region, a
full-image region, a constant map, a map with NaN: documented values, never a
traceback) and the option's checks. Equality with Quantus: test_region_metrics_quantus."""

from __future__ import annotations

import html

import cv2
import numpy as np
import pandas as pd
import pytest

from acol_eval.metrics import metricdefs
from acol_eval.metrics.regionmetrics import (
    RegionOptions,
    boxes_region,
    mask_region,
    measure,
    region_names,
)
from acol_eval.scoring.scoring import ScoreConfig, score
from acol_eval.util.errors import AcolError
from conftest import run_cli

ALL = RegionOptions(tuple(region_names()))


def values(frame, region, options=ALL) -> dict[str, float]:
    return dict(zip(options.names, measure(np.asarray(frame), np.asarray(region, bool),
                                           options)))


def test_seven_opt_in_metrics_in_the_registry_outside_the_default_orders():
    assert region_names() == [
        "pointing_game", "attribution_localisation", "top_k_intersection",
        "relevance_rank_accuracy", "relevance_mass_accuracy", "region_auc",
        "energy_pointing_game"]
    for name in region_names():
        metric = metricdefs.get_metric(name)
        assert metric.opt_in and metric.description
        assert name not in metricdefs.compare_order([50])
        assert name in metricdefs.compare_order([50], opt_in=True)
    assert metricdefs.binary_names() == ["pointing_game"]


def test_values_by_hand_with_ties_taken_in_proportion():
    frame = np.array([[4.0, 1, 1], [1, 1, 0], [0, 0, 0]])
    region = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0]], bool)
    found = values(frame, region, RegionOptions(ALL.names, top_k=2))
    assert found["pointing_game"] == 0.0  # the maximum (4) is outside
    # top 2: the 4 (outside) and one of the four 1s, three of them inside: 3/4 of a pixel
    assert found["top_k_intersection"] == pytest.approx(0.75 / 2)
    # top 3 (the region's size): the 4 and two of the four 1s: 2 * 3/4 inside
    assert found["relevance_rank_accuracy"] == pytest.approx(1.5 / 3)
    assert found["relevance_mass_accuracy"] == pytest.approx(3 / 8)
    assert found["attribution_localisation"] == pytest.approx(3 / 8, abs=1e-8)
    assert found["energy_pointing_game"] == pytest.approx(0.75 / 2)  # (v - 0) / 4
    # AUC: each region pixel (1) against the 6 outside (4, one 1, four 0s): beats the
    # four 0s, ties the 1 (half), loses to the 4: 4.5 / 6
    assert found["region_auc"] == pytest.approx(4.5 / 6)


def test_pointing_game_ties_at_the_maximum_and_tolerance():
    frame = np.zeros((20, 20))
    frame[2, 2] = frame[15, 15] = 1.0  # two tied maxima
    region = np.zeros((20, 20), bool)
    region[14:17, 14:17] = True
    assert values(frame, region)["pointing_game"] == 1.0  # any maximum in the region hits
    region[:] = False
    region[15, 10] = True  # 5 pixels left of the second maximum
    for tolerance, hit in ((0, 0.0), (4.9, 0.0), (5, 1.0), (15, 1.0)):
        options = RegionOptions(("pointing_game",), pointing_tolerance=tolerance)
        assert values(frame, region, options)["pointing_game"] == hit, tolerance


def test_edge_cases_give_documented_values():
    rng = np.random.default_rng(0)
    frame = rng.random((8, 8))
    empty = values(frame, np.zeros((8, 8)))
    assert all(np.isnan(v) for v in empty.values())
    full = values(frame, np.ones((8, 8)))
    assert np.isnan(full.pop("region_auc"))  # no pixel outside: no ROC curve
    assert full == pytest.approx(dict.fromkeys(full, 1.0), abs=1e-8)
    region = np.eye(8, dtype=bool)
    for constant in (np.full((8, 8), 0.3), np.zeros((8, 8), np.uint8)):
        assert all(np.isnan(v) for v in values(constant, region).values())
    holed = frame.copy()
    holed[3, 3] = np.nan
    assert all(np.isnan(v) for v in values(holed, region).values())
    # k larger than the map: every pixel, the region's share of the map
    options = RegionOptions(("top_k_intersection",), top_k=1000)
    assert values(frame, region, options)["top_k_intersection"] == pytest.approx(8 / 64)


def test_regions_from_boxes_and_masks():
    region = boxes_region(np.array([[1, 1, 2, 3], [5, 0, 5, 0]]), (6, 8), inclusive=True)
    assert region.sum() == 2 * 3 + 1 and region[3, 2] and region[0, 5]
    # exclusive ends, pixel centres: [0.6, 2.4) holds the centres 0.5? no, 1.5 only
    region = boxes_region(np.array([[0.6, 0.0, 2.4, 1.0]]), (4, 4), inclusive=False)
    assert region.sum() == 1 and region[0, 1]
    mask = np.array([[1, 255], [0, 1]], np.uint8)
    assert mask_region(mask, (4, 4)).sum() == 8  # ignored pixels are outside


def _maps(folder, maps):
    for name, value in maps.items():
        np.save(folder / f"{name}.npy", value)


@pytest.mark.parametrize("protocol", ["wsoleval", "native"])
def test_score_counts_each_image_and_leaves_undefined_ones_out(tmp_path, protocol):
    """Through score: a map with NaN, a constant map and an image without boxes are NaN
    (not counted), the others are in per_image.csv, summary.csv and per_class.csv."""
    (tmp_path / "maps").mkdir()
    rows, maps = [], {}
    rng = np.random.default_rng(1)
    for k in range(7):
        cv2.imwrite(str(tmp_path / f"i{k}.png"), np.zeros((80, 100), np.uint8))
        rows.append(f"i{k}.png,{'ab'[k % 2]},10,10,60,50")
        maps[f"i{k}"] = rng.random((7, 7))
    maps["i0"][2, 2] = np.nan
    maps["i1"][:] = 0.5
    rows[6] = "i6.png,a,,,,"  # annotated without a box
    (tmp_path / "ann.csv").write_text("image,label,x0,y0,x1,y1\n" + "\n".join(rows) + "\n")
    _maps(tmp_path / "maps", maps)
    score(ScoreConfig(run=str(tmp_path / "maps"), annotations=f"csv:{tmp_path / 'ann.csv'}",
                      out=str(tmp_path / "rep"), workers=0, interval=0.01, protocol=protocol,
                      region_metrics="pointing_game,region_auc", bootstrap=1000))
    per_image = pd.read_csv(tmp_path / "rep" / "per_image.csv").set_index("image")
    assert per_image[["pointing_game", "region_auc"]].isna().sum().tolist() == [3, 3]
    assert "top_k_intersection" not in per_image
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv").set_index("metric")
    known = per_image["region_auc"].dropna()
    assert summary.at["region_auc", "count"] == 4
    assert summary.at["region_auc", "value"] == pytest.approx(known.mean() * 100, abs=1e-4)
    assert summary.at["pointing_game", "ci_low"] <= summary.at["pointing_game", "value"]
    per_class = pd.read_csv(tmp_path / "rep" / "per_class.csv").set_index("class")
    assert per_class.at["a", "region_auc"] == pytest.approx(
        known[known.index.isin(["i2.png", "i4.png"])].mean() * 100, abs=1e-3)


def test_options_are_checked():
    for given, message in (("bogus", "bogus"), ("all,bogus", "bogus")):
        with pytest.raises(AcolError, match=message):
            ScoreConfig(run="r", annotations="a", out="o", region_metrics=given)
    assert ScoreConfig(run="r", annotations="a", out="o",
                       region_metrics="region_auc,pointing_game").region_metrics == (
        "pointing_game", "region_auc")
    assert len(ScoreConfig(run="r", annotations="a", out="o",
                           region_metrics="all").region_metrics) == 7
    with pytest.raises(AcolError, match="top-k"):
        ScoreConfig(run="r", annotations="a", out="o", top_k=0)
    with pytest.raises(AcolError, match="pointing-tolerance"):
        ScoreConfig(run="r", annotations="a", out="o", pointing_tolerance=-1)


def test_cli_refuses_an_unknown_metric_in_one_line(tmp_path):
    result = run_cli("score", str(tmp_path), "--annotations", f"csv:{tmp_path}/a.csv",
                     "--out", str(tmp_path / "o"), "--region-metrics", "pointing")
    assert result.returncode == 2
    assert "--region-metrics pointing" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def _peaked(inside: bool) -> np.ndarray:
    """A 10x10 map over a 100x80 image whose peak is in the box (10..60, 10..50) or not."""
    yy, xx = np.mgrid[0:10, 0:10]
    cy, cx = (3, 3) if inside else (8, 8)
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)


def test_compare_pairs_the_region_metrics_with_mcnemar_for_the_pointing_game(tmp_path):
    """Method 'inside' points into the box on all 8 images, 'mixed' on 2 of them: the
    pointing game's McNemar test counts 6 images only the reference hits (p = 2 / 2**6),
    every region metric gets a paired interval, and both pages show them."""
    from acol_eval.comparison.compare import CompareConfig
    from acol_eval.comparison.compare import run as compare

    rows = []
    for k in range(8):
        cv2.imwrite(str(tmp_path / f"i{k}.png"), np.zeros((80, 100), np.uint8))
        rows.append(f"i{k}.png,{'ab'[k % 2]},10,10,60,50")
    (tmp_path / "ann.csv").write_text("image,label,x0,y0,x1,y1\n" + "\n".join(rows) + "\n")
    reports = []
    for method, hits in (("inside", range(8)), ("mixed", (0, 1))):
        (tmp_path / method).mkdir()
        _maps(tmp_path / method, {f"i{k}": _peaked(k in hits) for k in range(8)})
        out = tmp_path / f"{method}-report"
        score(ScoreConfig(run=str(tmp_path / method), annotations=f"csv:{tmp_path}/ann.csv",
                          out=str(out), workers=0, interval=0.01, region_metrics="all"))
        reports.append(str(out))
    result = compare(CompareConfig(reports=tuple(reports), out=str(tmp_path / "cmp"),
                                   bootstrap=1000), log=lambda line: None)
    pairs = result.pairs.iloc[0]
    assert (pairs["pointing_game_mcnemar_reference_only"],
            pairs["pointing_game_mcnemar_method_only"]) == (6, 0)
    assert pairs["pointing_game_mcnemar_p"] == pytest.approx(2 / 2 ** 6)
    assert pairs["pointing_game_diff"] == pytest.approx(-75.0)
    board = result.leaderboard.set_index("method")
    for name in region_names():
        assert f"{name}_diff_ci_low" in pairs and f"{name}_ci_low" in board, name
    assert pairs["region_auc_diff_ci_high"] < 0  # 'mixed' ranks the box lower everywhere
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert "per-image pointing_game" in page and "Energy-based Pointing Game" in page
    score_page = (tmp_path / "inside-report" / "report.html").read_text()
    description = metricdefs.get_metric("relevance_rank_accuracy").description
    assert f'<small class="what">{html.escape(description)}</small>' in score_page


def test_the_region_metrics_are_the_same_with_any_worker_count(tmp_path, monkeypatch):
    """Each image's values are computed where its map is swept: two worker processes
    (chunks of 2 images, so both get some) give the per_image.csv and summary.csv of one."""
    from acol_eval.scoring import passes

    monkeypatch.setattr(passes, "CHUNK", 2)
    rows = []
    for k in range(8):
        cv2.imwrite(str(tmp_path / f"i{k}.png"), np.zeros((80, 100), np.uint8))
        rows.append(f"i{k}.png,{'ab'[k % 2]},10,10,60,50")
    (tmp_path / "ann.csv").write_text("image,label,x0,y0,x1,y1\n" + "\n".join(rows) + "\n")
    (tmp_path / "run").mkdir()
    _maps(tmp_path / "run", {f"i{k}": _peaked(k % 3 == 0) for k in range(8)})
    files = []
    for workers in (0, 2):
        out = tmp_path / f"rep{workers}"
        score(ScoreConfig(run=str(tmp_path / "run"), annotations=f"csv:{tmp_path}/ann.csv",
                          out=str(out), workers=workers, interval=0.01, region_metrics="all"))
        files.append([(out / name).read_bytes() for name in ("per_image.csv", "summary.csv")])
    assert files[0] == files[1]
    assert b"pointing_game" in files[0][0]
