"""The CLI's choices and help derive from the registries (protocols, map methods,
annotation formats, baselines, map choices, coco label rules), acol_eval.list_formats()
says what formats exist, and the shared limits are defined once."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

import pytest
from click.testing import CliRunner

import acol_eval
import cli
from acol_eval.data import readers
from acol_eval.data.boxformats import BoxFormat
from acol_eval.data.readers import READERS, Reader
from acol_eval.scoring import protocols, scoring
from acol_eval.util.errors import AcolError
from acol_eval.util.runtime import DEVICE_PATTERN, MAX_BOOTSTRAP, MIN_BOOTSTRAP

PACKAGE = Path(acol_eval.__file__).parent


def help_text(*command: str) -> str:
    result = CliRunner().invoke(cli.main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # help wraps long lists across lines


def choices_of(command: str, option: str) -> list[str]:
    """The choices click offers for `option` of `command`."""
    params = {p.name: p for p in cli.main.commands[command].params}
    return list(params[option].type.choices)


SCORE_CHOICES = {  # option -> the registry its choices come from
    "protocol": [p.value for p in protocols.Protocol],
    "baseline": [b.value for b in scoring.Baseline],
    "map_choice": [m.value for m in scoring.MapChoice],
    "label_rule": list(readers.COCO_LABEL_RULES),
}


@pytest.mark.parametrize("option", sorted(SCORE_CHOICES))
def test_score_choices_are_the_registry_names(option):
    assert choices_of("score", option) == SCORE_CHOICES[option]


def test_score_help_names_every_protocol_format_baseline_and_map():
    text = help_text("score")
    assert f"--protocol [{'|'.join(SCORE_CHOICES['protocol'])}]" in text
    assert f"--baseline [{'|'.join(SCORE_CHOICES['baseline'])}]" in text
    assert f"--map [{'|'.join(SCORE_CHOICES['map_choice'])}]" in text
    assert f"FORMAT:PATH ({', '.join(READERS)})" in text
    assert set(READERS) == {"folder", "cub", "wsol", "voc", "coco", "labelme", "csv", "masks"}


def test_a_format_added_to_the_registry_appears_in_the_help(monkeypatch):
    monkeypatch.setitem(READERS, "toy", Reader(lambda path, image_root=None: None, "a toy"))
    assert "labelme, csv, masks, toy)" in help_text("score")
    assert acol_eval.list_formats()["toy"] == "a toy"


def test_a_protocol_or_baseline_added_to_its_registry_becomes_a_choice(monkeypatch):
    grown = Enum("Protocol", {"WSOLEVAL": "wsoleval", "NATIVE": "native", "TOY": "toy"},
                 type=str)
    monkeypatch.setattr(protocols, "Protocol", grown)
    monkeypatch.setattr(scoring, "Baseline", Enum("Baseline", {"CENTRE": "centre",
                                                               "BLOB": "blob"}, type=str))
    assert choices_of("score", "protocol") == ["wsoleval", "native", "toy"]
    text = help_text("score")
    assert "--protocol [wsoleval|native|toy]" in text and "--baseline [centre|blob]" in text


def test_an_unregistered_choice_is_refused_in_one_line():
    result = CliRunner().invoke(cli.main, ["score", "r", "--annotations", "a", "--out", "o",
                                           "--protocol", "toy"])
    assert result.exit_code == 2
    assert "'toy' is not one of 'wsoleval', 'native'" in result.output


def test_every_protocol_is_registered_with_its_box_format():
    assert set(protocols.PROTOCOLS) == set(protocols.Protocol)
    for member, kind in protocols.PROTOCOLS.items():
        assert kind.name == member.value and isinstance(kind.box_format, BoxFormat)


def test_localize_method_choices_are_the_map_methods(monkeypatch):
    from acol_eval.models import mapmethods

    names = [m.value for m in mapmethods.MapMethod]
    assert names[0] == "model" and "gradcam++" in names and "scorecam" in names
    assert choices_of("localize", "method") == names
    assert f"--method [{'|'.join(names)}]" in help_text("localize")
    grown = Enum("MapMethod", {"MODEL": "model", "TOY": "toycam"}, type=str)
    monkeypatch.setattr(mapmethods, "MapMethod", grown)
    assert "--method [model|toycam]" in help_text("localize")


def test_list_formats_describes_every_reader_in_one_line():
    formats = acol_eval.list_formats()
    assert list(formats) == list(READERS)
    for name, text in formats.items():
        assert text and "\n" not in text, name
        box_format = READERS[name].box_format
        assert (box_format.text in text) if box_format else ("; boxes: " not in text)
    assert "x y w h (CUB" in formats["cub"] and "bbox [x, y, w, h]" in formats["coco"]


def _definitions(pattern: str) -> list[str]:
    """Package files (and cli.py) with a line matching `pattern`."""
    files = [*PACKAGE.rglob("*.py"), PACKAGE.parent / "cli.py"]
    return sorted(str(f.relative_to(PACKAGE.parent)) for f in files
                  if re.search(pattern, f.read_text(encoding="utf-8"), re.MULTILINE))


def test_shared_limits_and_patterns_are_defined_once():
    assert _definitions(r"^MAX_BOOTSTRAP\s*=") == ["acol_eval/util/runtime.py"]
    assert _definitions(r"^FEATURE_STRIDES\s*=") == ["acol_eval/models/backbones.py"]
    assert _definitions(r"cuda\(:") == ["acol_eval/util/runtime.py"]  # the device pattern
    assert _definitions(r"auto, cpu, cuda or cuda:N\.\"") == ["acol_eval/util/runtime.py"]
    assert _definitions(r"^WSOLEVAL_SIZE\s*=") == ["acol_eval/data/boxformats.py"]


def test_the_device_pattern_and_the_bootstrap_limit():
    assert all(DEVICE_PATTERN.fullmatch(d) for d in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"))
    assert not any(DEVICE_PATTERN.fullmatch(d) for d in ("gpu", "cuda:", "cuda:1234", "mps"))
    assert MAX_BOOTSTRAP == 100_000 and MIN_BOOTSTRAP == 1000
    from acol_eval.comparison.compare import CompareConfig

    # score and compare read --bootstrap alike: the same limits and the same messages
    for make in (lambda n: scoring.ScoreConfig(run="r", annotations="a", out="o", bootstrap=n),
                 lambda n: CompareConfig(reports=["a", "b"], out="o", bootstrap=n)):
        with pytest.raises(AcolError, match="--bootstrap 100001 must be between 0 and 100000"):
            make(MAX_BOOTSTRAP + 1)
        with pytest.raises(AcolError, match="--bootstrap 999 is too few rounds for a 95% "
                                            "interval: give at least 1000 .or 0 for none."):
            make(MIN_BOOTSTRAP - 1)
        for rounds in (0, MIN_BOOTSTRAP, MAX_BOOTSTRAP):
            make(rounds)
