"""`acol-eval compare`: paired statistics of score reports."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from acol_eval.comparison.compare import (
    CompareConfig,
    Progress,
    run,
)
from acol_eval.comparison.compareresample import method_metrics, prepare, read_report
from acol_eval.comparison.stats import (
    curve_counts,
    mcnemar_exact,
    resample_weights,
    threshold_steps,
)
from acol_eval.maps.reportfolder import Outcomes, ReportMeta
from acol_eval.util.errors import AcolError
from conftest import assert_one_line_error, run_cli, shared_data

GRID = np.arange(0, 1, 0.01)  # 100 thresholds: tests stay small
IOU = [30, 50, 70]


# --------------------------------------------------------------------------- helpers


def interval_bits(rng, n: int, width: float, count: int = len(GRID)) -> np.ndarray:
    """(n, T) correctness as score makes it: each image right over one run of thresholds
    (too loose below it, too tight above), wider runs for a better method."""
    start = rng.integers(0, count // 2, n)
    length = rng.binomial(count // 2, width, n)
    t = np.arange(count)
    return (t[None] >= start[:, None]) & (t[None] < (start + length)[:, None])


def method_bits(rng, n: int, width: float) -> dict:
    """v1 and v2 (IoU 30/50/70) of one method: looser IoU, longer runs; top-1 right
    for about 80% of the images."""
    v1 = interval_bits(rng, n, width)
    v2 = np.stack([interval_bits(rng, n, min(width * f, 1.0)) for f in (1.4, 1.0, 0.5)])
    return {"v1": v1, "v2": v2, "top1": (rng.random(n) < 0.8).astype(np.int8)}


def write_report(folder: Path, images, v1, v2, top1=None, has_gt=None, labels=None,
                 protocol="wsoleval", digest="d" * 64, annotations="cub:/data/cub",
                 iou=IOU, threshold_source="oracle", pxap=None, fixed=0.2,
                 thresholds_from: dict | None = None, annotated: int = 0,
                 subset: str | None = None) -> Path:
    """A score report folder as score writes it (report.json, outcomes.npz, summary.csv,
    per_image.csv), its summary computed the way scoring.summary_table does."""
    folder.mkdir(parents=True)
    n = len(images)
    top1 = np.full(n, -1, np.int8) if top1 is None else np.asarray(top1, np.int8)
    has_gt = np.ones(n, bool) if has_gt is None else np.asarray(has_gt, bool)
    labels = ["a"] * n if labels is None else labels
    v1 = np.asarray(v1, bool) & has_gt[:, None]
    v2 = np.asarray(v2, bool) & has_gt[None, :, None]
    count = max(int(has_gt.sum()), 1)
    picked = thresholds_from or {}
    best = picked.get("max_box_acc", int(np.argmax(v1.sum(0))))
    at_fixed = int(np.argmin(np.abs(GRID - fixed)))
    rows = []
    if (top1 >= 0).any():
        rows.append(["cls_top1", np.mean(top1[top1 >= 0] == 1) * 100, np.nan, np.nan])
        rows.append(["top1_loc", np.sum(v1[:, at_fixed] & (top1 == 1)) * 100.0 / count,
                     GRID[at_fixed], 50])
    rows.append(["gt_known_loc", v1[:, at_fixed].sum() * 100.0 / count, GRID[at_fixed], 50])
    rows.append(["max_box_acc", v1[:, best].sum() * 100.0 / count, GRID[best], 50])
    values = []
    for j, k in enumerate(iou):
        index = picked.get(f"max_box_acc_v2@{k}", int(np.argmax(v2[j].sum(0))))
        values.append(v2[j][:, index].sum() * 100.0 / count)
        rows.append([f"max_box_acc_v2@{k}", values[-1], GRID[index], k])
    rows.append(["max_box_acc_v2", float(np.mean(values)), np.nan, np.nan])
    if pxap is not None:
        rows.append(["pxap", pxap, np.nan, np.nan])
    summary = pd.DataFrame(rows, columns=["metric", "value", "threshold", "iou"])
    summary["protocol"], summary["count"] = protocol, count
    summary["ci_low"] = summary["ci_high"] = np.nan
    summary.to_csv(folder / "summary.csv", index=False, float_format="%.6g")
    pd.DataFrame({"image": images, "label": labels, "threshold": GRID[best],
                  "correct": v1[:, best].astype(int),
                  "top1_correct": pd.Series(top1).where(top1 >= 0).astype("Int64")}).to_csv(
        folder / "per_image.csv", index=False)
    ReportMeta(protocol=protocol, annotations=annotations, annotations_digest=digest,
               run=str(folder), interval=0.01, n_thresholds=len(GRID), iou=list(iou),
               threshold_source=threshold_source, images=n, annotated=annotated,
               subset=subset).write(folder)
    Outcomes(images=np.asarray(images), thresholds=GRID, iou=np.asarray(iou), v2=v2, v1=v1,
             top1=top1, top5=top1, has_gt=has_gt).write(folder)
    return folder


def two_methods(tmp_path: Path, n: int = 300, seed: int = 0, names=None) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    images = names if names is not None else [f"img{i:05d}.jpg" for i in range(n)]
    weak = write_report(tmp_path / "cam", images, **method_bits(rng, len(images), 0.35))
    strong = write_report(tmp_path / "acol", images, **method_bits(rng, len(images), 0.5))
    return weak, strong


def compare(tmp_path: Path, *reports, **options):
    options.setdefault("bootstrap", 1000)
    return run(CompareConfig(reports=tuple(str(r) for r in reports),
                             out=str(tmp_path / "cmp"), **options), log=lambda line: None)


# --------------------------------------------------------------------------- statistics


def test_threshold_steps_give_the_dense_counts_for_every_resample():
    rng = np.random.default_rng(1)
    bits = rng.random((60, 40)) < 0.5           # worst case: noise, many changes
    weights = resample_weights(rng, 60, 7)
    assert np.array_equal(curve_counts(threshold_steps(bits), weights),
                          bits.T.astype(np.float32) @ weights)
    kept = np.arange(60) % 3 != 0                          # drop a third, reverse the rest
    columns = np.where(kept, 39 - np.cumsum(kept) + 1, -1)
    dense = np.zeros((40, 40), bool)
    dense[columns[kept]] = bits[kept]
    assert sorted(columns[kept]) == list(range(40))
    assert np.array_equal(curve_counts(threshold_steps(bits, columns, 40), weights[:40]),
                          dense.T.astype(np.float32) @ weights[:40])


def test_resample_weights_draw_n_images_per_round_uniformly():
    weights = resample_weights(np.random.default_rng(0), 500, 400)
    assert weights.shape == (500, 400)
    assert (weights.sum(axis=0) == 500).all()
    # each image is drawn once per round on average; a stuck generator would not be
    assert weights.mean() == pytest.approx(1.0)
    assert 0.30 < (weights == 0).mean() < 0.44   # about exp(-1) of the images are left out


def test_mcnemar_is_the_binomial_test_of_the_discordant_images():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([0, 0, 0, 0, 0, 1, 1, 0, 1, 0], bool)
    only_a, only_b, p = mcnemar_exact(a, b)
    assert (only_a, only_b) == (5, 1)
    assert p == pytest.approx(binomtest(5, 6, 0.5).pvalue) and p < 0.25
    assert mcnemar_exact(a, a) == (0, 0, 1.0)


def test_every_resample_re_picks_the_best_threshold(tmp_path):
    rng = np.random.default_rng(2)
    report = write_report(tmp_path / "r", [f"i{k}" for k in range(80)],
                          **method_bits(rng, 80, 0.4))
    outcomes = Outcomes.read(report)
    data = prepare(read_report(str(report)), pd.Index(outcomes.images))
    weights = resample_weights(rng, 80, 25)
    found = method_metrics(data, weights)
    # brute force: each resample's whole curve, its maximum, over its annotated images
    brute = (outcomes.v1.T.astype(float) @ weights).max(axis=0) * 100 / weights.sum(axis=0)
    assert np.allclose(found["max_box_acc"], brute)
    picked = (outcomes.v1.T.astype(float) @ weights).argmax(axis=0)
    assert len(set(picked)) > 1                  # the resamples did pick other thresholds
    v2 = [(outcomes.v2[j].T.astype(float) @ weights).max(axis=0) for j in range(3)]
    assert np.allclose(found["max_box_acc_v2"], np.mean(v2, axis=0) * 100 / 80)


# --------------------------------------------------------------------------- compare


def test_mcnemar_p_equals_binomtest_on_the_per_image_csv_files(tmp_path):
    weak, strong = two_methods(tmp_path)
    result = compare(tmp_path, weak, strong)
    a = pd.read_csv(weak / "per_image.csv").set_index("image")["correct"].astype(bool)
    b = pd.read_csv(strong / "per_image.csv").set_index("image")["correct"].astype(bool)
    b = b[a.index]
    only_weak, only_strong = int((a & ~b).sum()), int((~a & b).sum())
    assert only_weak > 0 and only_strong > only_weak
    pairs = pd.read_csv(tmp_path / "cmp" / "pairs.csv")
    assert pairs.loc[0, ["mcnemar_reference_only", "mcnemar_method_only"]].tolist() == [
        only_weak, only_strong]
    expected = binomtest(only_weak, only_weak + only_strong, 0.5).pvalue
    assert pairs.loc[0, "mcnemar_p"] == pytest.approx(expected, rel=1e-5)
    assert result.pairs.loc[0, "mcnemar_p"] == expected


def test_leaderboard_values_are_the_reports_own_on_the_same_images(tmp_path):
    weak, strong = two_methods(tmp_path)
    board = compare(tmp_path, weak, strong).leaderboard.set_index("method")
    for report in (weak, strong):
        summary = pd.read_csv(report / "summary.csv").set_index("metric")["value"]
        for metric in ("cls_top1", "top1_loc", "gt_known_loc", "max_box_acc",
                       "max_box_acc_v2", "max_box_acc_v2@30", "max_box_acc_v2@70"):
            assert board.at[report.name, metric] == pytest.approx(summary[metric], abs=1e-4)
            assert summary[metric] <= board.at[report.name, f"{metric}_ci_high"]
        for metric in ("cls_top1", "top1_loc", "gt_known_loc"):   # fixed thresholds
            assert board.at[report.name, f"{metric}_ci_low"] <= summary[metric]
        # re-picking the best threshold in every resample shows the oracle's optimism:
        # largest on the lowest, flattest curve (IoU 70)
        optimism = board.loc[report.name, ["max_box_acc_v2@30_optimism",
                                           "max_box_acc_v2@70_optimism"]]
        assert 0 < optimism.iloc[0] < optimism.iloc[1]
    assert board.at["acol", "max_box_acc_v2"] > board.at["cam", "max_box_acc_v2"] + 5


def test_paired_interval_holds_the_difference_and_narrows_with_more_images(tmp_path):
    widths = []
    for n in (100, 1600):
        weak, strong = two_methods(tmp_path / str(n), n=n, seed=n)
        pairs = compare(tmp_path / str(n), weak, strong, bootstrap=1000).pairs.iloc[0]
        for metric in ("max_box_acc_v2", "max_box_acc", "gt_known_loc"):
            assert (pairs[f"{metric}_diff_ci_low"] <= pairs[f"{metric}_diff"]
                    <= pairs[f"{metric}_diff_ci_high"]), (n, metric)
        widths.append(pairs["max_box_acc_v2_diff_ci_high"] - pairs["max_box_acc_v2_diff_ci_low"])
    assert 0 < widths[1] < widths[0] / 2       # 16x the images: about 1/4 the width


def test_a_report_paired_with_itself_differs_by_zero_with_p_one(tmp_path):
    """The paired statistics of one report's outcomes against themselves: zero
    differences, p = 1 (`compare` refuses such a pair: the test after this one)."""
    from acol_eval.comparison.compare import common_images, metric_order, pairs_table
    from acol_eval.comparison.compareresample import bootstrap, observed_values

    weak, _ = two_methods(tmp_path)
    report = read_report(weak)
    common = common_images([report])
    method = [prepare(report, common)]
    observed = observed_values(method, len(common))
    samples = bootstrap([method, method], len(common), 1000, 0)
    pairs = pairs_table(["cam", "cam (2)"], 0, [method, method], [observed, observed],
                        samples, len(common), metric_order(report.meta.iou))
    assert pairs["method"].tolist() == ["cam (2)"]
    row = pairs.iloc[0]
    for metric in ("max_box_acc_v2", "max_box_acc", "cls_top1", "max_box_acc_v2@50"):
        assert (row[f"{metric}_diff"], row[f"{metric}_diff_ci_low"],
                row[f"{metric}_diff_ci_high"]) == (0, 0, 0)
    assert (row["mcnemar_reference_only"], row["mcnemar_method_only"], row["mcnemar_p"]) == (
        0, 0, 1.0)


def test_without_bootstrap_values_and_mcnemar_stay_and_intervals_are_empty(tmp_path):
    weak, strong = two_methods(tmp_path, n=120)
    with_rounds = compare(tmp_path / "a", weak, strong)
    without = compare(tmp_path / "b", weak, strong, bootstrap=0)
    assert without.leaderboard["max_box_acc_v2"].tolist() == with_rounds.leaderboard[
        "max_box_acc_v2"].tolist()
    assert without.leaderboard["max_box_acc_v2_ci_low"].isna().all()
    assert without.pairs["max_box_acc_v2_diff_ci_high"].isna().all()
    assert without.pairs.loc[0, "mcnemar_p"] == with_rounds.pairs.loc[0, "mcnemar_p"] < 1


def test_seed_groups_give_mean_and_sample_std(tmp_path):
    rng = np.random.default_rng(5)
    images = [f"img{i}" for i in range(200)]
    groups = []
    for method, width in (("cam", 0.3), ("acol", 0.5)):
        groups.append([write_report(tmp_path / f"{method}{s}", images, pxap=60.0 + s + width,
                                    **method_bits(rng, 200, width)) for s in range(3)])
    result = compare(tmp_path, *(",".join(str(p) for p in g) for g in groups))
    board = result.leaderboard.set_index("method")
    for members in groups:
        name = ",".join(p.name for p in members)
        for metric in ("max_box_acc_v2", "max_box_acc", "pxap"):
            values = [pd.read_csv(p / "summary.csv").set_index("metric").at[metric, "value"]
                      for p in members]
            assert board.at[name, metric] == pytest.approx(np.mean(values), abs=1e-4)
            assert board.at[name, f"{metric}_std"] == pytest.approx(np.std(values, ddof=1),
                                                                     abs=1e-4)
        assert board.at[name, "seeds"] == 3
        assert np.isnan(board.at[name, "pxap_ci_low"])   # no per-image pixels to resample
    pairs = result.pairs.iloc[0]
    assert pairs["max_box_acc_v2_diff"] == pytest.approx(
        board.iloc[1]["max_box_acc_v2"] - board.iloc[0]["max_box_acc_v2"])
    assert pairs["max_box_acc_v2_diff_ci_low"] > 0     # 0.5 vs 0.3: clearly better
    assert np.isnan(pairs["mcnemar_p"])                # no one per-image outcome per group


def test_reports_of_other_images_are_refused_naming_both_coverages(tmp_path):
    """Reports of one source that scored other images are not compared on the images
    they share: a leaderboard would set a part-of-the-split figure beside another."""
    metadata = shared_data() / "wsol-metadata" / "CUB" / "test"
    names = (metadata / "image_ids.txt").read_text().split()[:400]
    labels = [line.rsplit(",", 1)[1] for line in
              (metadata / "class_labels.txt").read_text().splitlines()[:400]]
    rng = np.random.default_rng(3)
    a = write_report(tmp_path / "a", names, labels=labels, digest="a" * 64, annotated=400,
                     **method_bits(rng, 400, 0.4))
    bits = method_bits(rng, 300, 0.4)
    b = write_report(tmp_path / "b", names[100:], labels=labels[100:], digest="b" * 64,
                     annotated=400, subset="allow-missing", **bits)
    with pytest.raises(AcolError, match=r"\(400 of 400 annotated images\) and .*b "
                                        r"\(300 of 400 annotated images\)") as refused:
        compare(tmp_path, a, b)
    assert "100 images only in the first, 0 only in the second" in str(refused.value)
    assert not (tmp_path / "cmp" / "leaderboard.csv").exists()
    # the same images under other labels: the annotations differ
    relabelled = write_report(tmp_path / "c", names[100:], labels=["x"] * 300,
                              digest="c" * 64, annotated=400, **bits)
    with pytest.raises(AcolError, match="annotations differ.*other labels"):
        compare(tmp_path, b, relabelled)


def test_thresholds_taken_from_another_report_stay_fixed(tmp_path):
    rng = np.random.default_rng(4)
    bits = method_bits(rng, 200, 0.4)
    chosen = {"max_box_acc": 10, "max_box_acc_v2@30": 10, "max_box_acc_v2@50": 10,
              "max_box_acc_v2@70": 10}
    report = write_report(tmp_path / "r", [f"i{k}" for k in range(200)], **bits,
                          threshold_source="from:/val/report", thresholds_from=chosen)
    board = compare(tmp_path, report).leaderboard.iloc[0]
    assert board["max_box_acc"] == pytest.approx(bits["v1"][:, 10].mean() * 100)
    assert board["max_box_acc"] < bits["v1"].sum(0).max() * 100 / 200


def test_progress_is_plain_lines_off_a_terminal():
    lines: list[str] = []
    progress = Progress(300, "bootstrap", "rounds", lines.append, stream=io.StringIO(), after=0.0,
                        period=0.0)
    for _ in range(3):
        progress.update(100)
    progress.close()
    assert lines[-1].startswith("bootstrap: 300/300 rounds")
    quiet: list[str] = []
    slow_start = Progress(300, "bootstrap", "rounds", quiet.append, stream=io.StringIO(),
                           after=60.0)
    slow_start.update(300)
    assert quiet == []                           # short bootstraps print nothing


# --------------------------------------------------------------------------- the command


@pytest.mark.parametrize("what,change", [
    ("protocol", {"protocol": "native"}),
    ("annotations", {"digest": "e" * 64}),
    ("annotations", {"digest": "e" * 64, "annotations": "voc:/other"}),
    ("IoU list", {"iou": [50]}),
])
def test_compare_refuses_other_protocols_and_annotations(tmp_path, what, change):
    rng = np.random.default_rng(0)
    images = [f"img{i}" for i in range(50)]
    a = write_report(tmp_path / "a", images, **method_bits(rng, 50, 0.4))
    bits = method_bits(rng, 50, 0.4)
    if "iou" in change:
        bits["v2"] = bits["v2"][1:2]
    b = write_report(tmp_path / "b", images, **bits, **change)
    result = run_cli("compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert_one_line_error(result, 2, what, str(a), str(b))
    assert not (tmp_path / "cmp" / "leaderboard.csv").exists()


def test_compare_command_prints_and_writes_both_tables_and_keeps_them(tmp_path):
    weak, strong = two_methods(tmp_path, n=100)
    out = tmp_path / "cmp"
    result = run_cli("compare", str(weak), str(strong), "--out", str(out),
                     "--reference", str(strong), "--bootstrap", "1000")
    assert result.returncode == 0, result.stderr
    assert "against acol" in result.stdout and "max_box_acc_v2 diff" in result.stdout
    pairs = pd.read_csv(out / "pairs.csv")
    assert pairs[["reference", "method"]].values.tolist() == [["acol", "cam"]]
    assert pairs.loc[0, "max_box_acc_v2_diff"] < 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert board["method"].tolist() == ["cam", "acol"] and (board["images"] == 100).all()
    before = (out / "pairs.csv").read_bytes()
    again = run_cli("compare", str(weak), "--out", str(out))
    assert_one_line_error(again, 2, "--overwrite")
    assert (out / "pairs.csv").read_bytes() == before
    missing = run_cli("compare", str(weak), str(tmp_path / "nope"), "--out", str(out),
                      "--overwrite")
    assert_one_line_error(missing, 2, "nope")
    assert run_cli("compare", str(weak), "--out", str(out), "--overwrite").returncode == 0


def test_compare_with_reports_written_by_score(tmp_path):
    """Once score writes report.json and outcomes.npz, compare reads its reports as they
    are: the values on all images are summary.csv's, McNemar matches per_image.csv."""
    from test_score import square_maps, write_run

    from acol_eval.scoring.scoring import ScoreConfig, score

    boxes = [tuple(int(v) for v in (x, y, x + 40, y + 40))
             for x, y in np.random.default_rng(0).integers(0, 50, (24, 2))]
    reports = []
    for name, shift in (("near", 1), ("far", 3)):
        run_folder = write_run(tmp_path / name, boxes, ["a"] * 24, ["a"] * 24,
                               square_maps(boxes, shift=shift))
        out = tmp_path / name / "rep"
        # one annotation file for both runs, as a user would score them
        score(ScoreConfig(run=str(run_folder), annotations=str(tmp_path / "near" / "ann.csv"),
                          out=str(out), protocol="native", interval=0.01, workers=1))
        # compare reads these two: a score that stops writing them must fail here
        assert (out / "report.json").is_file() and (out / "outcomes.npz").is_file()
        reports.append(out)
    result = compare(tmp_path, *reports)
    board = result.leaderboard
    for row, report in zip(board.itertuples(), reports):
        summary = pd.read_csv(report / "summary.csv").set_index("metric")["value"]
        assert row.max_box_acc == pytest.approx(summary["max_box_acc"], abs=1e-4)
        assert row.max_box_acc_v2 == pytest.approx(summary["max_box_acc_v2"], abs=1e-4)
    a, b = (pd.read_csv(r / "per_image.csv")["correct"].astype(bool) for r in reports)
    assert result.pairs.loc[0, "mcnemar_reference_only"] == int((a & ~b).sum())
    assert result.pairs.loc[0, "mcnemar_method_only"] == int((~a & b).sum())


# --------------------------------------------------------------------------- refusals


def test_compare_refuses_a_report_given_twice_also_through_a_link(tmp_path):
    weak, strong = two_methods(tmp_path)
    with pytest.raises(AcolError, match=r"REPORT .*cam is given twice: a report compared "
                                        r"with itself differs by nothing"):
        compare(tmp_path, weak, weak)
    link = tmp_path / "link"
    link.symlink_to(weak)
    with pytest.raises(AcolError, match=rf"REPORT {link} is given twice \(as {weak}\)"):
        compare(tmp_path, weak, strong, link)
    with pytest.raises(AcolError, match="given twice"):  # within a seed group too
        run(CompareConfig(reports=(f"{weak},{link}", str(strong)), out=str(tmp_path / "c")),
            log=lambda line: None)
    assert not (tmp_path / "cmp").exists()


def test_bootstrap_below_the_minimum_is_one_line_naming_it(tmp_path):
    weak, strong = two_methods(tmp_path)
    result = run_cli("compare", str(weak), str(strong), "--out", str(tmp_path / "cmp"),
                     "--bootstrap", "999")
    assert_one_line_error(result, 2, "--bootstrap 999 is too few rounds for a 95% interval: "
                                     "give at least 1000 (or 0 for none)")
    assert compare(tmp_path / "zero", weak, strong, bootstrap=0).rounds == 0


def test_the_oracle_best_metrics_are_paired_and_resampled(tmp_path):
    """best_top1_loc and best_top5_loc (the right class at max_box_acc's threshold,
    re-picked per resample) get values, intervals and paired differences, their observed
    values as score computes them; best_gt_known_loc is max_box_acc (one column)."""
    weak, strong = two_methods(tmp_path, n=300)
    result = compare(tmp_path, weak, strong)
    board = result.leaderboard.set_index("method")
    for metric in ("best_top1_loc", "best_top5_loc"):
        assert {metric, f"{metric}_ci_low", f"{metric}_optimism"} <= set(board.columns)
        assert f"{metric}_diff_ci_high" in result.pairs.columns
        row = result.pairs.iloc[0]
        assert row[f"{metric}_diff_ci_low"] <= row[f"{metric}_diff"] \
            <= row[f"{metric}_diff_ci_high"]
    assert "best_gt_known_loc" not in board.columns
    report = read_report(weak)
    common = pd.Index(report.images)
    outcomes = Outcomes.read(weak)
    at = int(np.argmax(outcomes.v1.sum(axis=0)))  # score's best_gt_known_loc threshold
    has_gt = outcomes.has_gt.astype(bool)
    expected_top1 = 100 * (outcomes.v1[:, at] & (outcomes.top1 == 1) & has_gt).sum() \
        / has_gt.sum()
    expected_top5 = 100 * (outcomes.v1[:, at] & (outcomes.top5 == 1) & has_gt).sum() \
        / has_gt.sum()
    assert board.at["cam", "best_top1_loc"] == pytest.approx(expected_top1)
    assert board.at["cam", "best_top5_loc"] == pytest.approx(expected_top5)
    assert 0 < expected_top5 and expected_top1 < board.at["cam", "max_box_acc"]
    assert len(common) == 300
