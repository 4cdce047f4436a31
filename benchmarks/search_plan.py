"""The recipe search's planner: pure functions over recipes, a run log and a budget.

No I/O here: search_cub10.py reads the log (one JSON object a line), asks this module
what to run next, runs it with acol-eval, and appends the result. Because the plan is
a function of the log, a killed search that is started again plans the same steps and
skips every step the log already holds.

Stages (coarse to fine):
- coarse: short runs, one axis at a time away from each family's base recipe
  (one-factor-at-a-time: the axes are many, the CPU hours few);
- fine: per family, the best `top_k` coarse recipes by validation MaxBoxAccV2, and
  the recipe that takes every axis's best coarse value, trained longer;
- final: the best fine recipe per family, `seeds` seeds, then localised and scored on
  the test split at the threshold calibrated on the validation split.
Model choice reads validation metrics only; test metrics are never looked at to
choose anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

FAMILIES = ("p", "pp", "pn", "ppn")
CHOICE_METRIC = "max_box_acc_v2"  # on the validation split, at its own best thresholds
# MobileNetV2 training-pass GFLOPs per image (batch 1, 10 classes, torch.utils.flop_counter,
# multiply-add = 2): backbone at input 224 by feature stride, and one conv head at 224 and
# stride 16 (a 3x3-3x3-1x1 head on 14x14 positions). Linear heads are ~0.01 each. Both scale
# with the input's area; a head also with the number of positions (16 / stride) ** 2.
BACKBONE_GFLOPS = {16: 1.08, 8: 3.60}
CONV_HEAD_GFLOPS = 8.32


@dataclass(frozen=True)
class Recipe:
    """One training configuration of acol-eval train (everything but the seed)."""

    recipe: str = "p"
    delta: float = 0.8
    feature_stride: int = 16
    input_size: int = 224
    head: str = "linear"
    lr: float = 0.002
    head_lr_mult: tuple[float, ...] = (10.0,)
    epochs: int = 3
    schedule: str = "cosine"
    loss_weights: tuple[float, ...] | None = None
    arch: str = "mobilenet_v2"
    batch_size: int = 32

    @property
    def family(self) -> str:
        return self.recipe

    @property
    def key(self) -> str:
        """A short stable name: family, then a digest of every field."""
        text = json.dumps(asdict(self), sort_keys=True)
        return f"{self.recipe}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"

    def train_flags(self) -> list[str]:
        """The acol-eval train flags this recipe stands for (weights: ImageNet)."""
        flags = ["--arch", self.arch, "--weights", "imagenet", "--recipe", self.recipe,
                 "--delta", f"{self.delta:g}", "--feature-stride", str(self.feature_stride),
                 "--input-size", str(self.input_size), "--head", self.head,
                 "--lr", f"{self.lr:g}", "--head-lr-mult", _join(self.head_lr_mult),
                 "--epochs", str(self.epochs), "--schedule", self.schedule,
                 "--batch-size", str(self.batch_size)]
        if self.schedule == "step":  # at 2/3 of the run, as a one-step decay
            flags += ["--lr-steps", str(max(1, round(self.epochs * 2 / 3)))]
        if self.loss_weights is not None:
            flags += ["--loss-weights", _join(self.loss_weights)]
        return flags

    def gflops(self) -> float:
        """Training-pass GFLOPs per image (see BACKBONE_GFLOPS)."""
        area = (self.input_size / 224) ** 2
        flops = BACKBONE_GFLOPS.get(self.feature_stride, BACKBONE_GFLOPS[16]) * area
        if self.head == "conv":
            flops += len(self.recipe) * CONV_HEAD_GFLOPS * area * (16 / self.feature_stride) ** 2
        return flops


def _join(values: Iterable[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def recipe_from_dict(found: dict) -> Recipe:
    """The Recipe a log line's `recipe` object describes."""
    found = dict(found)
    found["head_lr_mult"] = tuple(found["head_lr_mult"])
    if found.get("loss_weights") is not None:
        found["loss_weights"] = tuple(found["loss_weights"])
    return Recipe(**found)


@dataclass(frozen=True)
class Settings:
    """The search's shape: stage lengths and sizes (CPU defaults; --scale gpu: longer)."""

    coarse_epochs: int = 3
    fine_epochs: int = 8
    top_k: int = 2
    combine: bool = True  # fine stage: also the every-axis-at-its-best recipe
    seeds: tuple[int, ...] = (0, 1, 2)
    families: tuple[str, ...] = FAMILIES
    base: Recipe = Recipe()
    deltas: tuple[float, ...] = (0.5, 0.6, 0.7, 0.9)  # the base has 0.8
    lrs: tuple[float, ...] = (0.001, 0.005)
    head_lr_mults: tuple[float, ...] = (5.0, 20.0)
    schedules: tuple[str, ...] = ("step", "constant")
    input_sizes: tuple[int, ...] = (320,)
    strides: tuple[int, ...] = (8,)
    heads: tuple[str, ...] = ("conv",)


GPU_SETTINGS = Settings(coarse_epochs=10, fine_epochs=40, top_k=3,
                        input_sizes=(288, 320, 384), lrs=(0.0005, 0.001, 0.005, 0.01))


@dataclass(frozen=True)
class Step:
    """One thing to do: 'train' a recipe with a seed (then localise and score it on the
    validation split), or 'test' it (localise and score on the test split)."""

    kind: str  # train | test
    stage: str  # coarse | fine | final
    recipe: Recipe
    seed: int = 0

    @property
    def run_key(self) -> str:
        return f"{self.recipe.key}-s{self.seed}"

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.run_key}"


# --------------------------------------------------------------------------- stages


def coarse_recipes(settings: Settings, family: str) -> list[Recipe]:
    """The family's base, then one axis changed at a time, in the order they are worth
    CPU time: cheap axes that matter most first (delta for ACoL, learning rates,
    schedule, loss weights), the expensive ones (input size, stride 8, conv head) last."""
    base = replace(settings.base, recipe=family, epochs=settings.coarse_epochs)
    letters = len(family)
    found = [base]
    if letters > 1:
        found += [replace(base, delta=d) for d in settings.deltas]
    found += [replace(base, lr=lr) for lr in settings.lrs]
    found += [replace(base, head_lr_mult=(m,)) for m in settings.head_lr_mults]
    if letters > 1:  # the erased heads learn from less: give them twice the rate
        mult = base.head_lr_mult[0]
        found.append(replace(base, head_lr_mult=(mult, *[2 * mult] * (letters - 1))))
    found += [replace(base, schedule=s) for s in settings.schedules]
    if letters > 1:
        found.append(replace(base, loss_weights=(1.0, *[0.5] * (letters - 1))))
    found += [replace(base, input_size=s) for s in settings.input_sizes]
    found += [replace(base, feature_stride=s) for s in settings.strides]
    found += [replace(base, head=h) for h in settings.heads]
    return list(dict.fromkeys(found))


def coarse_steps(settings: Settings) -> list[Step]:
    """Every family's coarse recipes, interleaved (rank 1 of every family, then rank 2
    ...) so that a budget cut trims every family's least promising axes alike."""
    per_family = [coarse_recipes(settings, f) for f in settings.families]
    steps = []
    for rank in range(max(len(r) for r in per_family)):
        steps += [Step("train", "coarse", recipes[rank]) for recipes in per_family
                  if rank < len(recipes)]
    return steps


AXES = ("delta", "lr", "head_lr_mult", "schedule", "loss_weights", "input_size",
        "feature_stride", "head")


def combined_recipe(base: Recipe, scored: dict[Recipe, float]) -> Recipe:
    """The base with every axis at the value of its best one-axis variant, for each axis
    where that variant beat the base (scored: recipe -> validation score)."""
    if base not in scored:
        return base
    best = base
    for axis in AXES:
        variants = [(score, recipe) for recipe, score in scored.items()
                    if getattr(recipe, axis) != getattr(base, axis)
                    and replace(recipe, **{axis: getattr(base, axis)}) == base]
        if variants:
            score, winner = max(variants, key=lambda pair: pair[0])
            if score > scored[base]:
                best = replace(best, **{axis: getattr(winner, axis)})
    return best


def fine_recipes(settings: Settings, family: str, scored: dict[Recipe, float]) -> list[Recipe]:
    """The family's top_k coarse recipes and their combination, at fine_epochs."""
    mine = {r: s for r, s in scored.items() if r.family == family}
    if not mine:
        return []
    ranked = sorted(mine, key=lambda r: (-mine[r], r.key))[:settings.top_k]
    base = replace(settings.base, recipe=family, epochs=settings.coarse_epochs)
    # the best first, then the combination (what one-axis runs cannot see), then the rest
    combination = [combined_recipe(base, mine)] if settings.combine else []
    candidates = [*ranked[:1], *combination, *ranked[1:]]
    return list(dict.fromkeys(replace(r, epochs=settings.fine_epochs) for r in candidates))


def fine_steps(settings: Settings, scored: dict[Recipe, float]) -> list[Step]:
    """Every family's fine recipes interleaved by rank (every family's best, then every
    combination, then the runners-up), so that a budget cut drops runners-up across the
    families before any family loses its only fine run."""
    per_family = [fine_recipes(settings, f, scored) for f in settings.families]
    return [Step("train", "fine", recipes[rank])
            for rank in range(max(map(len, per_family), default=0))
            for recipes in per_family if rank < len(recipes)]


def best_recipe(scored: dict[Recipe, float], family: str) -> Recipe | None:
    mine = {r: s for r, s in scored.items() if r.family == family}
    return min(mine, key=lambda r: (-mine[r], r.key)) if mine else None


# --------------------------------------------------------------------------- the log


def finished(records: Iterable[dict]) -> dict[str, dict]:
    """Step key -> its log record, for records of steps that finished (ok: true)."""
    return {r["step"]: r for r in records if r.get("ok") and "step" in r}


def validation_scores(records: Iterable[dict], among: Iterable[Recipe]) -> dict[Recipe, float]:
    """Recipe -> validation score of its seed-0 training run, for the recipes `among`."""
    wanted = set(among)
    scores = {}
    for record in finished(records).values():
        if record.get("kind") == "train" and record.get("seed") == 0:
            value = record.get("val", {}).get(CHOICE_METRIC)
            if value is not None and math.isfinite(value):
                recipe = recipe_from_dict(record["recipe"])
                if recipe in wanted:
                    scores[recipe] = value
    return scores


def plan(records: list[dict], settings: Settings) -> tuple[list[Step], str]:
    """The steps still to do and the stage they belong to (the log decides the stage:
    a stage is planned only once the stage before it is complete)."""
    done = finished(records)
    failed = {r["step"] for r in records if r.get("ok") is False and "step" in r}

    def todo(steps: list[Step]) -> list[Step]:
        return [s for s in steps if s.key not in done and s.key not in failed]

    coarse = coarse_steps(settings)
    if todo(coarse):
        return todo(coarse), "coarse"
    coarse_scores = validation_scores(records, [s.recipe for s in coarse])
    fine = fine_steps(settings, coarse_scores)
    if todo(fine):
        return todo(fine), "fine"
    fine_scores = validation_scores(records, [s.recipe for s in fine])
    final = []
    for family in settings.families:
        winner = best_recipe(fine_scores, family)
        if winner is None:
            continue
        for seed in settings.seeds:
            final += [Step("train", "final", winner, seed), Step("test", "final", winner, seed)]
    return todo(final), "final"


def projected(records: list[dict], settings: Settings) -> list[Step]:
    """The whole search's steps as far as they can be foreseen now: the current stage's
    steps, then the later stages' with each family's base recipe standing in for the
    recipes the log will choose (right in count, approximate in cost)."""
    steps, stage = plan(records, settings)
    later = []
    if stage == "coarse":
        for family in settings.families:
            stand_in = replace(settings.base, recipe=family, epochs=settings.fine_epochs)
            later += [Step("train", "fine", stand_in)] * (settings.top_k + settings.combine)
    if stage in ("coarse", "fine"):
        for family in settings.families:
            stand_in = replace(settings.base, recipe=family, epochs=settings.fine_epochs)
            for seed in settings.seeds:
                if seed != 0:  # seed 0 is the fine run itself
                    later.append(Step("train", "final", stand_in, seed))
                later.append(Step("test", "final", stand_in, seed))
    return steps + later


# --------------------------------------------------------------------------- time


@dataclass(frozen=True)
class Calibration:
    """Seconds per training GFLOP-image, per evaluated GFLOP-image, and per step fixed
    (process start, model build, scoring), from the pilot and then from the log."""

    train_s_per_gflop: float
    eval_s_per_gflop: float
    fixed_s: float
    train_images: int = 240
    eval_images: int = 60  # validation images per train step; test steps use test_images
    test_images: int = 243
    source: str = "pilot"
    extra: dict = field(default_factory=dict, compare=False)


def estimate_seconds(step: Step, calibration: Calibration) -> float:
    """The expected wall time of one step."""
    gflops = step.recipe.gflops()
    if step.kind == "test":
        return calibration.fixed_s + calibration.test_images * gflops * \
            calibration.eval_s_per_gflop
    return (calibration.fixed_s
            + step.recipe.epochs * calibration.train_images * gflops
            * calibration.train_s_per_gflop
            + calibration.eval_images * gflops * calibration.eval_s_per_gflop)


def refit(calibration: Calibration, records: Iterable[dict]) -> Calibration:
    """The pilot's rates replaced by the median rates of finished train steps in the log
    (their train_seconds and eval_seconds), so estimates follow this machine's load."""
    train_rates, eval_rates = [], []
    for record in finished(records).values():
        if record.get("kind") != "train" or "train_seconds" not in record:
            continue
        recipe = recipe_from_dict(record["recipe"])
        work = recipe.epochs * record.get("train_images", calibration.train_images)
        train_rates.append(record["train_seconds"] / (work * recipe.gflops()))
        if record.get("eval_seconds") and record.get("eval_images"):
            eval_rates.append(max(0.0, record["eval_seconds"] - calibration.fixed_s)
                              / (record["eval_images"] * recipe.gflops()))
    if not train_rates:
        return calibration
    return replace(calibration, train_s_per_gflop=statistics.median(train_rates),
                   eval_s_per_gflop=(statistics.median(eval_rates) if eval_rates
                                     else calibration.eval_s_per_gflop),
                   source=f"log ({len(train_rates)} runs)")


def cut_to_budget(steps: list[Step], budget_s: float, estimate: Callable[[Step], float],
                  reserve_s: float = 0.0) -> tuple[list[Step], list[Step]]:
    """(kept, cut): steps in order, each kept when it still fits `budget_s - reserve_s`;
    a step that does not fit is cut and cheaper later ones may still be kept. A 'test'
    step is kept exactly when its 'train' step is."""
    kept, cut, spent, kept_runs = [], [], 0.0, set()
    room = budget_s - reserve_s
    for step in steps:
        if step.kind == "test" and any(s.kind == "train" and s.run_key == step.run_key
                                       for s in steps) and step.run_key not in kept_runs:
            cut.append(step)
            continue
        cost = estimate(step)
        if spent + cost <= room:
            kept.append(step)
            spent += cost
            kept_runs.add(step.run_key)
        else:
            cut.append(step)
    return kept, cut


def budgeted_plan(records: list[dict], settings: Settings, budget_s: float,
                  estimate: Callable[[Step], float]) -> tuple[list[Step], list[Step], float]:
    """The steps of the current stage that fit the budget left, after reserving the
    later stages' projected cost: (kept, cut, reserved seconds). Time already spent
    (the log's seconds) counts against the budget."""
    spent = sum(r.get("seconds", 0.0) for r in records)
    steps, _ = plan(records, settings)
    later = projected(records, settings)[len(steps):]
    reserve = sum(estimate(s) for s in later)
    kept, cut = cut_to_budget(steps, budget_s - spent, estimate, reserve)
    return kept, cut, reserve


def shrink_ladder(settings: Settings) -> list[Settings]:
    """`settings`, then ever smaller versions of it: fewer fine candidates, shorter fine
    and final runs, shorter coarse runs, fewer families. The first rung whose later
    stages fit the budget is the one searched (see fit_budget)."""
    rungs = [settings, replace(settings, top_k=1)]
    for epochs in (6, 5, 4):
        if epochs < settings.fine_epochs:
            rungs.append(replace(settings, top_k=1, fine_epochs=epochs))
    if settings.coarse_epochs > 2:
        rungs.append(replace(rungs[-1], coarse_epochs=2))
    for keep in (3, 2):  # last: fewer families (ppn, then pn), CAM and ACoL stay
        if len(settings.families) > keep:
            rungs.append(replace(rungs[-1], families=settings.families[:keep]))
    return rungs


def fit_budget(records: list[dict], settings: Settings, budget_s: float,
               estimate: Callable[[Step], float], coarse_share: float = 0.4) -> Settings:
    """The largest rung of shrink_ladder whose projected fine and final stages leave at
    least `coarse_share` of the budget left for the coarse stage (the last rung if none
    does). Once the coarse stage is complete the stages are what the log says, so the
    settings stay as given."""
    _, stage = plan(records, settings)
    if stage != "coarse":
        return settings
    spent = sum(r.get("seconds", 0.0) for r in records)
    rungs = shrink_ladder(settings)
    for rung in rungs:
        steps, _ = plan(records, rung)
        later = projected(records, rung)[len(steps):]
        if sum(estimate(s) for s in later) <= (1 - coarse_share) * (budget_s - spent):
            return rung
    return rungs[-1]


# --------------------------------------------------------------------------- evidence


def stage_curve(records: list[dict], families: Iterable[str]) -> list[dict]:
    """Budget against accuracy, from the log: after each stage's train runs (in log
    order), the cumulative search hours and each family's best validation score so far.
    One row per stage that has finished train runs."""
    rows, best, hours, current = [], {}, 0.0, None
    for record in records:
        hours += record.get("seconds", 0.0) / 3600
        if not (record.get("ok") and record.get("kind") == "train"):
            continue
        value = record.get("val", {}).get(CHOICE_METRIC)
        if value is None:
            continue
        if current is not None and record["stage"] != current["stage"]:
            rows.append(current)
        family = record["recipe"]["recipe"]
        best[family] = max(best.get(family, -math.inf), value)
        runs = (current["runs"] + 1) if current and current["stage"] == record["stage"] else 1
        current = {"stage": record["stage"], "runs": runs, "hours": hours,
                   "best": {f: best[f] for f in families if f in best}}
    if current is not None:
        rows.append(current)
    return rows


def axis_effects(records: list[dict], settings: Settings) -> list[dict]:
    """The coarse stage's one-axis changes against each family's base run: per changed
    axis value, per family, the validation score and its difference from the base."""
    scores = validation_scores(records, [s.recipe for s in coarse_steps(settings)])
    rows: dict[tuple[str, str], dict] = {}
    for recipe, value in scores.items():
        base = replace(settings.base, recipe=recipe.family, epochs=settings.coarse_epochs)
        if base not in scores:
            continue
        changed = [a for a in AXES if getattr(recipe, a) != getattr(base, a)]
        if len(changed) > 1:
            continue
        axis = changed[0] if changed else "base"
        shown = getattr(recipe, axis) if changed else "-"
        if isinstance(shown, tuple):
            shown = ",".join(f"{v:g}" for v in shown)
        row = rows.setdefault((axis, str(shown)), {"axis": axis, "value": str(shown)})
        row[recipe.family] = (value, value - scores[base])
    return sorted(rows.values(), key=lambda r: (AXES.index(r["axis"]) if r["axis"] in AXES
                                                else -1, _numeric(r["value"]), r["value"]))


def _numeric(text: str) -> float:
    try:
        return float(text.split(",")[0])
    except ValueError:
        return math.inf


def length_pairs(records: list[dict]) -> list[tuple[Recipe, float, float]]:
    """Recipes trained (seed 0) at two lengths: (recipe at the longer length, validation
    score short, validation score long), the cheapest view of what epochs buy."""
    by_recipe: dict[Recipe, dict[int, float]] = {}
    for record in finished(records).values():
        if record.get("kind") == "train" and record.get("seed") == 0:
            value = record.get("val", {}).get(CHOICE_METRIC)
            if value is not None:
                recipe = recipe_from_dict(record["recipe"])
                by_recipe.setdefault(replace(recipe, epochs=0), {})[recipe.epochs] = value
    found = []
    for recipe, lengths in by_recipe.items():
        if len(lengths) >= 2:
            short, long = min(lengths), max(lengths)
            found.append((replace(recipe, epochs=long), lengths[short], lengths[long]))
    return sorted(found, key=lambda item: item[0].key)
