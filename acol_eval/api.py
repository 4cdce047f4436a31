"""The Python API: one function per command, for notebooks and scripts.

    import acol_eval as ae
    ae.synth("demo", classes=3)
    run = ae.localize("cub:demo", out="run", checkpoint="m.pt", split="test")
    report = ae.score(run, annotations="cub:demo", split="test", out="report")
    report.summary            # a pandas DataFrame, summary.csv

Every function takes either the command's typed config (`ScoreConfig`, ...) or plain
keyword arguments named as the command's options in snake_case (`--cam-curve-interval`
-> `cam_curve_interval`); the command's one positional argument (RUN, IMAGES, OUT,
REPORTS) may come first. A value may be given as Python wants it (a list of IoUs, a
Path) or as the command line writes it ('30,50,70'). The command line (cli.py) calls
these functions and nothing else, so both give the same files and numbers.

What they return: `localize` and `boxes` a `LocalizeRun` (the run folder), `score` a
`ScoreReport` (the report folder), both with the command's own result in `.result`;
`train` a `TrainResult`, `compare` a `CompareResult`, `synth` the image counts. Bad
input raises `AcolError` (acol_eval.AcolError), whose text is the command's one-line
message. Progress is shown as the commands show it (a tqdm bar on a terminal, plain
lines otherwise, on stderr).

This module imports nothing heavy: each function imports its job when called.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acol_eval.util.errors import AcolError

if TYPE_CHECKING:
    from acol_eval.comparison.compare import CompareConfig, CompareResult
    from acol_eval.data.synth import SynthConfig
    from acol_eval.maps.boxesconfig import BoxesConfig
    from acol_eval.maps.localizeconfig import LoadedModel, LocalizeConfig
    from acol_eval.maps.mapstore import MapStore
    from acol_eval.maps.reportfolder import ScoreReport
    from acol_eval.maps.runfolder import LocalizeRun
    from acol_eval.scoring.scoring import ScoreConfig
    from acol_eval.training.trainconfig import TrainConfig
    from acol_eval.training.trainer import TrainResult

__all__ = ["boxes", "compare", "load_model", "localize", "open_maps", "score", "synth",
           "train", "parse_numbers"]

# options whose command-line form is a list of numbers ('0.5,0.7')
NUMBER_LISTS = {"train": ("delta", "lr_steps", "loss_weights", "head_lr_mult"),
                "score": ("iou",)}
# score's options whose config field has another name
SCORE_FIELDS = {"cam_curve_interval": "interval"}


def parse_numbers(text: str) -> list[float]:
    """'0.6', '0.5,0.7', '[0.5, 0.7]' or '0.5 0.7' -> floats; ValueError otherwise."""
    parts = [p for p in re.split(r"[,\s\[\]]+", text) if p]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{text!r} is not a list of numbers") from None


def _plain(value: Any) -> Any:
    """A path as text (configs hold text), a list as a tuple; anything else as it is."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value


def _folder(value: Any) -> Any:
    """A run or report passed as its object stands for its folder."""
    folder = getattr(value, "folder", None)
    return os.fspath(folder) if isinstance(folder, Path) else _plain(value)


def _options(command: str, kind: type, given: Mapping[str, Any],
             fields: Mapping[str, str] = {}) -> dict[str, Any]:
    """Keyword options -> the config's fields: unknown names refused in one line, lists
    of numbers written as text parsed, paths and run/report objects made text."""
    known = {f.name for f in dataclasses.fields(kind)}
    types = {f.name: f.type for f in dataclasses.fields(kind)}
    accepted = {name for name in known if name not in fields.values()} | set(fields)
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise AcolError(f"{command}: unknown option(s) {', '.join(unknown)}; the options are "
                        f"{', '.join(sorted(accepted))}")
    options = {}
    for name, value in given.items():
        value = _folder(value)
        if name in NUMBER_LISTS.get(command, ()) and isinstance(value, str):
            try:
                value = parse_numbers(value)
            except ValueError as exc:
                raise AcolError(f"--{name.replace('_', '-')}: {exc}") from None
        if name in NUMBER_LISTS.get(command, ()) and isinstance(value, (int, float)):
            value = (value,)
        field = fields.get(name, name)
        options[field] = _scalar(name, value, types.get(field))
    return options


_SCALARS = {"int": (int, "a whole number"), "float": (float, "a number")}
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _scalar(name: str, value: Any, annotation: Any) -> Any:
    """A number or a yes/no written as the command line writes it ('1', '0.5', 'true')
    made the field's type; anything else is left to the config's own checks."""
    if not isinstance(value, str) or not isinstance(annotation, str):
        return value
    base = annotation.replace(" | None", "").strip()
    flag = "--" + name.replace("_", "-")
    if base == "bool":
        if value.strip().lower() not in _BOOLEANS:
            raise AcolError(f"{flag}: {value!r} is not true or false")
        return _BOOLEANS[value.strip().lower()]
    if base in _SCALARS:
        convert, what = _SCALARS[base]
        try:
            return convert(value)
        except ValueError:
            raise AcolError(f"{flag}: {value!r} is not {what}") from None
    return value


def _config(command: str, kind: type, config: Any, options: Mapping[str, Any],
            positional: str | None = None, fields: Mapping[str, str] = {}):
    """The typed config: the one given (then no options), or one built from `options`
    (the first positional argument, when it is not a config, is `positional`)."""
    if isinstance(config, kind):
        if options:
            raise AcolError(f"{command}: give a {kind.__name__} or keyword options, not both")
        return config
    given = dict(options)
    if config is not None:
        if positional is None:
            raise AcolError(f"{command}: the first argument is a {kind.__name__}")
        given[positional] = config
    return _build(command, kind, _options(command, kind, given, fields))


def _build(command: str, kind: type, fields: dict[str, Any]):
    """kind(**fields), a missing required option refused in one line (not a TypeError)."""
    missing = [f.name for f in dataclasses.fields(kind) if f.name not in fields
               and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise AcolError(f"{command}: give {' and '.join(missing)}")
    try:
        return kind(**fields)
    except TypeError as exc:  # a value of a type the config cannot compare or use
        raise AcolError(f"{command}: an option has a value of the wrong type ({exc})") from None


# --------------------------------------------------------------------------- commands


def synth(out: str | Path | SynthConfig | None = None, /, **options) -> dict[str, int]:
    """Write the embedded demo data set to `out` (`acol-eval synth OUT`): ImageFolder
    images under OUT/images, OUT/annotations.csv, a CUB layout. Options: classes,
    train_per_class, val_per_class, size, seed, overwrite. Returns the images per split."""
    from acol_eval.data.synth import SynthConfig, write_synth

    if out is None or isinstance(out, SynthConfig):
        raise AcolError("synth: give the folder to write (synth(OUT, classes=...))")
    config = _build("synth", SynthConfig, _options("synth", SynthConfig, options))
    return write_synth(os.fspath(out), config)


def train(config: TrainConfig | None = None, /, *, preset: str | None = None,
          explicit: Collection[str] | None = None, **options) -> TrainResult:
    """Train a model (`acol-eval train`): train(data='cub:PATH', out='run', epochs=2, ...)
    or train(TrainConfig(...)). `preset`: a named recipe filling every option not given
    (`explicit`: the options the caller set on purpose; default every option given).
    Returns the TrainResult (out, epochs, best_accuracy, calibration, ...)."""
    from acol_eval.models.recipemethod import pop_method_flags
    from acol_eval.training.trainconfig import TrainConfig

    method_flags = pop_method_flags(options)  # has_grid and the like: the method's args
    applied = None
    if preset is not None:
        from acol_eval.training.presets import apply_preset
        from acol_eval.training.trainingdata import source_splits

        if isinstance(config, TrainConfig):
            raise AcolError("train: a preset fills keyword options, not a TrainConfig")
        given = _options("train", TrainConfig, options)
        chosen = set(given) if explicit is None else set(explicit)
        given, applied = apply_preset(
            preset, given, chosen,
            lambda: source_splits(given["data"], given.get("images")))
        try:
            config = _build("train", TrainConfig, _with_method_args(given, method_flags))
        except AcolError as exc:
            raise applied.explain(exc) from None
    else:
        if not isinstance(config, TrainConfig):
            options = _with_method_args(options, method_flags)
        config = _config("train", TrainConfig, config, options)
    from acol_eval.training.trainer import train as run_training

    return run_training(config, preset=applied)


def _with_method_args(options: dict, method_flags: dict) -> dict:
    """`options` with `method_args` made from a method's own flags (--has-grid, ...), each
    checked to belong to the chosen --method; a caller's own method_args are kept."""
    from acol_eval.models.recipemethod import method_args_of

    args = method_args_of(options.get("method", "acol"), method_flags)
    return {**options, "method_args": args} if args or "method_args" not in options else options


def localize(images: str | Path | LocalizeConfig | None = None, /, **options) -> LocalizeRun:
    """Sweep images into classes, maps and boxes (`acol-eval localize IMAGES --out RUN`):
    localize('cub:PATH', out='run', checkpoint='m.pt', split='test') or
    localize(LocalizeConfig(...)). Returns the run folder as a LocalizeRun; `.result`
    holds what this call did (images, maps, failed, seconds)."""
    from acol_eval.maps.localization import localize as run_localize
    from acol_eval.maps.localizeconfig import LocalizeConfig
    from acol_eval.maps.runfolder import LocalizeRun

    config = _config("localize", LocalizeConfig, images, options, "images")
    result = run_localize(config)
    return LocalizeRun(Path(result.out), result=result)


def boxes(run: str | Path | LocalizeRun | BoxesConfig | None = None, /,
          **options) -> LocalizeRun:
    """Redo a run's boxes at another CAM threshold (`acol-eval boxes RUN --out NEW`):
    boxes(run, out='new', cam_threshold=0.3) or boxes(BoxesConfig(...)). Returns the new
    run folder as a LocalizeRun; `.result` is the BoxesResult (images, threshold, ...)."""
    from acol_eval.maps.boxesconfig import BoxesConfig
    from acol_eval.maps.boxing import run as run_boxes
    from acol_eval.maps.runfolder import LocalizeRun

    config = _config("boxes", BoxesConfig, run, options, "run")
    result = run_boxes(config)
    return LocalizeRun(Path(result.out), result=result)


def score(run: str | Path | LocalizeRun | ScoreConfig | None = None, /,
          **options) -> ScoreReport:
    """Score maps against annotations (`acol-eval score RUN --annotations SRC --out
    REPORT`): score(run, annotations='cub:PATH', out='report') or score(ScoreConfig(...)).
    Returns the report folder as a ScoreReport (tables as DataFrames: summary, per_image,
    per_class, curve); `.result` is the ScoreResult (issues met, maps that failed)."""
    from acol_eval.maps.reportfolder import ScoreReport
    from acol_eval.scoring.scoring import ScoreConfig
    from acol_eval.scoring.scoring import score as run_score

    config = _config("score", ScoreConfig, run, options, "run", SCORE_FIELDS)
    result = run_score(config)
    return ScoreReport(Path(result.out), result=result)


def compare(*reports: str | Path | ScoreReport | CompareConfig, **options) -> CompareResult:
    """Compare score reports of the same images (`acol-eval compare REPORT... --out
    DIR`): compare(report_a, report_b, out='cmp') or compare(CompareConfig(...)); a seed
    group is one entry 'a1,a2,a3' (or a list of its reports). Returns the CompareResult
    (leaderboard and pairs as DataFrames)."""
    from acol_eval.comparison.compare import CompareConfig
    from acol_eval.comparison.compare import run as run_compare

    if len(reports) == 1 and isinstance(reports[0], CompareConfig):
        config = _config("compare", CompareConfig, reports[0], options)
    else:
        entries = tuple(",".join(_folder(r) for r in entry)
                        if isinstance(entry, (list, tuple)) else _folder(entry)
                        for entry in reports)
        given = {"reports": entries, **options}
        config = _build("compare", CompareConfig, _options("compare", CompareConfig, given))
    return run_compare(config)


# --------------------------------------------------------------------------- readers


def load_model(checkpoint: str | Path | None = None, /, *, arch: str | None = None,
               weights: str = "imagenet", feature_stride: int = 32,
               seed: int = 0) -> LoadedModel:
    """The model localize would use: an acol-eval checkpoint, or a torchvision classifier
    (`arch`, `weights`). Returns a LoadedModel (the torch module, classes, input size,
    normalisation, the calibrated CAM threshold)."""
    from acol_eval.maps.localizeconfig import LocalizeConfig
    from acol_eval.maps.localizeconfig import load_model as load

    # the config checks the model options; images and out are not used by load_model
    config = LocalizeConfig(images="-", out="-", checkpoint=_plain(checkpoint), arch=arch,
                            weights=_plain(weights), feature_stride=feature_stride,
                            seed=seed, workers=0)
    return load(config)


def open_maps(run: str | Path | LocalizeRun) -> MapStore:
    """A finished localize run's maps, memory-mapped (MapStore: maps, classes, the index
    of which image and class each map is)."""
    from acol_eval.maps.runfolder import LocalizeRun

    return LocalizeRun.open(_folder(run)).maps()
