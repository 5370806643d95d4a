"""The one exception family the library raises.

Library code raises these; only the CLI turns them into one line on stderr and an exit code.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from collections.abc import Iterable


class DnnbenchError(Exception):
    """Base class of every error dnnbench raises on purpose. Its text is one printable line: a
    message may quote a file or user code, so control characters in it are escaped (``printable``)."""

    exit_code = 1

    def __str__(self) -> str:
        return printable(super().__str__(), newlines=False)


#: What a terminal or a browser would act on instead of showing: the C0 controls (ESC, NUL, BEL,
#: CR, ...), DEL, the C1 controls and the bidirectional overrides and isolates.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_NEWLINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` (from a file or user code) safe to print: each control character as a visible escape
    (``\\x1b``, ``\\u202e``), so none sets a window title, clears a screen or reorders a line. Tabs
    are kept, and newlines unless ``newlines`` is False."""
    pattern = CONTROL if newlines else _CONTROL_OR_NEWLINE
    if not pattern.search(text):
        return text
    return pattern.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


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
    """SIGTERM (or SIGHUP), raised where Ctrl-C raises ``KeyboardInterrupt``: the same path, exit
    code 128 + the signal's number (143 for SIGTERM, 129 for SIGHUP)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = int(signum)


#: The stop signals (SIGINT, SIGTERM, SIGHUP) this process received, in order; the CLI's handlers
#: record them before they raise. A stop is real only when one arrived: a ``KeyboardInterrupt`` or
#: ``SystemExit`` raised by user code is an error of that code, not a request to stop.
STOPS: list[int] = []


def stop_exception(signum: int) -> KeyboardInterrupt:
    """The exception a stop signal raises: ``KeyboardInterrupt`` for Ctrl-C, ``Terminated`` else."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def stop_signal(exc: BaseException) -> int:
    """The signal a stop came from: ``Terminated``'s own, else the first one received (a library may
    turn ``Terminated`` into a plain ``KeyboardInterrupt`` on its way through C code: Ray's
    ``ray.wait`` does), else SIGINT."""
    if isinstance(exc, Terminated):
        return exc.signum
    return STOPS[0] if STOPS else signal.SIGINT


def is_stop(exc: BaseException) -> bool:
    """Whether ``exc`` is a stop this process was asked for (a signal arrived), not one raised by code."""
    return isinstance(exc, KeyboardInterrupt) and bool(STOPS)


def check_stop() -> None:
    """Raise the stop this process received if its handler's raise was lost -- Python prints and
    drops an exception raised inside a garbage-collection callback or a ``__del__`` (JAX has
    both) -- unless that stop is being handled now (``sys.exc_info()`` holds it). Called where
    dnnbench's own code runs on the main thread: before writing, after each program, at the end."""
    if not STOPS or threading.current_thread() is not threading.main_thread():
        return
    if isinstance(sys.exc_info()[1], KeyboardInterrupt):
        return
    raise stop_exception(STOPS[0])


def one_of(kind: str, value: object, valid: Iterable[str]) -> InputError:
    """An InputError for an unknown name, listing the valid ones."""
    names = ", ".join(sorted(valid))
    return InputError(f"unknown {kind} {value!r}; valid: {names}")


def warn(message: str) -> None:
    """A warning line on stderr (a reader that goes on despite something odd in a file)."""
    import sys

    print(f"dnnbench: warning: {printable(message, newlines=False)}", file=sys.stderr)
