"""Reading results files: one line at a time, every row checked against the file format.

A results file (``rows.SCHEMA``) is a header line, then trial lines and maybe a summary line.
Nothing in it is trusted: each line is strict JSON (no ``NaN`` or ``Infinity``: dnnbench writes
null), at most ``MAX_LINE`` long and ``MAX_DEPTH`` tables or arrays deep, and is validated by the
pydantic model of its type -- a header of a schema this dnnbench reads, a trial with a known
status, accuracies in [0, 1], losses >= 0, finite numbers, whole epochs. Anything else is one
error naming ``file:line`` and what is wrong. Lines are read one by one, so a huge or endless
input (a sparse file, a device) costs one line of memory before it is refused, and a path that is
not a regular file (a directory, a FIFO, a device) is named as what it is, never opened to wait.

The one rule every reader shares: a torn LAST line (no newline after it and not JSON: a run killed
or a disk full mid-write) is skipped with a warning; a bad line anywhere else is an error.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import NotRequired, TypedDict

from dnnbench.errors import InputError, warn
from dnnbench.results.metrics import SCHEMA, STATUSES

#: The longest line a results file may hold. A row of 10,000 epochs is a few MB; a longer line is
#: not one dnnbench wrote (and reading it whole would cost its size in memory).
MAX_LINE = 64 * 2**20
#: The deepest nesting of tables and arrays in a row (or a suite file): dnnbench writes at most 7
#: (a tune suite's search space in the header). Deeper is refused, before any recursive code sees it.
MAX_DEPTH = 32

# The row types as pydantic validates them. Strict: 1 is an integer and a number, 0.5 a number, true
# neither, "0.5" not a number; unknown keys (tags) are allowed.
_STRICT = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
Number = float | int | None
Series = list[float | int | None | list[float | int | None]]  # per epoch a number (per layer for grad_norm)
Epoch = Annotated[int, Field(ge=1)]


@with_config(_STRICT)
class HeaderRow(TypedDict):
    type: Literal["header"]
    schema: str
    environment: NotRequired[dict[str, Any] | None]
    command: NotRequired[list[str] | None]
    config: NotRequired[dict[str, Any] | None]
    data: NotRequired[dict[str, Any] | None]


@with_config(_STRICT)
class TrialRow(TypedDict):
    type: Literal["trial"]
    id: Annotated[str, Field(min_length=1)]
    optimizer: str
    status: Literal[STATUSES]  # type: ignore[valid-type]
    seed: NotRequired[int | None]
    hyperparams: NotRequired[dict[str, Any] | None]
    config: NotRequired[dict[str, Any] | None]
    metrics: NotRequired[dict[str, Number] | None]
    best_epoch: NotRequired[Annotated[int, Field(ge=0)] | None]  # 0: an errored trial ran no epoch
    stopped_epoch: NotRequired[Epoch | None]
    diverged_epoch: NotRequired[Epoch | None]
    history: NotRequired[dict[str, Series] | None]
    timing: NotRequired[dict[str, Number] | None]
    diagnosis: NotRequired[dict[str, Any] | None]


@with_config(_STRICT)
class SummaryRow(TypedDict):
    type: Literal["summary"]


ROW = TypeAdapter(Annotated[Union[HeaderRow, TrialRow, SummaryRow], Field(discriminator="type")])  # noqa: UP007
#: The keys whose values are typed above: nothing in them can nest deeper than their type.
_TYPED = frozenset({"type", "id", "optimizer", "status", "seed", "metrics", "history", "timing"})


def _impossible(row: dict[str, Any]) -> str | None:
    """What no trial can have: an accuracy outside [0, 1], a negative loss, or a list where a
    number per epoch belongs (None: nothing)."""
    for field in ("metrics", "history"):
        for key, values in (row.get(field) or {}).items():
            accuracy = key.endswith("_acc")
            if not (accuracy or key.endswith("_loss")) or values is None:
                continue
            try:
                low, high = _bounds((values,) if field == "metrics" else values)
            except TypeError:
                return f"{field}.{key}: a list where a number per epoch belongs"
            if low is None:
                continue
            if accuracy and not 0 <= low <= high <= 1:
                return f"{field}.{key} {low if low < 0 else high!r} is not an accuracy (in [0, 1])"
            if not accuracy and low < 0:
                return f"{field}.{key} {low!r} is not a loss (>= 0)"
    return None


def _bounds(values: Any) -> tuple[Any, Any]:
    """The smallest and largest number of ``values`` (nulls aside; (None, None) if none);
    ``TypeError`` if one is a list."""
    try:
        low, high = min(values), max(values)
    except (TypeError, ValueError):  # a null (a diverged epoch) among them, or no value at all
        low = high = None
    if low is None or high is None or type(low) is list or type(high) is list:
        numbers = [v for v in values if v is not None]
        if any(type(v) is list for v in numbers):
            raise TypeError("a list")
        return (min(numbers), max(numbers)) if numbers else (None, None)
    return low, high


@dataclass
class Contents:
    """A results file as read: its header, its trial rows with their line numbers, and whether it
    is intact (no torn last line and no summary line: ``--resume`` rewrites such a file)."""

    header: dict[str, Any]
    trials: list[tuple[int, dict[str, Any]]]
    intact: bool


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (parsed JSON or TOML) nests dicts and lists more than ``limit`` deep.
    Iterative: any depth is measured without recursion."""
    if type(value) is not dict and type(value) is not list:
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if type(item) is dict else item:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


def kind_of(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    for test, words in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return words
    return None if stat.S_ISREG(mode) else "not a regular file"


class _Constant(ValueError):
    pass


def _no_constant(name: str) -> float:
    raise _Constant(name)


_MEMBER = re.compile(r"(float|int|none|str|bool|list|dict)(\[.*)?")
_NAMES = {"id": "an id", "status": "a status", "optimizer": "an optimizer", "schema": "a schema"}
_SHORT = reprlib.Repr()  # a value in an error: short (keyword arguments need Python 3.12)
_SHORT.maxstring = _SHORT.maxother = 40


def _problem(exc: ValidationError) -> str:
    """The first validation error of a row in words."""
    error = exc.errors()[0]
    kind, *loc = error["loc"] or ("row",)
    # a union's member ("float", "list[...]") is not a key of the row
    where = ".".join(str(part) for part in loc if not _MEMBER.fullmatch(str(part)))
    if error["type"] in ("union_tag_invalid", "union_tag_not_found", "model_attributes_type", "dict_type"):
        return "not a dnnbench row (no type header/trial/summary)"
    if error["type"] == "missing":
        return f"a {kind} row without {_NAMES.get(where, repr(where))}"
    if error["type"] == "literal_error" and where == "status":
        return f"status {_SHORT.repr(error['input'])} is not one of {', '.join(STATUSES)}"
    return f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}, got {_SHORT.repr(error['input'])}"


def read(path: Path, *, error: type[InputError], prefix: str, missing: str) -> Contents:
    """Read and validate results file ``path``; ``error(prefix + ...)`` for anything wrong with it."""

    def fail(what: str) -> InputError:
        return error(f"{prefix}{path}{what}")

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens without waiting for a writer
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        link = os.path.islink(path)
        raise error(f"{prefix}{path} is a symbolic link to a missing file" if link else missing) from None
    except OSError as exc:
        raise fail(f": cannot read ({exc.strerror or exc})") from None
    kind = kind_of(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise fail(f" is {kind}, not a results file")
    with open(fd, "rb") as stream:
        return _rows(stream.readline, path, fail)


def _rows(readline: Callable[[int], bytes], path: Path, fail: Callable[[str], InputError]) -> Contents:
    header: tuple[int, dict[str, Any]] | None = None
    trials: list[tuple[int, dict[str, Any]]] = []
    intact = True
    number = 0
    while True:
        raw = readline(MAX_LINE + 1)
        if not raw:
            break
        number += 1
        if len(raw) > MAX_LINE:
            raise fail(f":{number}: a line longer than {MAX_LINE // 2**20} MiB: not a dnnbench row")
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if not raw.endswith(b"\n"):  # the last line, cut short
                warn(f"{path}:{number}: torn last line (a run stopped mid-write) skipped")
                intact = False
                break
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"not valid JSON ({exc.msg})"
            raise fail(f":{number}: {reason}") from None
        except _Constant as exc:
            raise fail(f":{number}: {exc} is not JSON (dnnbench writes a missing number as null)") from None
        except RecursionError:
            raise fail(f":{number}: nested more than {MAX_DEPTH} tables or arrays deep") from None
        if not isinstance(row, dict):
            raise fail(f":{number}: not a dnnbench row (no type header/trial/summary)")
        try:  # validated, and kept as json.loads read it (its keys in the file's order)
            ROW.validate_python(row)
        except ValidationError as exc:
            raise fail(f":{number}: {_problem(exc)}") from None
        kind = row["type"]
        if too_deep({k: v for k, v in row.items() if k not in _TYPED}):
            raise fail(f":{number}: nested more than {MAX_DEPTH} tables or arrays deep")
        problem = _impossible(row) if kind == "trial" else None
        if problem:
            raise fail(f":{number}: {problem}")
        if kind == "header":
            if header is not None:
                raise fail(
                    f":{number}: a second header line (the first is line {header[0]}); "
                    "one results file per run: report the files one by one"
                )
            if row["schema"] != SCHEMA:
                raise fail(
                    f":{number}: schema {_SHORT.repr(row['schema'])}: not a {SCHEMA} results file, and this "
                    f"dnnbench reads {SCHEMA} only (written by another version?)"
                )
            header = (number, row)
        elif header is None:
            raise fail(f":{number}: a {kind} row before the header line: not a {SCHEMA} results file")
        elif kind == "summary":
            intact = False  # derived from the trials above it: stale once more come
        else:
            trials.append((number, row))
    if header is None:
        raise fail(f": no {SCHEMA} header line" + (": the file is empty" if number == 0 else ": not a results file"))
    return Contents(header[1], trials, intact)
