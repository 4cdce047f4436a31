"""Writing output safely: atomic files, one writer per folder, names that stay inside.

Every command that writes a folder goes through here, so the guarantees are the same
everywhere:
- a file is written to a temporary name in its folder, flushed, fsynced and renamed:
  readers see the old file or the new one, never half of one;
- one process writes a folder at a time: `FolderLock` takes an exclusive `flock` on
  `FOLDER/.acol-eval.lock` and writes its pid, host and command into it (emptied on a
  clean exit); a second command is refused with one line. The kernel releases the
  flock when its process dies, but a child that inherited the descriptor (a loader
  worker, a decoding process) can outlive a killed command and hold it: a lock whose
  recorded process is gone from this host is taken over, with one line on stderr, and
  so is the record a killed command left behind a released flock;
- an output folder that already holds what a command would write is refused in one
  line unless asked (--overwrite, --resume): `refuse_existing`, the one check;
- an output path derived from an input name (an overlay of `../../x.jpg`, of
  `/home/u/x.jpg`) stays inside the output folder, and two inputs never share one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
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


def _pid_gone(pid: int) -> bool:
    """No process `pid` on this host (a live one of another user counts as live)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def _holder(descriptor: int) -> dict:
    """The record a lock file holds ({} when empty or not ours)."""
    try:
        text = os.pread(descriptor, 4096, 0).decode("utf-8", "replace").strip()
        record = json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else {}


def _killed(record: dict) -> bool:
    """The record names a process of this host that is gone (a killed command)."""
    return (bool(record) and record.get("host") == socket.gethostname()
            and record["pid"] != os.getpid() and _pid_gone(record["pid"]))


def _locked(descriptor: int) -> bool:
    """Take the flock without waiting; False when another open file holds it."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class FolderLock:
    """An exclusive, non-blocking lock on an output folder for the life of a command.

        with FolderLock(out, "localize"):
            ...  # only this process writes `out`

    The folder is created if needed. A second command on the same folder gets an
    AcolError (exit 2) at once instead of waiting or corrupting the first one's files.
    A lock left by a command that was killed (its recorded pid is gone from this host)
    is taken over with one line on stderr (`warn`).
    """

    def __init__(self, folder: str | Path, command: str,
                 warn: Callable[[str], None] | None = None) -> None:
        self.folder = Path(folder)
        self.command = command
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self._descriptor: int | None = None

    def __enter__(self) -> FolderLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AcolError(f"cannot create {self.folder}: {exc.strerror}") from None
        # takers of this folder's lock go one at a time (a short flock on the folder),
        # so two commands never both take over one stale lock
        try:
            guard = os.open(self.folder, os.O_RDONLY)
        except OSError as exc:
            raise AcolError(f"cannot lock {self.folder}: {exc.strerror or exc}") from None
        try:
            try:
                fcntl.flock(guard, fcntl.LOCK_EX)
            except OSError:  # no flock on a directory (some network filesystems): takers are
                pass         # not serialised, the lock file's own flock still refuses a second
            self._descriptor = self._take(self.folder / LOCK_NAME)
        except OSError as exc:  # a lock file that cannot be opened (a folder, another user's)
            raise AcolError(f"cannot lock {self.folder}: {LOCK_NAME}: "
                            f"{exc.strerror or exc}") from None
        finally:
            os.close(guard)  # closing releases the guard's flock
        return self

    def _take(self, path: Path) -> int:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        record = _holder(descriptor)
        if not _locked(descriptor):
            if not _killed(record):
                os.close(descriptor)
                who = (f" (acol-eval {record.get('command', '?')}, pid {record['pid']})"
                       if record else "")
                raise AcolError(f"another acol-eval command is writing {self.folder}{who}; "
                                f"wait for it to finish or choose another output folder")
            # held by a process that outlived the killed command (it inherited the
            # descriptor): a new lock file, which that process does not hold
            os.close(descriptor)
            path.unlink(missing_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            _locked(descriptor)
        if _killed(record):
            self.warn(f"acol-eval: taking over the lock of {self.folder}: acol-eval "
                      f"{record.get('command', '?')} (pid {record['pid']}) was killed while "
                      f"writing it; its output there may be unfinished")
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(mine) + "\n").encode(), 0)
        return descriptor

    def __exit__(self, *exc_info) -> None:
        if self._descriptor is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._descriptor, 0)  # a clean exit leaves no owner behind
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None


# --------------------------------------------------------------------------- refusals


def existing_entries(folder: Path, names: Iterable[str] | None = None) -> list[str]:
    """Which of `names` are in `folder` (None: every entry but our lock file), in order;
    [] when `folder` is no folder."""
    if not folder.is_dir():
        return []
    if names is not None:
        return [name for name in names if (folder / name).exists()]
    try:
        return sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)
    except OSError as exc:
        raise AcolError(f"cannot read {folder}: {exc.strerror}") from None


def refuse_existing(folder: str | Path, names: Iterable[str] | None, allowed: bool,
                    message: Callable[[list[str]], str], label: str | None = None
                    ) -> list[str]:
    """The one check before a command writes an output folder (reads only): refuse in
    one line a `label`ed path that is not a folder ('LABEL exists and is not a folder';
    no check without a label) and, unless `allowed` (--overwrite, --resume), a folder
    holding any of `names` (None: anything but our lock): `message(found)`. Returns the
    entries found."""
    folder = Path(folder)
    if label is not None and folder.exists() and not folder.is_dir():
        raise AcolError(f"{label} exists and is not a folder")
    found = existing_entries(folder, names)
    if found and not allowed:
        raise AcolError(message(found))
    return found


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

