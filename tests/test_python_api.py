"""The Python API (acol_eval.api, re-exported at the package top): the same numbers as
the command line, one exception type with the command's message, a light import, and
docs/python-api.md's code run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import acol_eval as ae
from acol_eval.maps.reportfolder import ScoreReport
from acol_eval.maps.runfolder import LocalizeRun
from conftest import ROOT, run_cli, synth_with_checkpoint

DOC = ROOT / "docs" / "python-api.md"


def test_import_acol_eval_stays_light():
    """No torch, pandas or numpy on `import acol_eval`; the API names resolve lazily."""
    code = ("import sys, acol_eval as ae; heavy = [m for m in ('torch', 'pandas', 'numpy') "
            "if m in sys.modules]; print(heavy, callable(ae.score), callable(ae.train))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert found.stdout.strip() == "[] True True", found.stderr


def test_the_result_objects_are_reached_from_the_package_as_the_guide_names_them():
    from acol_eval.maps.reportfolder import ScoreReport
    from acol_eval.maps.runfolder import LocalizeRun

    assert ae.LocalizeRun is LocalizeRun and ae.ScoreReport is ScoreReport
    assert {"LocalizeRun", "ScoreReport"} <= set(dir(ae))
    assert "`LocalizeRun.open(folder)`" in DOC.read_text()


def test_train_and_compare_are_the_functions_and_the_jobs_subpackages_are_named_apart():
    import inspect

    import acol_eval.comparison.compare  # noqa: F401 - importing a job's subpackage
    import acol_eval.training.trainer  # noqa: F401 - leaves the function in place

    assert inspect.isfunction(ae.train) and inspect.isfunction(ae.compare)
    assert "preset" in str(inspect.signature(ae.train))
    with pytest.raises(ae.AcolError, match="compare needs at least one REPORT"):
        ae.compare(out="x")
    with pytest.raises(ae.AcolError, match="boxes: give out"):
        ae.boxes("run", cam_threshold=0.3)


def test_unknown_options_and_config_with_options_are_one_line_errors(tmp_path):
    with pytest.raises(ae.AcolError, match=r"score: unknown option\(s\) interval; the options"):
        ae.score(tmp_path, annotations="a", out="o", interval=0.01)
    from acol_eval.scoring.scoring import ScoreConfig

    config = ScoreConfig(run="r", annotations="a", out="o")
    with pytest.raises(ae.AcolError, match="give a ScoreConfig or keyword options, not both"):
        ae.score(config, workers=0)
    with pytest.raises(ae.AcolError, match="--iou: 'x' is not a list of numbers"):
        ae.score("r", annotations="a", out="o", iou="x")


def test_numbers_and_flags_written_as_the_command_line_writes_them(tmp_path):
    """'0', '1000', 'true' become the fields' int and bool (they were TypeErrors deep
    in the configs' checks); what is not a number is one line naming the option."""
    from acol_eval.api import _options
    from acol_eval.comparison.compare import CompareConfig
    from acol_eval.scoring.scoring import ScoreConfig

    options = _options("score", ScoreConfig, {"workers": "1", "bootstrap": "1000",
                                              "interval": "0.01", "overwrite": "true"})
    assert options == {"workers": 1, "bootstrap": 1000, "interval": 0.01, "overwrite": True}
    with pytest.raises(ae.AcolError, match="^--workers: 'two' is not a whole number$"):
        ae.score("r", annotations="a", out="o", workers="two")
    with pytest.raises(ae.AcolError, match="^--overwrite: 'maybe' is not true or false$"):
        ae.compare("a", "b", out="o", overwrite="maybe")
    assert _options("compare", CompareConfig, {"bootstrap": "0"}) == {"bootstrap": 0}
    with pytest.raises(ae.AcolError, match="an option has a value of the wrong type"):
        ae.score("r", annotations="a", out="o", workers=[1])
    assert ae.synth(tmp_path / "s", classes="2", train_per_class="2", val_per_class="1",
                    size="48") == {"train": 4, "val": 2}


def test_the_error_is_the_command_lines_message(tmp_path):
    """The same bad input: AcolError's text is the CLI's one line after 'error: '."""
    with pytest.raises(ae.AcolError) as raised:
        ae.score(tmp_path / "nothing", annotations=f"csv:{tmp_path / 'a.csv'}",
                 out=tmp_path / "r", cam_curve_interval=0.00001)
    cli = run_cli("score", str(tmp_path / "nothing"), "--annotations",
                  f"csv:{tmp_path / 'a.csv'}", "--out", str(tmp_path / "r"),
                  "--cam-curve-interval", "0.00001")
    assert cli.returncode == 2
    assert cli.stderr.strip() == f"acol-eval: error: {raised.value}"


@pytest.mark.slow
def test_score_in_process_prints_the_numbers_of_the_command_line(tmp_path):
    """Acceptance: ae.score on a synth set gives the summary `acol-eval score` prints."""
    data, _ = synth_with_checkpoint(tmp_path, train_per_class=1, val_per_class=4)
    run = ae.localize(f"cub:{data}", out=tmp_path / "run", checkpoint=tmp_path / "m.pt",
                      split="test", workers=0, device="cpu")
    assert isinstance(run, LocalizeRun) and run.result.images == 12
    report = ae.score(run, annotations=f"cub:{data}", split="test", out=tmp_path / "api",
                      iou=[30, 50, 70], cam_curve_interval=0.01, workers=0)
    assert isinstance(report, ScoreReport) and report.result.exit_code == 0
    cli = run_cli("score", str(tmp_path / "run"), "--annotations", f"cub:{data}", "--split",
                  "test", "--out", str(tmp_path / "cli"), "--cam-curve-interval", "0.01",
                  "--workers", "0")
    assert cli.returncode == 0, cli.stderr
    printed = {}
    for line in cli.stdout.splitlines():
        match = re.match(r"(\S+)\s+(-?\d+\.\d\d)\s", line)
        if match:
            printed[match.group(1)] = match.group(2)
    summary = report.summary
    assert len(printed) == len(summary) >= 13
    assert {m: f"{v:.2f}" for m, v in zip(summary["metric"], summary["value"])} == printed
    # and the files agree to the last digit
    assert (tmp_path / "api" / "summary.csv").read_bytes() == \
        (tmp_path / "cli" / "summary.csv").read_bytes()
    assert len(report.per_image) == 12 and "threshold" in report.curve
    assert report.curve_figure().startswith(b"\x89PNG")
    page = report._repr_html_()
    assert "12 of 12 annotated images" in page and "max_box_acc_v2" in page
    assert "data:image/png;base64," in page
    assert "localize run" in run._repr_html_()
    maps = ae.open_maps(run)
    assert maps.maps.shape[0] == len(maps.index) and len(maps.classes) == 3


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_doc_has_code_to_run():
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 5 and "ae.score(" in "".join(blocks)


@pytest.mark.slow
def test_the_python_api_doc_runs_as_written(tmp_path, monkeypatch):
    """docs/python-api.md's code blocks, in order, in one namespace, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACOL_EVAL_OFFLINE", "1")
    namespace: dict = {}
    for block in python_blocks(DOC.read_text()):
        exec(compile(block, str(DOC), "exec"), namespace)
    assert isinstance(namespace["report"], ScoreReport)
    assert isinstance(namespace["compared"].leaderboard, pd.DataFrame)
    assert len(namespace["compared"].pairs) == 1
    assert np.isfinite(namespace["summary"].loc["max_box_acc_v2", "value"])
    assert Path("compare/leaderboard.csv").is_file()
