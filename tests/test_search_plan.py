"""The recipe search's planner (benchmarks/search_plan.py): pure functions over a fake log."""

from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from search_plan import (  # noqa: E402
    Calibration,
    Recipe,
    Settings,
    Step,
    axis_effects,
    budgeted_plan,
    coarse_recipes,
    combined_recipe,
    cut_to_budget,
    estimate_seconds,
    fine_recipes,
    length_pairs,
    plan,
    projected,
    refit,
    stage_curve,
)

SMALL = Settings(families=("p", "pp"), deltas=(0.6,), lrs=(0.001,), head_lr_mults=(5.0,),
                 schedules=("step",), input_sizes=(), strides=(8,), heads=())


def record(step: Step, score: float = 50.0, ok: bool = True, seconds: float = 60.0) -> dict:
    """A log line as search_cub10.py writes it."""
    return {"step": step.key, "kind": step.kind, "stage": step.stage, "seed": step.seed,
            "recipe": asdict(step.recipe), "run": step.run_key, "ok": ok, "seconds": seconds,
            "val": {"max_box_acc_v2": score}}


def test_coarse_stage_is_one_axis_at_a_time_and_interleaves_families():
    pp = coarse_recipes(SMALL, "pp")
    base = replace(SMALL.base, recipe="pp", epochs=SMALL.coarse_epochs)
    assert pp[0] == base
    # every other recipe differs from the base in exactly one field
    for recipe in pp[1:]:
        changed = [k for k, v in asdict(recipe).items() if v != asdict(base)[k]]
        assert len(changed) == 1, changed
    # p has no delta, per-letter rates or loss weights to vary: 5 recipes; pp has 8
    assert len(coarse_recipes(SMALL, "p")) == 5 and len(pp) == 8
    steps, stage = plan([], SMALL)
    assert stage == "coarse" and len(steps) == 13
    assert [s.recipe.family for s in steps[:4]] == ["p", "pp", "p", "pp"]


def test_resumption_skips_logged_runs_and_does_not_retry_failures():
    steps, _ = plan([], SMALL)
    log = [record(steps[0]), record(steps[3]), record(steps[5], ok=False)]
    log.append({"step": steps[1].key})  # a line without ok: a run the log does not count
    again, stage = plan(log, SMALL)
    assert stage == "coarse"
    assert [s.key for s in again] == [s.key for i, s in enumerate(steps) if i not in (0, 3, 5)]
    # the same log gives the same plan: a restarted search plans what the killed one would
    assert plan(log, SMALL) == (again, stage)


def test_fine_stage_takes_top_k_per_family_and_their_combination():
    coarse, _ = plan([], SMALL)
    scores = {}
    for step in coarse:
        r = step.recipe
        # lr 0.001 and delta 0.6 each help pp; stride 8 helps p most
        scores[step.key] = 50 + 3 * (r.lr == 0.001) + 2 * (r.delta == 0.6 and r.family == "pp") \
            + 5 * (r.feature_stride == 8 and r.family == "p")
    log = [record(s, scores[s.key]) for s in coarse]
    fine, stage = plan(log, SMALL)
    assert stage == "fine"
    assert all(s.recipe.epochs == SMALL.fine_epochs for s in fine)
    pp = [s.recipe for s in fine if s.recipe.family == "pp"]
    # top 2 (lr 0.001: 53, delta 0.6: 52) and the combination of both
    assert {(r.lr, r.delta) for r in pp} == {(0.001, 0.8), (0.002, 0.6), (0.001, 0.6)}
    p = [s.recipe for s in fine if s.recipe.family == "p"]
    assert (p[0].feature_stride, p[0].lr) == (8, 0.002)  # 55 first
    assert any(r.feature_stride == 8 and r.lr == 0.001 for r in p)  # the combination
    # interleaved by rank: every family's best, then every combination, then runners-up
    assert [(s.recipe.family, s.recipe.lr, s.recipe.delta, s.recipe.feature_stride)
            for s in fine[:4]] == [("p", 0.002, 0.8, 8), ("pp", 0.001, 0.8, 16),
                                   ("p", 0.001, 0.8, 8), ("pp", 0.001, 0.6, 16)]


def test_a_budget_cut_of_the_fine_stage_leaves_every_family_its_best_recipe():
    coarse, _ = plan([], SMALL)
    log = [record(s, 50 + (s.recipe.lr == 0.001)) for s in coarse]
    fine, _ = plan(log, SMALL)
    kept, cut = cut_to_budget(fine, 2.5, lambda step: 1.0)
    assert [s.recipe.family for s in kept] == ["p", "pp"]
    assert {s.recipe.family for s in cut} == {"p", "pp"}


def test_combination_keeps_axes_that_did_not_beat_the_base():
    base = Recipe(recipe="pp")
    scored = {base: 50.0, replace(base, lr=0.001): 49.0, replace(base, delta=0.6): 51.0}
    assert combined_recipe(base, scored) == replace(base, delta=0.6)


def test_final_stage_runs_the_best_fine_recipe_per_family_with_seeds_and_tests():
    log = [record(s) for s in plan([], SMALL)[0]]
    fine, _ = plan(log, SMALL)
    best_pp = next(s for s in fine if s.recipe.family == "pp" and s.recipe.lr == 0.002)
    log += [record(s, 60.0 if s is best_pp else 40.0) for s in fine]
    final, stage = plan(log, SMALL)
    assert stage == "final"
    pp = [s for s in final if s.recipe.family == "pp"]
    assert {s.recipe for s in pp} == {best_pp.recipe}
    # seed 0 was trained in the fine stage: only its test step is left
    assert sorted((s.kind, s.seed) for s in pp) == [("test", 0), ("test", 1), ("test", 2),
                                                    ("train", 1), ("train", 2)]
    log += [record(s) for s in final]
    assert plan(log, SMALL) == ([], "final")


def test_fine_recipes_choose_by_validation_only():
    base = Recipe(recipe="p", epochs=SMALL.coarse_epochs)
    good, bad = replace(base, lr=0.001), replace(base, lr=0.005)
    chosen = fine_recipes(replace(SMALL, top_k=1), "p", {base: 50.0, good: 55.0, bad: 45.0})
    assert chosen[0] == replace(good, epochs=SMALL.fine_epochs)
    assert replace(bad, epochs=SMALL.fine_epochs) not in chosen


def test_the_budget_cuts_the_plan_and_keeps_cheaper_steps_that_fit():
    calibration = Calibration(train_s_per_gflop=0.01, eval_s_per_gflop=0.01, fixed_s=0)
    steps, _ = plan([], SMALL)
    cost = {s.key: estimate_seconds(s, calibration) for s in steps}
    stride8 = [s for s in steps if s.recipe.feature_stride == 8]
    assert cost[stride8[0].key] > 3 * cost[steps[0].key]  # stride 8 costs ~3.3x
    cheap_total = sum(c for k, c in cost.items() if k not in {s.key for s in stride8})
    kept, cut = cut_to_budget(steps, cheap_total + 1, lambda s: cost[s.key])
    assert set(cut) == set(stride8) and len(kept) == len(steps) - len(stride8)
    assert kept == [s for s in steps if s not in stride8]  # order kept
    kept, cut = cut_to_budget(steps, 0, lambda s: cost[s.key])
    assert kept == [] and len(cut) == len(steps)


def test_the_budget_reserves_the_later_stages_and_counts_time_spent():
    calibration = Calibration(train_s_per_gflop=0.01, eval_s_per_gflop=0.01, fixed_s=10)
    def estimate(step):
        return estimate_seconds(step, calibration)
    steps, _ = plan([], SMALL)
    everything = sum(estimate(s) for s in steps)
    kept, cut, reserve = budgeted_plan([], SMALL, 1e9, estimate)
    assert kept == steps and cut == [] and reserve > 0
    # the later stages: per family top_k + 1 fine runs, then 2 more seeds and 3 tests
    kept, cut, _ = budgeted_plan([], SMALL, reserve + everything / 2, estimate)
    assert 0 < len(kept) < len(steps) and sum(estimate(s) for s in kept) <= everything / 2
    # an hour already spent (the log's seconds) is an hour less for the rest
    spent = [record(steps[0], seconds=3600.0)]
    kept_after, cut_after, _ = budgeted_plan(spent, SMALL, reserve + everything / 2, estimate)
    assert kept_after == [] and len(cut_after) == len(steps) - 1
    kept_after, _, _ = budgeted_plan(spent, SMALL, reserve + everything / 2 + 3600, estimate)
    assert kept_after and steps[0] not in kept_after
    assert sum(estimate(s) for s in kept_after) <= everything / 2


def test_a_test_step_is_cut_with_its_train_step():
    recipe = Recipe(recipe="pp", epochs=8)
    steps = [Step("train", "final", recipe, 1), Step("test", "final", recipe, 1),
             Step("test", "final", recipe, 0)]
    cost = {"train": 100.0, "test": 1.0}
    kept, cut = cut_to_budget(steps, 50, lambda s: cost[s.kind])
    # seed 1's test goes with its (unaffordable) training; seed 0's was trained before
    assert kept == [steps[2]] and cut == steps[:2]


def test_estimates_follow_the_log():
    pilot = Calibration(train_s_per_gflop=0.1, eval_s_per_gflop=0.05, fixed_s=20)
    recipe = Recipe(recipe="p", epochs=2)
    logged = record(Step("train", "coarse", recipe))
    logged.update(train_seconds=2 * 240 * recipe.gflops() * 0.2, train_images=240,
                  eval_seconds=20 + 60 * recipe.gflops() * 0.1, eval_images=60)
    fitted = refit(pilot, [logged])
    assert fitted.train_s_per_gflop == pytest.approx(0.2)
    assert fitted.eval_s_per_gflop == pytest.approx(0.1)
    assert refit(pilot, []) == pilot
    conv = replace(recipe, head="conv")
    assert conv.gflops() == pytest.approx(1.08 + 8.32)  # one conv head at 224, stride 16


def test_recipe_flags_and_keys():
    recipe = Recipe(recipe="ppn", delta=0.7, head_lr_mult=(10.0, 20.0, 20.0), schedule="step",
                    epochs=6, loss_weights=(1.0, 0.5, 0.5))
    flags = recipe.train_flags()
    assert flags[flags.index("--head-lr-mult") + 1] == "10,20,20"
    assert flags[flags.index("--lr-steps") + 1] == "4"
    assert flags[flags.index("--loss-weights") + 1] == "1,0.5,0.5"
    assert recipe.key == Recipe(**asdict(recipe)).key
    assert recipe.key != replace(recipe, delta=0.6).key and recipe.key.startswith("ppn-")


def test_the_readme_table_comes_from_the_log_alone():
    from search_cub10 import table

    recipe = Recipe(recipe="pp", epochs=8, delta=0.7)
    log = []
    for seed, (v2, top1) in enumerate([(60.0, 50.0), (62.0, 52.0), (64.0, 51.0)]):
        line = record(Step("test", "final", recipe, seed))
        line.update(test={"max_box_acc_v2": v2 + 1}, test_cal={"max_box_acc_v2": v2,
                                                               "top1_loc": top1})
        log.append(line)
    pairs = [{"family": "pp", "max_box_acc_v2_diff": "3.5", "max_box_acc_v2_diff_ci_low": "0.4",
              "max_box_acc_v2_diff_ci_high": "6.1", "top1_loc_diff": "-1.0",
              "top1_loc_diff_ci_low": "-4.0", "top1_loc_diff_ci_high": "2.0"}]
    log.append({"step": "compare:done", "kind": "compare", "ok": True,
                "centre": {"test": {"max_box_acc_v2": 58.5},
                           "test_cal": {"max_box_acc_v2": 58.0, "top1_loc": 49.0}},
                "test-cal-vs-centre": pairs})
    text = table(log, SMALL)
    row = next(line for line in text.splitlines() if line.startswith("| `pp`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "--delta 0.7" in cells[1] and cells[2] == "3"
    assert cells[3] == "62.0 ± 2.0" and cells[4] == "51.0 ± 1.0" and cells[5] == "63.0 ± 2.0"
    assert cells[6] == "+3.5 [+0.4, +6.1] / -1.0 [-4.0, +2.0]" and cells[7] == "-"
    assert "| centre Gaussian |" in text and "| 58.0 | 49.0 | 58.5 |" in text
    assert "`p`" not in text  # no final p runs in this log: no row for them


def test_a_small_budget_shrinks_the_later_stages_before_the_search_starts():
    from search_plan import fit_budget, projected, shrink_ladder

    settings = Settings()  # the CPU defaults: 4 families, top 2, 3 and 8 epochs
    calibration = Calibration(train_s_per_gflop=0.85, eval_s_per_gflop=0.77, fixed_s=25)
    def estimate(step):
        return estimate_seconds(step, calibration)
    def later_cost(rung):
        return sum(estimate(s) for s in projected([], rung)[len(plan([], rung)[0]):])
    rungs = shrink_ladder(settings)
    costs = [later_cost(r) for r in rungs]
    assert costs == sorted(costs, reverse=True) and costs[0] > 2 * costs[-1]
    assert rungs[-1].families == ("p", "pp") and rungs[-1].fine_epochs == 4
    # a generous budget keeps everything; a small one takes the first rung that leaves
    # 40% of it to the coarse stage
    assert fit_budget([], settings, 100 * 3600, estimate) == settings
    chosen = fit_budget([], settings, 8 * 3600, estimate)
    assert chosen != settings and later_cost(chosen) <= 0.6 * 8 * 3600
    bigger = rungs[rungs.index(chosen) - 1]
    assert later_cost(bigger) > 0.6 * 8 * 3600
    # once the coarse stage is done, the log's stages stand whatever the budget
    log = [record(s) for s in plan([], settings)[0]]
    assert fit_budget(log, settings, 60, estimate) == settings


def test_a_finished_training_is_not_run_again_after_a_kill(tmp_path):
    from search_cub10 import trained_seconds

    run = tmp_path / "train"
    run.mkdir()
    assert trained_seconds(run, 2) is None  # nothing yet: train (or restart) it
    (run / "metrics.csv").write_text("epoch,lr,images_per_s,seconds\n1,0.002,1.1,221.5\n")
    (run / "best.pt").write_bytes(b"")
    assert trained_seconds(run, 2) is None  # killed after epoch 1: train --resume
    with open(run / "metrics.csv", "a") as handle:
        handle.write("2,0.001,1.2,200.0\n")
    assert trained_seconds(run, 2) == pytest.approx(421.5)  # localise and score only


def test_the_validation_split_file_is_the_train_splits_held_out_part(tmp_path):
    import csv

    from search_cub10 import held_out, split_file

    from acol_eval.data.readers import read_source
    from conftest import shared_data

    data = shared_data() / "cub10"
    path = split_file(tmp_path, data, 0.2, seed=1)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    split = {row["image"]: row["split"] for row in rows}
    train, val = held_out(data, 0.2, seed=1)
    cub = read_source(f"cub:{data}")
    assert len(val) == 60 and len(train) == 240  # 20% of each class
    assert {i for i, s in split.items() if s == "val"} == set(val)
    assert sum(s == "test" for s in split.values()) == 243
    assert held_out(data, 0.2, seed=2)[1] != val  # seeded
    # the csv source reads back as cub's images, labels and boxes
    again = read_source(f"csv:{path}")
    assert sorted(again.images["image"]) == sorted(cub.images["image"])
    boxes = again.boxes.sort_values(["image", "x0"]).reset_index(drop=True)
    expected = cub.boxes.sort_values(["image", "x0"]).reset_index(drop=True)
    assert (boxes[["x0", "y0", "x1", "y1"]].astype(float).to_numpy()
            == expected[["x0", "y0", "x1", "y1"]].astype(float).to_numpy()).all()
    assert (tmp_path / "splits" / "images").resolve() == (data / "images").resolve()


def test_the_settings_line_of_the_log_gives_back_the_same_settings():
    import json

    from search_cub10 import settings_of
    from search_plan import GPU_SETTINGS, shrink_ladder

    for settings in (SMALL, GPU_SETTINGS, shrink_ladder(Settings())[-1]):
        line = json.loads(json.dumps({"kind": "settings", "settings": asdict(settings)}))
        assert settings_of([line]) == settings
        assert plan([line], settings) == plan([], settings)  # the line is not a step
    assert settings_of([]) is None


def test_the_evidence_tables_come_from_the_log():
    coarse, _ = plan([], SMALL)
    # lr 0.001 helps by 2 points, everything else changes nothing; each run takes 0.5 h
    log = [record(s, 50 + 2 * (s.recipe.lr == 0.001), seconds=1800) for s in coarse]
    rows = {(r["axis"], r["value"]): r for r in axis_effects(log, SMALL)}
    assert rows[("base", "-")]["pp"] == (50, 0)
    assert rows[("lr", "0.001")]["p"] == (52, 2) and rows[("lr", "0.001")]["pp"] == (52, 2)
    assert "pp" in rows[("delta", "0.6")] and "p" not in rows[("delta", "0.6")]
    fine, _ = plan(log, SMALL)
    log += [record(s, 55, seconds=3600) for s in fine]
    curve = stage_curve(log, SMALL.families)
    assert [(r["stage"], r["runs"]) for r in curve] == [("coarse", 13), ("fine", len(fine))]
    assert curve[0]["hours"] == pytest.approx(6.5) and curve[0]["best"] == {"p": 52, "pp": 52}
    assert curve[1]["best"] == {"p": 55, "pp": 55}
    assert curve[1]["hours"] == pytest.approx(6.5 + len(fine))
    longer = length_pairs(log)  # the fine runs that are a coarse recipe trained longer
    assert longer and all((short, long) == (50 + 2 * (r.lr == 0.001), 55)
                          for r, short, long in longer)
    assert all(r.epochs == SMALL.fine_epochs for r, _, _ in longer)


def test_without_combination_the_fine_stage_is_each_familys_best_trained_longer():
    coarse, _ = plan([], SMALL)
    log = [record(s, 50 + 2 * (s.recipe.lr == 0.001) + (s.recipe.delta == 0.6)) for s in coarse]
    lean = replace(SMALL, top_k=1, combine=False, fine_epochs=6)
    fine, stage = plan(log, lean)
    assert stage == "fine"
    assert [(s.recipe.family, s.recipe.lr, s.recipe.epochs) for s in fine] == [
        ("p", 0.001, 6), ("pp", 0.001, 6)]
    # per family: one fine run, then seeds 1 and 2 trained and all 3 seeds tested
    assert len(projected([], lean)) == len(coarse) + 2 * (1 + 2 + 3)


def test_test_split_is_scored_at_the_validation_thresholds(tmp_path):
    """Every metric at its validation threshold, and the fixed-threshold metrics (Top-1
    Loc, what compare pairs) at the best validation GT-known threshold, not at 0.2."""
    from search_cub10 import calibrated

    report = tmp_path / "val-report"
    report.mkdir()
    (report / "summary.csv").write_text("metric,value,threshold\ntop1_loc,40,0.2\n"
                                        "best_gt_known_loc,66.7,0.322\n")
    assert calibrated(report) == ["--threshold-from", str(report), "--threshold", "0.322"]
    (report / "summary.csv").write_text("metric,value,threshold\ntop1_loc,40,0.2\n")
    with pytest.raises(RuntimeError, match="no best_gt_known_loc row"):
        calibrated(report)
