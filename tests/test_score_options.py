"""score --label-rule (coco) and --mask-root (masks of wsol/OpenImages metadata)."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from acol_eval.data.readers import read_source
from conftest import reference_pxap, reference_scores, run_cli, write_coco, write_wsol_metadata


def test_label_rule_picks_the_coco_label(tmp_path):
    path = f"coco:{write_coco(tmp_path)}"
    assert read_source(path).images["label"].tolist() == ["cat"]
    assert read_source(path, label_rule="most-boxes").images["label"].tolist() == ["dog"]
    maps = tmp_path / "maps"
    maps.mkdir()
    heat = np.zeros((10, 10))
    heat[1:7, 1:7] = 1
    np.save(maps / "a.npy", heat)
    for rule, label in (("largest-area", "cat"), ("most-boxes", "dog")):
        result = run_cli("score", str(maps), "--annotations", path, "--out",
                         str(tmp_path / rule), "--label-rule", rule, "--protocol", "native")
        assert result.returncode == 0, result.stderr
        assert pd.read_csv(tmp_path / rule / "per_class.csv")["class"].tolist() == [label]
    assert run_cli("score", str(maps), "--annotations", path, "--out", str(tmp_path / "x"),
                   "--label-rule", "biggest").returncode == 2


def test_mask_root_resolves_openimages_mask_paths(tmp_path):
    meta = write_wsol_metadata(tmp_path / "meta", [("cls/a.jpg", "0", 32, 32)],
                               ["cls/a.jpg,cls/a_mask.png,"])
    masks = tmp_path / "elsewhere"
    (masks / "cls").mkdir(parents=True)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 4:20] = 255
    cv2.imwrite(str(masks / "cls" / "a_mask.png"), mask)
    maps = tmp_path / "maps" / "cls"
    maps.mkdir(parents=True)
    np.save(maps / "a.npy", (mask > 0).astype(np.float32))     # the mask itself
    args = ["score", str(tmp_path / "maps"), "--annotations", f"wsol:{meta}"]
    result = run_cli(*args, "--out", str(tmp_path / "without"))
    assert result.returncode == 0, result.stderr
    assert "pxap" not in pd.read_csv(tmp_path / "without" / "summary.csv")["metric"].tolist()
    result = run_cli(*args, "--out", str(tmp_path / "with"), "--mask-root", str(masks))
    assert result.returncode == 0, result.stderr
    summary = pd.read_csv(tmp_path / "with" / "summary.csv", dtype=str).set_index("metric")
    # the mask itself scores almost perfectly, not quite (bicubic ringing): the figure
    # computed here from the pixels, the way wsolevaluation's mask evaluator does
    mask224 = cv2.resize(np.float32(mask), (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5
    expected = reference_pxap([reference_scores((mask > 0).astype(np.float32))],
                              [mask224.astype(np.uint8)], np.arange(0, 1, 0.001))
    assert 99.9 < expected < 100
    assert summary.at["pxap", "value"] == f"{expected:.6g}"
