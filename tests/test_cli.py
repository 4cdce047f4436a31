from click.testing import CliRunner

from acol_eval import __version__
from cli import main


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "localize", "score", "synth"):
        assert f"acol-eval {command}" in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_train_help_names_the_seed_aliases():
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    for flag in ("--input-path", "--model", "--cls-recipe", "--delta-list", "--batch-size",
                 "--epochs", "--feature-stride", "--resume"):
        assert flag in result.output


def test_delta_lists_in_every_spelling():
    from cli import _floats

    assert _floats("0.6") == [0.6]
    assert _floats("0.5,0.7") == [0.5, 0.7]
    assert _floats("[0.5, 0.7]") == [0.5, 0.7]


def test_synth_refuses_too_many_classes(tmp_path):
    result = CliRunner().invoke(main, ["synth", str(tmp_path / "s"), "--classes", "9"])
    assert result.exit_code == 2
    assert "2 to 6 classes" in result.output


def test_usage_errors_are_one_line():
    from conftest import assert_one_line_error, run_cli

    assert_one_line_error(run_cli("score", "x", "--annotations", "y", "--out", "z",
                                  "--protocol", "q"), 2, "'q' is not one of")
    assert_one_line_error(run_cli("train"), 2, "Missing option '--data'")
    assert_one_line_error(run_cli("nope"), 2, "No such command 'nope'")
