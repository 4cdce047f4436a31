"""safeio: atomic files, one writer per folder, output names that stay inside."""

from __future__ import annotations

import pytest

from acol_eval.util.errors import AcolError
from acol_eval.util.safeio import FolderLock, atomic_write_text, contained_name, output_path


def test_atomic_files_get_the_usual_permissions(tmp_path):
    """mkstemp makes 0600 files; what acol-eval writes must be readable as any file
    written with open() would be (0666 & ~umask)."""
    import os

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "summary.csv", "metric\n")
    finally:
        os.umask(old)
    assert (tmp_path / "summary.csv").stat().st_mode & 0o777 == 0o644


def test_a_second_lock_on_a_folder_is_refused_and_released_after(tmp_path):
    with FolderLock(tmp_path / "out", "score"):
        with pytest.raises(AcolError, match="another acol-eval command is writing"):
            with FolderLock(tmp_path / "out", "score"):
                pass
    with FolderLock(tmp_path / "out", "score"):  # released: taken again
        pass


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path):
    from acol_eval.util.safeio import atomic_open

    atomic_write_text(tmp_path / "a.csv", "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "a.csv") as handle:
            handle.write("half")
            raise RuntimeError("killed")
    assert (tmp_path / "a.csv").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


@pytest.mark.parametrize(("name", "expected"), [
    ("a/b.jpg", "a/b.jpg"), ("/home/u/x.jpg", "_abs/home/u/x.jpg"),
    ("../../x.jpg", "_up/_up/x.jpg"), ("./a/./b.png", "a/b.png")])
def test_contained_names(name, expected):
    assert contained_name(name) == expected


def test_output_paths_stay_inside_and_keep_extensions_apart(tmp_path):
    names = ["x.png", "x.jpg", "../x.jpg", "/x.jpg"]
    paths = [output_path(tmp_path, n, ".jpg") for n in names]
    assert len(set(paths)) == len(names)
    assert all(tmp_path.resolve() in p.resolve().parents for p in paths)


# --------------------------------------------------------------------------- stale locks


def dead_pid() -> int:
    """The pid of a process that ran and was reaped: gone from this host."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_holder(folder, pid: int, command: str = "train", host: str | None = None):
    import json
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host or socket.gethostname(), "command": command}
    (folder / ".acol-eval.lock").write_text(json.dumps(record) + "\n")


def hold_flock(folder):
    """Another open file holding the lock file's flock: what a loader worker that
    inherited a killed command's descriptor does."""
    import fcntl

    handle = open(folder / ".acol-eval.lock")  # noqa: SIM115 - closed by the caller
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_a_lock_held_for_a_killed_command_is_taken_over_with_one_line(tmp_path):
    out = tmp_path / "out"
    pid = dead_pid()
    write_holder(out, pid)
    orphan = hold_flock(out)
    lines = []
    try:
        with FolderLock(out, "score", warn=lines.append):
            import json
            import os

            assert json.loads((out / ".acol-eval.lock").read_text())["pid"] == os.getpid()
    finally:
        orphan.close()
    assert lines == [f"acol-eval: taking over the lock of {out}: acol-eval train (pid {pid}) "
                     f"was killed while writing it; its output there may be unfinished"]
    assert (out / ".acol-eval.lock").read_text() == ""  # a clean exit: no owner left


def test_a_live_or_foreign_holder_still_refuses(tmp_path):
    import os

    out = tmp_path / "out"
    for pid, host in ((os.getppid(), None), (dead_pid(), "another-host")):
        write_holder(out, pid, host=host)
        orphan = hold_flock(out)
        try:
            with pytest.raises(AcolError, match=rf"another acol-eval command is writing {out} "
                                                rf"\(acol-eval train, pid {pid}\); wait"):
                with FolderLock(out, "score", warn=pytest.fail):
                    pass
        finally:
            orphan.close()


def test_a_killed_commands_record_behind_a_released_lock_is_told(tmp_path, capfd):
    """The kernel released the flock of the killed command; its record says who it was."""
    out = tmp_path / "out"
    pid = dead_pid()
    write_holder(out, pid, command="localize")
    with FolderLock(out, "localize"):
        pass
    assert capfd.readouterr().err == (f"acol-eval: taking over the lock of {out}: acol-eval "
                                      f"localize (pid {pid}) was killed while writing it; "
                                      f"its output there may be unfinished\n")
    with FolderLock(out, "localize"):  # a clean exit before: nothing to say
        pass
    assert capfd.readouterr().err == ""


def test_a_lock_file_that_cannot_be_opened_is_one_line(tmp_path):
    """A folder (or another user's file) where the lock file goes: an AcolError naming
    it, not an OSError traceback from the command that wanted to write."""
    (tmp_path / ".acol-eval.lock").mkdir()
    with pytest.raises(AcolError, match=r"^cannot lock .*: \.acol-eval\.lock: Is a directory$"):
        with FolderLock(tmp_path, "score"):
            pass
