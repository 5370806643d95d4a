"""Every file dnnbench writes goes through here: no file is ever destroyed or corrupted.

Four rules, one place:

- ``claim`` refuses a path that is an input of the same command, a folder, or an existing file
  (unless ``--force``, or ``--resume`` for a results file being continued);
- ``lock`` holds an exclusive ``fcntl.flock`` on ``.<name>.lock`` beside a results file for the
  whole run (the pid is written in it), so a second run on the same file stops at once;
- ``write_atomic`` writes whole files (CSV, figures, rewritten results) to a temporary file in
  the same folder and renames it over the target: a reader sees the old file or the new one;
- every ``OSError`` becomes one ``OutputError`` line naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from dnnbench.errors import InputError, OutputError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def claim(
    path: Path,
    *,
    inputs: Iterable[str | Path | None] = (),
    force: bool = False,
    resume: bool = False,
    option: str = "--out",
) -> None:
    """Check that ``path`` may be written: not an input, not a folder, not an existing file
    unless ``force`` (replace it) or ``resume`` (continue it). ``InputError`` otherwise."""
    for source in inputs:
        if source is not None and (_same_file(path, Path(source)) or path.resolve() == Path(source).resolve()):
            raise InputError(
                f"{option} {path} is also an input of this command ({source}); "
                "write to another file (dnnbench never writes over its inputs)"
            )
    if path.is_dir():
        raise InputError(f"{option} {path}: is a directory")
    if path.is_file() and not (force or resume):  # a device or a pipe (/dev/stdout) holds nothing to lose
        raise InputError(
            f"{option} {path} already exists; add --force to replace it"
            + (" or --resume to continue it" if option == "--out" and path.suffix == ".jsonl" else "")
            + ", or choose another file"
        )


def write_atomic(path: Path, data: str | bytes, *, option: str = "--out") -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as stream:
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise cannot_write(path, exc, option) from None


def cannot_write(path: Path | str, exc: OSError, option: str = "--out") -> OutputError:
    """The one-line error of a failed write."""
    return OutputError(f"{option} {path}: cannot write ({exc.strerror or exc})".lstrip())


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on results file ``path`` (via its ``.lock`` file) while the block runs.

    A second holder fails at once with ``InputError`` naming the pid of the first. The lock file is
    removed on release; a lock taken on a file that was removed meanwhile is taken again.
    """
    if path.exists() and not path.is_file():  # a device or a pipe: no file to protect
        yield
        return
    target = lock_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    while True:
        try:
            fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise cannot_write(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = "?"
            with contextlib.suppress(OSError):
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(
                f"{path} is being written by another dnnbench run (pid {pid}); wait for it "
                "to finish or write to another --out"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(target).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed it between our open and our lock: take the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(target)
        os.close(fd)
