"""score at its edges: what users bring, bad maps and masks, bad arguments, the
report folder written whole or not at all. Library logic in process; the CLI only for
parsing, messages and exit codes."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from acol_eval.maps.reportfolder import Outcomes, ReportMeta
from acol_eval.scoring.scoring import ScoreConfig, score
from acol_eval.util.errors import AcolError
from acol_eval.util.safeio import FolderLock
from conftest import assert_one_line_error, run_cli, shared_data, write_wsol_metadata
from tests.test_score import square_maps, write_run


def run_score(tmp_path, run, annotations, out="rep", **options):
    options.setdefault("workers", 0)
    options.setdefault("allow_missing", True)  # most tests here score part of a split
    return score(ScoreConfig(run=str(run), annotations=annotations, out=str(tmp_path / out),
                             **options))


def blob_map(box, width, height, side=28):
    """A CAM-like side x side map: a Gaussian over the box (original pixels)."""
    yy, xx = np.mgrid[0:side, 0:side]
    cx = (box[0] + box[2]) / 2 / width * side
    cy = (box[1] + box[3]) / 2 / height * side
    sx = max((box[2] - box[0]) / width * side / 3, 1)
    sy = max((box[3] - box[1]) / height * side / 3, 1)
    return np.exp(-((xx - cx) ** 2 / (2 * sx * sx) + (yy - cy) ** 2 / (2 * sy * sy)))


def two_image_metadata(tmp_path):
    return write_wsol_metadata(tmp_path / "meta",
                               [("c/a.jpg", "0", 100, 100), ("c/b.jpg", "0", 100, 100)],
                               ["c/a.jpg,10,10,60,60", "c/b.jpg,40,40,90,90"])


def save_maps(folder, maps: dict):
    for name, values in maps.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / name, values)
    return folder


# --------------------------------------------------------------------------- 1: map names


@pytest.fixture(scope="module")
def cub_maps(tmp_path_factory):
    """20 CUB test images of cub10 with blob maps, saved under both namings."""
    from acol_eval.data.readers import read_source

    root = shared_data() / "cub10"
    annotations = read_source(f"cub:{root}").split("test")
    images = annotations.images.iloc[:20]
    boxes = annotations.boxes.groupby("image")
    folder = tmp_path_factory.mktemp("cub")
    for row in images.itertuples():
        box = boxes.get_group(row.image)[["x0", "y0", "x1", "y1"]].to_numpy()[0]
        heat = blob_map(box, row.width, row.height).astype(np.float32)
        for naming, name in (("stem", row.image.rsplit(".", 1)[0]), ("full", row.image)):
            save_maps(folder / naming, {f"{name}.npy": heat})
    return folder, f"cub:{root}"


def test_cub_maps_named_with_and_without_the_extension_give_identical_reports(cub_maps,
                                                                              tmp_path):
    folder, source = cub_maps
    results = {}
    for naming in ("stem", "full"):
        result = run_score(tmp_path, folder / naming, source, out=naming, split="test")
        assert result.summary.set_index("metric").at["issue:annotation_without_map",
                                                     "value"] == 223
        results[naming] = [(tmp_path / naming / f).read_bytes()
                           for f in ("summary.csv", "per_image.csv", "per_class.csv")]
    assert results["stem"] == results["full"]
    per_image = pd.read_csv(tmp_path / "full" / "per_image.csv")
    assert len(per_image) == 20 and per_image["correct"].sum() >= 15


def test_a_map_matched_twice_is_a_one_line_error(cub_maps, tmp_path):
    folder, source = cub_maps
    both = tmp_path / "both"
    shutil.copytree(folder / "stem", both)
    first = sorted((folder / "full").rglob("*.npy"))[0]
    target = both / first.relative_to(folder / "full")
    shutil.copy(first, target)
    with pytest.raises(AcolError, match="has two maps: .*\\.npy and .*\\.npy"):
        run_score(tmp_path, both, source, split="test")


# --------------------------------------------------------------------------- 2: PxAP


def reference_pxap(maps: dict, mask_root, lines: list[str], thresholds) -> float:
    """wsolevaluation's MaskEvaluator, plainly: bicubic 224x224 + min-max maps; every mask
    and the first line's ignore mask read greyscale as float32, resized to 224 (nearest),
    > 0.5; ignore = ignore box minus foreground (255); histograms over thresholds + 1, 2,
    3; tp/fp from the top; AP = sum of precision x recall steps where tp + fp > 0."""
    edges = np.append(thresholds, [1.0, 2.0, 3.0])
    true_hist = np.zeros(len(edges) - 1)
    false_hist = np.zeros(len(edges) - 1)
    masks, ignores = {}, {}
    for line in lines:
        image, mask, ignore = line.split(",")
        masks.setdefault(image, []).append(mask)
        ignores.setdefault(image, ignore)

    def load(name):
        image = np.float32(cv2.imread(str(mask_root / name), cv2.IMREAD_GRAYSCALE))
        return cv2.resize(image, (224, 224), interpolation=cv2.INTER_NEAREST)

    for image, values in maps.items():
        score = cv2.resize(values.astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
        score = (score - score.min()) / (score.max() - score.min())
        foreground = np.stack([load(m) > 0.5 for m in masks[image]]).any(axis=0)
        ignore = (load(ignores[image]) > 0.5) & ~foreground
        gt = foreground.astype(np.uint8) + 255 * ignore.astype(np.uint8)
        true_hist += np.histogram(score[gt == 1], bins=edges)[0]
        false_hist += np.histogram(score[gt == 0], bins=edges)[0]
    tp = true_hist[::-1].cumsum()
    fp = false_hist[::-1].cumsum()
    fn = true_hist.sum() - tp
    nonzero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return float((precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100)


def test_pxap_on_real_openimages_metadata_with_empty_sizes_equals_mask_evaluator(tmp_path):
    source = shared_data() / "wsol-metadata" / "OpenImages" / "val"
    mask_root = shared_data() / "wsol-metadata" / "OpenImages-test-masks-sample"
    meta = tmp_path / "meta"
    shutil.copytree(source, meta)
    assert (meta / "image_sizes.txt").stat().st_size == 0     # as shipped
    sampled = {p.name.split("_m")[0] for p in mask_root.rglob("*_m*.png")}
    lines = [line for line in (meta / "localization.txt").read_text().splitlines()
             if line.split(",")[0].rsplit("/", 1)[-1][:-4] in sampled]
    assert len(lines) == 6
    rng = np.random.default_rng(4)
    maps = {line.split(",")[0]: rng.random((28, 28)) ** 2 for line in lines}
    # wsolevaluation's own naming: the image id with its extension, then .npy
    save_maps(tmp_path / "maps", {f"{image}.npy": values for image, values in maps.items()})
    result = run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}", mask_root=str(mask_root),
                       interval=0.01)
    summary = result.summary.set_index("metric")
    expected = reference_pxap(maps, mask_root, lines, np.arange(0, 1, 0.01))
    assert summary.at["pxap", "value"] == pytest.approx(expected, abs=1e-9)
    assert 0 < expected < 100
    curve = pd.read_csv(tmp_path / "rep" / "pxap_curve.csv")
    assert len(curve) == 100 and curve["recall"].iloc[0] == 100
    assert (np.diff(curve["recall"]) <= 1e-9).all()  # fewer pixels kept as t rises
    # masks only: no box metric is written as a zero
    assert not any(m.startswith(("gt_known", "max_box", "best_")) for m in summary.index)
    assert "issue:image_without_size" not in summary.index


def test_missing_masks_are_counted_and_instance_masks_of_other_sizes_are_read(tmp_path):
    meta = write_wsol_metadata(tmp_path / "meta", [("c/a.jpg", "0", 40, 40),
                                                   ("c/b.jpg", "0", 40, 40)],
                               ["c/a.jpg,c/a1.png,", "c/a.jpg,c/a2.png,", "c/b.jpg,c/gone.png,"])
    (tmp_path / "meta" / "c").mkdir()
    first = np.zeros((40, 40), np.uint8)
    first[0:20, 0:20] = 255
    second = np.zeros((80, 80), np.uint8)       # another instance at twice the size
    second[40:80, 40:80] = 255
    cv2.imwrite(str(tmp_path / "meta" / "c" / "a1.png"), first)
    cv2.imwrite(str(tmp_path / "meta" / "c" / "a2.png"), second)
    heat = np.zeros((40, 40))
    heat[0:20, 0:20] = heat[20:40, 20:40] = 1
    save_maps(tmp_path / "maps", {"c/a.npy": heat, "c/b.npy": heat})
    for protocol in ("wsoleval", "native"):
        result = run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}", out=protocol,
                           protocol=protocol)
        summary = result.summary.set_index("metric")
        assert summary.at["issue:mask_unreadable", "value"] == 1
        assert summary.at["pxap", "value"] > 95    # both instances are foreground


def test_pxap_curve_csv_holds_precision_and_recall_at_every_threshold(tmp_path):
    """A 40x40 mask, its top left quarter foreground; the map is 1 there,
    0.5 on the top right quarter and 0 below: every point of the curve by hand."""
    meta = write_wsol_metadata(tmp_path / "meta", [("c/a.jpg", "0", 40, 40)],
                               ["c/a.jpg,c/a.png,"])
    (tmp_path / "meta" / "c").mkdir()
    mask = np.zeros((40, 40), np.uint8)
    mask[:20, :20] = 255
    cv2.imwrite(str(tmp_path / "meta" / "c" / "a.png"), mask)
    heat = np.zeros((40, 40))
    heat[:20, :20], heat[:20, 20:] = 1.0, 0.5
    save_maps(tmp_path / "maps", {"c/a.npy": heat})
    result = run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}", protocol="native",
                       interval=0.25)
    curve = pd.read_csv(tmp_path / "rep" / "pxap_curve.csv")
    assert curve.columns.tolist() == ["threshold", "precision", "recall"]
    assert curve.to_numpy().tolist() == [[0.0, 25.0, 100.0], [0.25, 50.0, 100.0],
                                         [0.5, 50.0, 100.0], [0.75, 100.0, 100.0]]
    # every foreground pixel scores the maximum: all recall comes at precision 100
    assert result.summary.set_index("metric").at["pxap", "value"] == pytest.approx(100.0)
    assert "precision against recall" in (tmp_path / "rep" / "report.html").read_text()
    # scored again without masks: the old curve does not stay beside the new report
    (tmp_path / "meta" / "localization.txt").write_text("c/a.jpg,0,0,20,20\n")
    run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}", protocol="native", overwrite=True)
    assert not (tmp_path / "rep" / "pxap_curve.csv").exists()


# --------------------------------------------------------------------------- 4, 5: causes


def test_nothing_to_score_prints_the_counts_then_names_from_both_sides(tmp_path, capsys):
    meta = two_image_metadata(tmp_path)
    save_maps(tmp_path / "maps", {"other/x.npy": np.ones((4, 4))})
    with pytest.raises(AcolError) as error:
        run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}")
    message = str(error.value)
    assert "'other/x.npy'" in message and "'c/a.jpg'" in message
    stderr = capsys.readouterr().err
    assert "2 annotated images without a map" in stderr and "1 map without annotation" in stderr


def test_nothing_to_score_names_missing_sizes(tmp_path):
    meta = write_wsol_metadata(tmp_path / "meta", [("a.jpg", "0", 10, 10)], ["a.jpg,1,1,5,5"])
    (meta / "image_sizes.txt").write_text("")
    save_maps(tmp_path / "maps", {"a.npy": np.eye(4)})
    with pytest.raises(AcolError, match="no image size"):
        run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}")


def test_strict_fails_on_a_partial_map_set(tmp_path):
    meta = two_image_metadata(tmp_path)
    save_maps(tmp_path / "maps", {"c/a.npy": blob_map((10, 10, 60, 60), 100, 100)})
    assert run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}").missing == 1
    with pytest.raises(AcolError, match="1 of 2 annotated images"):
        run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}", out="strict", strict=True,
                  allow_missing=False)
    cli = run_cli("score", str(tmp_path / "maps"), "--annotations", f"wsol:{meta}", "--out",
                  str(tmp_path / "cli"), "--strict", "--workers", "0")
    assert_one_line_error(cli, 2, "1 of 2 annotated images", "1 has no map")


# --------------------------------------------------------------------------- 6, 17: bad maps


def test_bad_maps_are_counted_as_issue_rows(tmp_path, capsys):
    names = ["nan", "constant", "loud", "flat", "cube", "empty", "complex", "good"]
    meta = write_wsol_metadata(tmp_path / "meta", [(f"{n}.jpg", "0", 50, 50) for n in names],
                               [f"{n}.jpg,10,10,40,40" for n in names])
    good = blob_map((10, 10, 40, 40), 50, 50)
    save_maps(tmp_path / "maps", {
        "nan.npy": np.where(good > 0.5, np.nan, good), "constant.npy": np.full((7, 7), 0.3),
        "loud.npy": good * 40 - 3, "flat.npy": good[0], "cube.npy": np.stack([good, good]),
        "empty.npy": np.zeros((0, 7)), "complex.npy": good.astype(np.complex64),
        "good.npy": good})
    result = run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}")
    summary = result.summary.set_index("metric")
    for issue in ("map_not_finite", "constant_map", "map_not_normalised", "map_not_2d",
                  "empty_map", "complex_map"):
        assert summary.at[f"issue:{issue}", "value"] == (2 if issue == "map_not_2d" else 1)
    assert result.failed == 4 and result.exit_code == 1
    assert "1 complex map" in capsys.readouterr().err    # on stderr as well as the report
    # the usable five are scored (NaN and constant maps as all-zero maps, as the reference)
    per_image = pd.read_csv(tmp_path / "rep" / "per_image.csv").set_index("image")
    assert sorted(per_image.index) == ["constant.jpg", "good.jpg", "loud.jpg", "nan.jpg"]
    assert per_image.at["good.jpg", "correct"] == 1 and per_image.at["loud.jpg", "correct"] == 1


@pytest.mark.parametrize("damage", ["not_json", "no_count", "no_index", "short"])
def test_a_damaged_map_store_is_a_one_line_error(tmp_path, damage):
    boxes = [(10, 10, 50, 50)]
    run = write_run(tmp_path, boxes, ["a"], ["a"], square_maps(boxes))
    if damage == "not_json":
        (run / "maps.json").write_text("{nope")
    elif damage == "no_count":
        meta = json.loads((run / "maps.json").read_text())
        del meta["count"]
        (run / "maps.json").write_text(json.dumps(meta))
    elif damage == "no_index":
        (run / "maps_index.csv").unlink()
    else:
        (run / "maps.f16").write_bytes(b"\0" * 10)
    with pytest.raises(AcolError):
        run_score(tmp_path, run, str(tmp_path / "ann.csv"))
    assert not (tmp_path / "rep" / "summary.csv").exists()


def test_damaged_map_store_through_the_cli_is_one_line(tmp_path):
    boxes = [(10, 10, 50, 50)]
    run = write_run(tmp_path, boxes, ["a"], ["a"], square_maps(boxes))
    (run / "maps.json").write_text("[1, 2]")
    assert_one_line_error(run_cli("score", str(run), "--annotations", str(tmp_path / "ann.csv"),
                                  "--out", str(tmp_path / "r")), 2, "map store")


# --------------------------------------------------------------------------- 10: the folder


def test_a_failing_run_leaves_the_old_report_whole_and_a_second_run_is_refused(tmp_path,
                                                                                monkeypatch):
    from acol_eval.report import curveplot as reports

    meta = two_image_metadata(tmp_path)
    save_maps(tmp_path / "maps", {"c/a.npy": blob_map((10, 10, 60, 60), 100, 100),
                                  "c/b.npy": blob_map((40, 40, 90, 90), 100, 100)})
    run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}")
    before = {p.name: p.read_bytes() for p in (tmp_path / "rep").iterdir() if p.is_file()}
    assert {"summary.csv", "per_image.csv", "report.json", "outcomes.npz"} <= set(before)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # a kill after per_image.csv and summary.csv are written

    monkeypatch.setattr(reports, "plot_curve", killed)
    (tmp_path / "maps" / "c" / "b.npy").unlink()
    with pytest.raises(KeyboardInterrupt):
        run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}", overwrite=True)
    after = {p.name: p.read_bytes() for p in (tmp_path / "rep").iterdir() if p.is_file()}
    assert after == before
    with FolderLock(tmp_path / "rep", "score"), pytest.raises(AcolError, match="another"):
        run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}", overwrite=True)


def test_a_finished_report_is_replaced_only_when_asked(tmp_path):
    """The house rule: nothing existing is overwritten without being asked."""
    meta = two_image_metadata(tmp_path)
    save_maps(tmp_path / "maps", {"c/a.npy": blob_map((10, 10, 60, 60), 100, 100),
                                  "c/b.npy": blob_map((40, 40, 90, 90), 100, 100)})
    common = ["score", str(tmp_path / "maps"), "--annotations", f"wsol:{meta}",
              "--out", str(tmp_path / "rep")]
    assert run_cli(*common).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "rep").iterdir() if p.is_file()}
    (tmp_path / "maps" / "c" / "b.npy").unlink()  # a second run would score differently
    refused = run_cli(*common)
    assert_one_line_error(refused, 2, "already holds a score report", "--overwrite")
    after = {p.name: p.read_bytes() for p in (tmp_path / "rep").iterdir() if p.is_file()}
    assert after == before
    replaced = run_cli(*common, "--overwrite", "--allow-missing")
    assert replaced.returncode == 0, replaced.stderr
    assert (tmp_path / "rep" / "per_image.csv").read_bytes() != before["per_image.csv"]


def test_a_folder_a_killed_score_left_is_finished_without_overwrite(tmp_path):
    meta = two_image_metadata(tmp_path)
    save_maps(tmp_path / "maps", {"c/a.npy": blob_map((10, 10, 60, 60), 100, 100),
                                  "c/b.npy": blob_map((40, 40, 90, 90), 100, 100)})
    (tmp_path / "rep" / ".score-partial").mkdir(parents=True)  # staging only: no report
    (tmp_path / "rep" / ".score-partial" / "per_image.csv").write_text("half\n")
    run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}")
    assert (tmp_path / "rep" / "summary.csv").is_file()
    assert not (tmp_path / "rep" / ".score-partial").exists()


# --------------------------------------------------------------------------- 18, 20: bounds


@pytest.mark.parametrize("options", [
    {"interval": 1e-9}, {"interval": float("nan")}, {"threshold": 5.0},
    {"threshold": float("nan")}, {"bootstrap": -5}, {"workers": -3}, {"iou": (0,)},
    {"iou": (0.5,)}, {"iou": (50.5,)}, {"iou": (50, 50)}, {"iou": ()},
    {"protocol": "fancy"}, {"map_choice": "any"}])
def test_bad_arguments_are_refused_by_the_config(tmp_path, options):
    with pytest.raises(AcolError):
        ScoreConfig(run=str(tmp_path), annotations="x", out=str(tmp_path / "r"), **options)


def test_iou_percentages_are_whole_and_each_given_once(tmp_path):
    config = ScoreConfig(run=str(tmp_path), annotations="x", out=str(tmp_path / "r"),
                         iou=[30.0, 50.0, 70.0])
    assert config.iou == (30, 50, 70)
    with pytest.raises(AcolError, match=r"--iou 0\.5: give whole percentages"):
        ScoreConfig(run=str(tmp_path), annotations="x", out=str(tmp_path / "r"), iou=[0.5])
    with pytest.raises(AcolError, match="--iou 50,50 lists an IoU twice"):
        ScoreConfig(run=str(tmp_path), annotations="x", out=str(tmp_path / "r"), iou=[50, 50])


@pytest.mark.parametrize("flag,value", [("--threshold", "5"), ("--threshold", "nan"),
                                        ("--bootstrap", "-5"), ("--workers", "-3"),
                                        ("--cam-curve-interval", "1e-9"),
                                        ("--iou", "0.5"), ("--iou", "50,50")])
def test_bad_arguments_through_the_cli_are_one_line_exit_2(tmp_path, flag, value):
    meta = two_image_metadata(tmp_path)
    assert_one_line_error(run_cli("score", str(tmp_path), "--annotations", f"wsol:{meta}",
                                  "--out", str(tmp_path / "r"), flag, value), 2, flag)
    assert not (tmp_path / "r").exists()


def test_unusable_input_writes_nothing(tmp_path):
    meta = two_image_metadata(tmp_path)
    with pytest.raises(AcolError):
        run_score(tmp_path, tmp_path / "no-maps", f"wsol:{meta}")
    with pytest.raises(AcolError):
        run_score(tmp_path, tmp_path, f"wsol:{tmp_path / 'nothing'}")
    assert not (tmp_path / "rep").exists()


def test_a_huge_image_size_under_native_is_counted_not_allocated(tmp_path):
    # 10000 x 10000: past native's 64 Mpx, within the readers' bound (larger sizes are
    # dropped as bad_size by the reader already)
    meta = write_wsol_metadata(tmp_path / "meta", [("big.jpg", "0", 10000, 10000),
                                                   ("ok.jpg", "0", 100, 100)],
                               ["big.jpg,0,0,3000,3000", "ok.jpg,10,10,60,60"])
    save_maps(tmp_path / "maps", {"big.npy": np.eye(7), "ok.npy": blob_map((10, 10, 60, 60),
                                                                          100, 100)})
    result = run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}", protocol="native")
    summary = result.summary.set_index("metric")
    assert summary.at["issue:image_too_large_for_native", "value"] == 1
    assert summary.at["max_box_acc", "count"] == 1


def test_images_root_reaches_the_reader(tmp_path, monkeypatch):
    import acol_eval.scoring.scoring as scoring

    seen = {}
    real = scoring.read_source

    def spy(source, label_rule=None, **kwargs):
        seen.update(kwargs)
        return real(source, label_rule=label_rule)

    monkeypatch.setattr(scoring, "read_source", spy)
    meta = two_image_metadata(tmp_path)
    save_maps(tmp_path / "maps", {"c/a.npy": np.eye(5)})
    run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}", images=str(tmp_path))
    assert seen == {"image_root": str(tmp_path)}
    with pytest.raises(AcolError, match="--images"):
        ScoreConfig(run="r", annotations="a", out="o", images=str(tmp_path / "none"))


# --------------------------------------------------------------------------- P3: the folder


def test_report_json_outcomes_and_threshold_sources(tmp_path):
    boxes = [(10, 10, 50, 50), (40, 40, 90, 90), (20, 50, 60, 90)]
    run = write_run(tmp_path, boxes, ["a", "b", "a"], ["a", "a", "a"], square_maps(boxes))
    result = run_score(tmp_path, run, str(tmp_path / "ann.csv"), protocol="native",
                       threshold=0.3, bootstrap=1000)
    summary = result.summary.set_index("metric")
    assert summary.at["gt_known_loc", "threshold_source"] == "fixed"
    assert summary.at["max_box_acc", "threshold_source"] == "oracle"
    assert summary.at["max_box_acc_v2", "ci_low"] <= summary.at["max_box_acc_v2", "value"]
    meta = ReportMeta.read(tmp_path / "rep")
    assert meta.protocol == "native" and meta.images == 3 and len(meta.annotations_digest) == 64
    outcomes = Outcomes.read(tmp_path / "rep")
    per_image = pd.read_csv(tmp_path / "rep" / "per_image.csv")
    assert list(outcomes.images) == per_image["image"].tolist()
    v2 = outcomes.v2.mean(axis=1).max(axis=1) * 100
    assert v2.tolist() == pytest.approx([summary.at[f"max_box_acc_v2@{k}", "value"]
                                         for k in (30, 50, 70)])
    assert outcomes.top1.tolist() == [1, 0, 1]
    assert set(per_image["correct"]) <= {0, 1} and set(per_image["top1_correct"]) <= {0, 1}
    assert (per_image["frame"] == "image exclusive").all()
    other = run_score(tmp_path, run, str(tmp_path / "ann.csv"), out="again",
                      protocol="native", threshold_from=str(tmp_path / "rep"))
    again = other.summary.set_index("metric")
    assert again.at["max_box_acc", "threshold_source"] == f"from:{tmp_path / 'rep'}"
    assert again.at["gt_known_loc", "threshold_source"] == f"from:{tmp_path / 'rep'}"
    assert again.at["gt_known_loc", "threshold"] == pytest.approx(0.3)


def test_map_choice_top1_and_auto(tmp_path):
    boxes = [(10, 10, 50, 50), (40, 40, 90, 90)]
    run = write_run(tmp_path, boxes, ["a", "b"], ["a", "a"], square_maps(boxes))
    index = pd.read_csv(run / "maps_index.csv")
    index["is_label"] = 0          # labels that are not model classes
    index.to_csv(run / "maps_index.csv", index=False)
    ann = str(tmp_path / "ann.csv")
    with pytest.raises(AcolError, match="not classes of the model"):
        run_score(tmp_path, run, ann, out="label", map_choice="label")
    auto = run_score(tmp_path, run, ann, out="auto", protocol="native")
    assert auto.issues["scored_with_top1_map"] == 2
    per_image = pd.read_csv(tmp_path / "auto" / "per_image.csv")
    assert per_image["map"].tolist() == ["top1", "top1"]
    assert per_image["correct"].tolist() == [1, 1]


def test_outcomes_written_from_packed_bits_read_back_as_written_from_booleans(tmp_path):
    rng = np.random.default_rng(1)
    v2, v1 = rng.random((3, 5, 13)) > 0.5, rng.random((5, 13)) > 0.5
    fields = dict(images=np.array(list("abcde")), thresholds=np.arange(0, 1, 1 / 13),
                  iou=np.array([30, 50, 70]), top1=np.array([1, 0, -1, 1, 1], np.int8),
                  top5=np.ones(5, np.int8), has_gt=np.array([1, 1, 0, 1, 1], bool))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Outcomes(v2=v2, v1=v1, **fields).write(tmp_path / "a")
    Outcomes.write_packed(tmp_path / "b", fields["images"], fields["thresholds"],
                          fields["iou"], np.packbits(v2, axis=-1), np.packbits(v1, axis=-1),
                          fields["top1"], fields["top5"], fields["has_gt"])
    a, b = Outcomes.read(tmp_path / "a"), Outcomes.read(tmp_path / "b")
    assert np.array_equal(a.v2, v2) and np.array_equal(b.v2, v2)
    assert np.array_equal(b.v1, v1) and b.top1.tolist() == [1, 0, -1, 1, 1]


def test_per_image_names_the_frame_and_gives_the_wsoleval_box_in_original_pixels(tmp_path):
    meta = write_wsol_metadata(tmp_path / "meta", [("a.jpg", "0", 448, 224)],
                               ["a.jpg,100,50,300,150"])
    heat = np.zeros((224, 224))
    heat[50:150, 50:150] = 1.0     # frame columns 50..149, rows 50..149
    save_maps(tmp_path / "maps", {"a.npy": heat})
    run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}")
    row = pd.read_csv(tmp_path / "rep" / "per_image.csv").iloc[0]
    assert row["frame"] == "224x224 inclusive"
    assert [row["x0"], row["y0"], row["x1"], row["y1"]] == [50, 50, 150, 150]
    # boundingRect's x + w is one past the blob: the blob's extent in original pixels
    assert [row["orig_x0"], row["orig_y0"], row["orig_x1"], row["orig_y1"]] == [
        100, 50, 300, 150]


def test_score_runs_whatever_protocol_the_registry_holds(tmp_path, monkeypatch):
    """scoring.py never names a protocol: a registry entry is all a protocol needs."""
    from acol_eval.scoring.protocols import PROTOCOLS, Protocol
    from acol_eval.scoring.protocols.native import NativeProtocol

    class Shifted(NativeProtocol):   # a stand-in new protocol: ground truth 20 px right
        name = "shifted"

        def scale_gt(self, gt, width, height):
            return super().scale_gt(gt, width, height) + np.array([20, 0, 20, 0])

    boxes = [(10, 10, 50, 50)]
    run = write_run(tmp_path, boxes, ["a"], ["a"], square_maps(boxes))
    run_score(tmp_path, run, str(tmp_path / "ann.csv"), out="plain", protocol="native")
    monkeypatch.setitem(PROTOCOLS, Protocol.NATIVE, Shifted)
    summary = run_score(tmp_path, run, str(tmp_path / "ann.csv"), protocol="native").summary
    assert set(summary["protocol"]) == {"shifted"}
    plain = pd.read_csv(tmp_path / "plain" / "per_image.csv")["iou"].iloc[0]
    shifted = pd.read_csv(tmp_path / "rep" / "per_image.csv")["iou"].iloc[0]
    assert shifted < plain     # the shifted ground truth is what was scored


def test_top5_is_unknown_from_fewer_than_five_predictions_and_for_foreign_labels():
    """A run that kept only the top-1 class of a 10-class model cannot tell a top-5 (the
    review found cls_top5 == cls_top1 there); a label that is no model class makes
    classification unknown, not wrong."""
    from acol_eval.scoring.scoreinputs import _class_correctness

    classes = [f"c{i}" for i in range(10)]
    preds = np.array([["c1"], ["c2"], ["c3"]])
    labels = pd.Series(["c1", "c9", "raccoon"])
    got = _class_correctness(preds, labels, classes)
    assert got["top1"][:2].tolist() == [1.0, 0.0] and np.isnan(got["top1"][2])
    assert np.isnan(got["top5"]).all()
    five = _class_correctness(np.array([["c1", "c9", "c2", "c3", "c4"]]), pd.Series(["c9"]),
                              classes)
    assert five["top1"].tolist() == [0.0] and five["top5"].tolist() == [1.0]
    two = _class_correctness(np.array([["c1", "c0"]]), pd.Series(["c0"]), ["c0", "c1"])
    assert two["top5"].tolist() == [1.0]  # two classes: two predictions are all of them
