"""While rows stream to stdout (``--json``), stdout is theirs alone: everything else goes to stderr.

A ``--json`` stdout is a JSON Lines stream that another program reads. A user optimizer's
``print`` (at import, in its factory, in its update), a library's notice or a worker process
writing there would break it. So for the whole command ``sys.stdout`` is stderr and, where
stdout is a file descriptor, so is fd 1 (C code and child processes write there); the results
writer alone holds the real stdout (``rows_stdout``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO

_rows: list[TextIO] = []  # the real stdout while ``rows_only`` holds it


def rows_stdout() -> TextIO:
    """Where the results rows of ``--json`` go: the real stdout."""
    return _rows[-1] if _rows else sys.stdout


def _fileno(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # a StringIO, pytest's capture, a closed stream
        return None


@contextlib.contextmanager
def rows_only(enabled: bool = True) -> Iterator[None]:
    """Hold stdout for the rows (``rows_stdout``) while the block runs; all other output goes to stderr."""
    if not enabled:
        yield
        return
    real, err = sys.stdout, sys.stderr
    out_fd, err_fd = _fileno(real), _fileno(err)
    rows: TextIO = real
    saved: int | None = None
    if out_fd is not None and err_fd is not None:
        real.flush()
        saved = os.dup(out_fd)
        rows = os.fdopen(saved, "w", encoding=getattr(real, "encoding", None) or "utf-8", closefd=False)
        os.dup2(err_fd, out_fd)  # fd 1 is stderr now: C code and child processes print there
    _rows.append(rows)
    sys.stdout = err
    try:
        yield
    finally:
        sys.stdout = real
        _rows.pop()
        if saved is not None and out_fd is not None:
            with contextlib.suppress(OSError, ValueError):
                rows.flush()
            for stream in (real, err):  # what was written to them meanwhile goes to stderr
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os.dup2(saved, out_fd)
            os.close(saved)
