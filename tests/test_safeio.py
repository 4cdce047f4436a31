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
