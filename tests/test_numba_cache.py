"""The score kernels' compilation: kept in the user's cache folder (not beside the package,
read-only in many installs), the user's own NUMBA_CACHE_DIR respected, and short on a
fresh install (few compilations: no numpy allocation inside the kernels, one argument
signature per helper), and made once, before `score`'s worker processes start."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import acol_eval
from acol_eval.util import runtime
from acol_eval.util.runtime import configure_numba_cache, numba_cache_dir

PACKAGE = Path(acol_eval.__file__).resolve().parent


def test_cache_folder_is_the_users_and_not_the_package(tmp_path):
    home = {"HOME": str(tmp_path / "home")}
    assert numba_cache_dir(home) == tmp_path / "home" / ".cache" / "acol-eval" / "numba"
    xdg = {**home, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert numba_cache_dir(xdg) == tmp_path / "xdg" / "acol-eval" / "numba"
    # a relative XDG_CACHE_HOME is not a cache folder (the XDG rule): ~/.cache then
    relative = {**home, "XDG_CACHE_HOME": "cache"}
    assert numba_cache_dir(relative) == numba_cache_dir(home)
    for env in (home, xdg):
        assert PACKAGE not in numba_cache_dir(env).resolve().parents


def test_configure_sets_the_default_and_keeps_the_users_choice(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "numba", raising=False)  # as before numba's import
    env = {"HOME": str(tmp_path)}
    assert configure_numba_cache(env) == str(tmp_path / ".cache" / "acol-eval" / "numba")
    assert env[runtime.NUMBA_CACHE_VARIABLE] == str(tmp_path / ".cache" / "acol-eval" / "numba")
    own = {"HOME": str(tmp_path), "NUMBA_CACHE_DIR": "/somewhere/mine"}
    assert configure_numba_cache(own) == "/somewhere/mine"
    assert own["NUMBA_CACHE_DIR"] == "/somewhere/mine"


COMPILE = """  # wsoleval's kernels, then the native protocol's
import json
import acol_eval, acol_eval.metrics.sweep as sweep  # first: sets numba's cache before numba loads
from numba.core import event
compiled = []
class Count(event.Listener):
    def on_start(self, e): pass
    def on_end(self, e): compiled.append(e.data["dispatcher"].py_func.__qualname__)
event.register("numba:compile", Count())
sweep.load_compiled()
wsoleval = list(compiled)
sweep.load_compiled(native=True)
print(json.dumps({"package": acol_eval.__file__, "compiled": wsoleval,
                  "native": compiled[len(wsoleval):],
                  "iou": len(sweep.best_box_iou.signatures)}))
"""


@pytest.mark.slow  # a cold compilation in a fresh process: 3 s of CPU
def test_a_fresh_install_in_a_read_only_folder_compiles_few_kernels_into_the_user_cache(
        tmp_path):
    """A copy of the package made read-only, a new HOME, no NUMBA_CACHE_DIR: the kernels
    compile without a warning into HOME/.cache/acol-eval/numba, nothing lands in the
    package, and few compilations are made (a numpy allocation or a second argument
    signature in the kernels each adds one: 31 before, seconds of a first `score`)."""
    copy = tmp_path / "site" / "acol_eval"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(copy.parent),
               PYTHONDONTWRITEBYTECODE="1")
    try:
        done = subprocess.run([sys.executable, "-c", COMPILE], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).resolve().parent == copy.resolve()
    cache = tmp_path / "home" / ".cache" / "acol-eval" / "numba"
    kernels = sorted(p.name.split("-")[0] for p in cache.rglob("*.nbi"))
    assert kernels == ["sweep._buckets", "sweep._find", "sweep._sweep_components_into",
                       "sweep._u8_buckets", "sweep._union", "sweep.best_box_iou",
                       "sweep.wsoleval_sweep_into"]
    assert not [p for p in copy.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert found["iou"] == 1
    assert len(found["compiled"]) <= 10, found["compiled"]  # the wsoleval protocol's (main: 31)
    assert len(found["native"]) <= 10, found["native"]  # (main: 30)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_folder_does_not_break_scoring(tmp_path):
    """Where even the user's cache folder cannot be written, numba falls back to its own
    places (or compiles without caching): the kernels still run."""
    home = tmp_path / "home"
    (home / ".cache").mkdir(parents=True)
    (home / ".cache").chmod(0o500)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR",
                                                            "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    code = ("import numpy as np, acol_eval.metrics.sweep as s; s.load_compiled(); "
            "print(s.wsoleval_sweep(np.full((4, 4), 9, np.uint8), "
            "np.array([[0, 0, 3, 3]]))[0][0])")
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=300)
    finally:
        (home / ".cache").chmod(0o700)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) == 1.0
