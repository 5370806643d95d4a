"""The one exception family the library raises.

Library code raises these; only the CLI turns them into one line on stderr and an exit code.
"""

from __future__ import annotations

from collections.abc import Iterable


class DnnbenchError(Exception):
    """Base class of every error dnnbench raises on purpose."""

    exit_code = 1


class InputError(DnnbenchError, ValueError):
    """A name, number or option the user gave is not valid (exit code 2)."""

    exit_code = 2


class DataError(InputError):
    """A data file is missing, unreadable, corrupt or inconsistent (exit code 2)."""


class OutputError(InputError):
    """A file or stdout given to write cannot be written (disk full, read-only, closed); exit code 2."""


class TrialsErrored(DnnbenchError):
    """Everything was written, but some trials ended in ``error`` (exit code 1)."""

    exit_code = 1


class Interrupted(DnnbenchError):
    """Training stopped by Ctrl-C (exit code 130) or SIGTERM (143); the message says how many
    trials were kept."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises ``KeyboardInterrupt``: the same path, exit code 143."""


def one_of(kind: str, value: object, valid: Iterable[str]) -> InputError:
    """An InputError for an unknown name, listing the valid ones."""
    names = ", ".join(sorted(valid))
    return InputError(f"unknown {kind} {value!r}; valid: {names}")
