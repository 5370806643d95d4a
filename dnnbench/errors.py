"""The one exception family the library raises.

Library code raises these; only the CLI turns them into one line on stderr and an exit code.
"""

from __future__ import annotations


class DnnbenchError(Exception):
    """Base class of every error dnnbench raises on purpose."""

    exit_code = 1


class InputError(DnnbenchError, ValueError):
    """A name, number or option the user gave is not valid (exit code 2)."""

    exit_code = 2


class DataError(InputError):
    """A data file is missing, unreadable, corrupt or inconsistent (exit code 2)."""


class Interrupted(DnnbenchError):
    """Training stopped by Ctrl-C; the message says how many trials were kept (exit code 130)."""

    exit_code = 130


def one_of(kind: str, value: object, valid: list[str] | tuple[str, ...] | set[str]) -> InputError:
    """An InputError for an unknown name, listing the valid ones."""
    names = ", ".join(sorted(valid))
    return InputError(f"unknown {kind} {value!r}; valid: {names}")
