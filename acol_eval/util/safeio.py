"""Writing output safely: atomic files, one writer per folder, names that stay inside.

Every command that writes a folder goes through here, so the guarantees are the same
everywhere:
- a file is written to a temporary name in its folder, flushed, fsynced and renamed:
  readers see the old file or the new one, never half of one;
- one process writes a folder at a time: `FolderLock` takes an exclusive `flock` on
  `FOLDER/.acol-eval.lock` (released by the kernel if the process dies, so a killed
  run never leaves a stale lock) and a second command is refused with one line;
- an output path derived from an input name (an overlay of `../../x.jpg`, of
  `/home/u/x.jpg`) stays inside the output folder, and two inputs never share one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from acol_eval.util.errors import AcolError

LOCK_NAME = ".acol-eval.lock"


# --------------------------------------------------------------------------- atomic files


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside `path`; on a clean exit it replaces `path` (fsynced),
    on an exception it is removed and `path` is untouched."""
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open writes whole files: mode 'w' or 'wb'")
    path = Path(path)
    descriptor, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                            suffix=".tmp")
    # mkstemp makes the file 0600; a report or run file gets the usual 0666 & ~umask
    os.fchmod(descriptor, 0o666 & ~_umask())
    try:
        with os.fdopen(descriptor, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it (os.umask sets it, and another
    thread could create a file in between)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


# --------------------------------------------------------------------------- one writer


class FolderLock:
    """An exclusive, non-blocking lock on an output folder for the life of a command.

        with FolderLock(out, "localize"):
            ...  # only this process writes `out`

    The folder is created if needed. A second command on the same folder gets an
    AcolError (exit 2) at once instead of waiting or corrupting the first one's files.
    """

    def __init__(self, folder: str | Path, command: str) -> None:
        self.folder = Path(folder)
        self.command = command
        self._handle: IO | None = None

    def __enter__(self) -> FolderLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AcolError(f"cannot create {self.folder}: {exc.strerror}") from None
        handle = open(self.folder / LOCK_NAME, "a")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AcolError(f"another acol-eval command is writing {self.folder}; wait "
                                f"for it to finish or choose another output folder") from None
            raise
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


# --------------------------------------------------------------------------- names inside


def contained_name(name: str) -> str:
    """A relative, '/'-separated path for an input name that cannot leave its folder.

    'a/b.jpg' stays 'a/b.jpg'; an absolute name loses its root ('/home/u/x.jpg' ->
    '_abs/home/u/x.jpg', so it cannot meet a relative 'home/u/x.jpg'); '..' parts
    become '_up' and '.' parts vanish. Distinct normalised names stay distinct.
    """
    path = PurePosixPath(name.replace("\\", "/"))
    parts = list(path.parts)
    prefix: list[str] = []
    if path.is_absolute():
        parts = parts[1:]
        prefix = ["_abs"]
    cleaned = ["_up" if part == ".." else part for part in parts if part not in (".", "")]
    if not cleaned:
        raise AcolError(f"{name!r} is not a usable file name")
    return "/".join(prefix + cleaned)


def output_path(root: str | Path, name: str, suffix: str) -> Path:
    """Where the output for input `name` goes under `root`: the contained name with
    `suffix` appended whole ('x.png' + '.jpg' -> 'x.png.jpg'), so 'x.png' and 'x.jpg'
    never collide. The result is checked to lie inside `root`."""
    root = Path(root)
    target = root / (contained_name(name) + suffix)
    resolved_root = root.resolve()
    if resolved_root not in target.resolve().parents:
        raise AcolError(f"the output for {name!r} would leave {root}")
    return target


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` is `folder` or lies under it (after resolving links)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def check_input_file(path: str | Path, flag: str, limit: int, hint: str = "") -> Path:
    """An input file named by an option: refused in one line when it is not a file or
    is larger than `limit` bytes (so no argument makes a command read without bound).
    `flag` leads the message ('--image-list FILE'); `hint` follows the size refusal."""
    file = Path(path)
    if not file.is_file():
        raise AcolError(f"{flag}: not a file")
    if file.stat().st_size > limit:
        raise AcolError(f"{flag}: larger than {limit >> 20} MB{hint}")
    return file

