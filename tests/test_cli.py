import os
import shutil
from contextlib import nullcontext

import pytest
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


# --------------------------------------------------------------------------- localize


def test_python_m_acol_eval_is_the_command_line():
    import subprocess
    import sys

    from conftest import ROOT

    result = subprocess.run([sys.executable, "-m", "acol_eval", "--help"], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: acol-eval ")
    for command in ("train", "localize", "score", "synth"):
        assert f"acol-eval {command}" in result.stdout


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    from conftest import make_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    make_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def sandbox_template(tmp_path_factory, good_checkpoint):
    """Everything a hostile localize command touches: two images, a good and two broken
    checkpoints, odd list files, a finished run (made once, copied for every test)."""
    from acol_eval.data.synth import SynthConfig, write_synth
    from conftest import make_checkpoint, run_localize, write_images

    root = tmp_path_factory.mktemp("sandbox")
    write_images(root / "img", ["a.png", "b.jpg"])
    shutil.copy(good_checkpoint, root / "m.pt")
    make_checkpoint(root / "size0.pt", input_size=0)
    (root / "garbage.pt").write_bytes(b"\x80\x04not a checkpoint")
    (root / "nul.txt").write_bytes(b"a.png\0\n")
    (root / "comments.txt").write_text("# nothing here\n\n")
    (root / "empty").mkdir()
    (root / "a-file").write_text("x")
    (root / "full").mkdir()
    (root / "full" / "old.jpg").write_bytes(b"somebody's picture")
    write_synth(root / "cub", SynthConfig(classes=2, train_per_class=1, val_per_class=1,
                                          size=32))
    run_localize(root / "img", root / "done", checkpoint=str(root / "m.pt"))
    return root


@pytest.fixture
def sandbox(tmp_path, sandbox_template):
    copy = shutil.copytree(sandbox_template, tmp_path / "sandbox")
    os.mkfifo(copy / "fifo")  # made here: copying a FIFO would block on it
    return copy


def localize_args(sandbox, *extra, images="{sandbox}/img", checkpoint="m.pt"):
    args = ["localize", images.format(sandbox=sandbox), "--out", str(sandbox / "run"),
            "--workers", "0"]
    if checkpoint:
        args += ["--checkpoint", str(sandbox / checkpoint)]
    return [*args, *extra]


HOSTILE_LOCALIZE = {
    # odd values refused
    "batch size 0": (["--batch-size", "0"], {}, "--batch-size"),
    "batch size huge": (["--batch-size", "1000000000"], {}, "--batch-size"),
    "top-k 0": (["--top-k", "0"], {}, "--top-k"),
    "top-k not a number": (["--top-k", "many"], {}, "'many' is not a valid integer"),
    "threshold nan": (["--cam-threshold", "nan"], {}, "--cam-threshold"),
    "threshold 1.5": (["--cam-threshold", "1.5"], {}, "--cam-threshold"),
    "workers -3": (["--workers", "-3"], {}, "--workers"),
    "device gpu": (["--device", "gpu"], {}, "unknown device"),
    "device cuda:x": (["--device", "cuda:x"], {}, "unknown device"),
    "seed -1": (["--seed", "-1"], {}, "--seed"),
    "stride 7": (["--arch", "resnet18", "--feature-stride", "7"], {"checkpoint": None},
                 "--feature-stride"),
    "arch unknown": (["--arch", "resnet9000", "--weights", "none"], {"checkpoint": None},
                     "unknown architecture"),
    "weights file missing": (["--arch", "resnet18", "--weights", "nowhere.pt"],
                             {"checkpoint": None}, "does not exist"),
    "checkpoint and arch": (["--arch", "resnet18"], {}, "either --checkpoint"),
    "no model": ([], {"checkpoint": None}, "either --checkpoint"),
    # bad inputs found at start-up leave nothing behind
    "checkpoint garbage": ([], {"checkpoint": "garbage.pt"}, "not a readable"),
    "checkpoint missing": ([], {"checkpoint": "nowhere.pt"}, "does not exist"),
    "checkpoint a folder": ([], {"checkpoint": "empty"}, "is a folder, not a file"),
    "checkpoint input_size 0": ([], {"checkpoint": "size0.pt"}, "input_size 0"),
    "images missing": ([], {"images": "{sandbox}/nowhere"}, "does not exist"),
    "images empty folder": ([], {"images": "{sandbox}/empty"}, "no images found"),
    "images a fifo": ([], {"images": "{sandbox}/fifo"}, "neither a folder nor a list file"),
    "list with NUL bytes": ([], {"images": "{sandbox}/nul.txt"}, "NUL"),
    "list of comments": ([], {"images": "{sandbox}/comments.txt"}, "no images found"),
    "labels missing": (["--labels", "csv:nowhere.csv"], {}, "does not exist"),
    "images a run folder": ([], {"images": "{sandbox}/done"}, "no images found"),
    "split unknown": (["--split", "nope"], {"images": "cub:{sandbox}/cub"}, "no split 'nope'"),
    "cub source missing": ([], {"images": "cub:{sandbox}/nowhere"}, "does not exist"),
    # overlays that could replace inputs
    "overlays are the images": (["--overlays", "{sandbox}/img"], {}, "holds the image"),
    "overlays a file": (["--overlays", "{sandbox}/a-file"], {}, "is a file"),
    "overlays not empty": (["--overlays", "{sandbox}/full"], {}, "already holds files"),
    "overlays are the run": (["--overlays", "{sandbox}/run"], {}, "run folder"),
}


@pytest.mark.parametrize("case", list(HOSTILE_LOCALIZE))
def test_hostile_localize_commands_are_one_line_errors(sandbox, case):
    from conftest import tree_state

    extra, where, phrase = HOSTILE_LOCALIZE[case]
    extra = [value.format(sandbox=sandbox) for value in extra]
    before = tree_state(sandbox)
    result = CliRunner().invoke(main, localize_args(sandbox, *extra, **where))
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0], result.stderr
    assert tree_state(sandbox) == before


@pytest.mark.parametrize("case", ["finished", "locked", "unfinished", "out is a file"])
def test_localize_refuses_an_out_it_must_not_write(sandbox, case):
    """A second command on one --out is refused while the first holds it."""
    from acol_eval.util.safeio import FolderLock
    from conftest import tree_state

    out = {"finished": "done", "locked": "done", "unfinished": "run",
           "out is a file": "a-file"}[case]
    phrase = {"finished": "finished run", "locked": "another acol-eval command",
              "unfinished": "other arguments", "out is a file": "is a file"}[case]
    args = localize_args(sandbox)
    args[args.index("--out") + 1] = str(sandbox / out)
    if case == "unfinished":
        (sandbox / "run" / ".partial").mkdir(parents=True)
        (sandbox / "run" / ".partial" / "record.json").write_text('{"arguments": {}}')
    if case == "locked":
        shutil.rmtree(sandbox / "done")
    before = tree_state(sandbox)
    with FolderLock(sandbox / out, "localize") if case == "locked" else nullcontext():
        if case == "locked":
            before = tree_state(sandbox)
        result = CliRunner().invoke(main, args)
        # what the refused command left, before the test's own lock (which records its
        # holder while held) is released
        after = tree_state(sandbox)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0], result.stderr
    if case == "unfinished":  # the lock file the refused command held: empty, harmless
        assert after.pop("run/.acol-eval.lock") == b""
    assert after == before


def test_localize_prints_its_counts_and_exits_1_when_files_failed(sandbox):
    (sandbox / "img" / "broken.png").write_bytes(b"not a png")
    result = CliRunner().invoke(main, localize_args(sandbox))
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.stdout.startswith("localised 2 images (")
    assert "6 maps" in result.stdout and "1 could not be read or decoded" in result.stdout
    assert result.stderr.startswith("localising 3 images with resnet18")


def test_method_choices_are_the_librarys_methods():
    """cli.py reads the methods from the enum when click needs them, not when it is
    imported (start-up time): the choices are the enum's."""
    import subprocess
    import sys

    import cli
    from acol_eval.models.methods import MapMethod
    from conftest import ROOT

    params = {param.name: param for param in cli.main.commands["localize"].params}
    assert list(params["method"].type.choices) == [method.value for method in MapMethod]
    code = "import sys, cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
