"""Optimizers that are not dnnbench's own: a factory in a file, in an importable module, or a plugin.

- ``path/to/my_opt.py:make_lion``: the file is loaded as a module of its own (not imported by
  name, so it need not be on ``sys.path``), its SHA-256 recorded;
- ``my_package.optim:make_lion``: ``importlib.import_module``, its distribution and version
  recorded where it belongs to one;
- a plugin: a name registered by an installed package under the entry-point group
  ``dnnbench.optimizers`` (``lion2 = "my_package.optim:make_lion"`` in its ``pyproject.toml``).

Every failure -- no such file, a syntax or import error inside it (file and line named), no such
function (the file's functions listed) -- is one ``InputError``. User code that calls ``sys.exit``
or raises ``KeyboardInterrupt`` (no Ctrl-C came) is an error of that code, not a request to stop
dnnbench: ``UserCodeExit`` (before training, one ``InputError`` line; while training, the program's
trials become ``error`` rows), wherever it runs -- at import, in the factory, in ``init``/``update``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.metadata as metadata
import importlib.util
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from dnnbench.errors import InputError, is_stop

ENTRY_POINT_GROUP = "dnnbench.optimizers"
_LISTED = 12  # functions named when a factory is not found


class UserCodeExit(RuntimeError):
    """User code raised ``SystemExit``, a ``KeyboardInterrupt`` no signal caused, or another
    ``BaseException`` that is not an ``Exception``: a failure of that code (an ``Exception``, so
    that every backend makes error rows of it), never dnnbench's own exit."""


def as_error(exc: BaseException) -> BaseException:
    """``exc`` as an exception of user code: ``UserCodeExit`` for a ``BaseException`` that is not
    an ``Exception`` (``SystemExit``, ``KeyboardInterrupt`` without Ctrl-C, ``GeneratorExit``),
    ``exc`` itself otherwise -- and a real stop (a signal arrived: ``errors.is_stop``) stays one."""
    if isinstance(exc, Exception) or is_stop(exc):
        return exc
    if isinstance(exc, SystemExit):
        return UserCodeExit(f"sys.exit({exc.code!r}) was called" if exc.code is not None else "sys.exit() was called")
    if isinstance(exc, KeyboardInterrupt):
        return UserCodeExit("KeyboardInterrupt was raised by the code itself (no Ctrl-C came)")
    return UserCodeExit(f"{type(exc).__name__} was raised: {_first_line(exc)}")


def guarded(factory: Callable[..., Any]) -> Callable[..., Any]:
    """``factory`` (a user's) whose calls, and the ``init`` / ``update`` of the transformation it
    returns, raise ``UserCodeExit`` instead of ``SystemExit`` and the like (``as_error``)."""
    import optax

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            error = as_error(exc)
            if error is exc:
                raise
            raise error from None

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> Any:
        tx = call(factory, *args, **kwargs)
        if isinstance(tx, optax.GradientTransformation):  # a NamedTuple: same type, guarded functions
            init, update = tx.init, tx.update
            tx = tx._replace(
                init=functools.wraps(init)(lambda *a, **k: call(init, *a, **k)),
                update=functools.wraps(update)(lambda *a, **k: call(update, *a, **k)),
            )
        return tx

    return build


def is_file_spec(spec: str) -> bool:
    """``x.py:f`` or ``dir/x:f``: a file; ``pkg.mod:f``: a module."""
    where, sep, _ = spec.rpartition(":")
    return bool(sep) and (where.endswith(".py") or "/" in where or "\\" in where)


def normalized(spec: str) -> str:
    """One spelling per file spec: ``./opt/x.py:f``, ``opt//x.py:f`` and ``opt/x.py:f`` name one
    file, so they give one trial id (the path is normalised, never made absolute: ids do not depend
    on where the command runs). Other specs are returned as they are."""
    if not isinstance(spec, str) or not is_file_spec(spec.strip()):
        return spec
    where, _, attr = spec.strip().rpartition(":")
    return f"{os.path.normpath(where)}:{attr}"


def is_module_spec(spec: str) -> bool:
    where, sep, attr = spec.rpartition(":")
    return bool(sep) and not is_file_spec(spec) and bool(re.fullmatch(r"[A-Za-z_][\w.]*", where))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_file(spec: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The factory named by ``path.py:function`` and the origin a results row records."""
    where, _, attr = spec.rpartition(":")
    path = Path(where).expanduser()
    if not attr:
        raise InputError(f"optimizer {spec!r}: name the factory after the colon, e.g. {where}:make_optimizer")
    if not path.is_file():
        raise InputError(
            f"optimizer file {where} not found" if not path.exists() else f"optimizer file {where} is not a file"
        )
    resolved = path.resolve()
    name = "dnnbench_user_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    try:
        module_spec = importlib.util.spec_from_file_location(name, resolved)
        if module_spec is None or module_spec.loader is None:
            raise InputError(f"optimizer file {where} cannot be loaded as Python")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up here
        module_spec.loader.exec_module(module)
    except InputError:
        raise
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise InputError(f"{where}:{exc.lineno}: syntax error in the optimizer file: {exc.msg}") from None
    except BaseException as exc:  # the user's code: name the line that raised (sys.exit too)
        sys.modules.pop(name, None)
        if is_stop(exc):
            raise
        line = _line_in(exc, resolved)
        raise InputError(
            f"{where}{f':{line}' if line else ''}: loading the optimizer file raised {_described(exc)}"
        ) from None
    factory = _attribute(module, attr, f"optimizer file {where}")
    origin = {"kind": "file", "path": str(resolved), "factory": attr, "sha256": sha256(resolved)}
    return factory, origin


def load_module(spec: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The factory named by ``package.module:function`` and its origin."""
    where, _, attr = spec.rpartition(":")
    try:
        module = importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and where.startswith(exc.name):
            raise InputError(
                f"optimizer {spec!r}: no module named {exc.name!r} (is it installed, or on "
                "PYTHONPATH? a file is named as path/to/file.py:function)"
            ) from None
        raise InputError(f"optimizer module {where}: importing it raised ModuleNotFoundError: {exc}") from None
    except SyntaxError as exc:
        raise InputError(f"{exc.filename}:{exc.lineno}: syntax error in optimizer module {where}: {exc.msg}") from None
    except BaseException as exc:  # the user's code (sys.exit too)
        if is_stop(exc):
            raise
        raise InputError(f"optimizer module {where}: importing it raised {_described(exc)}") from None
    factory = _attribute(module, attr, f"optimizer module {where}")
    return factory, {"kind": "module", "module": where, "factory": attr, **_distribution(where)}


def plugins() -> dict[str, metadata.EntryPoint]:
    """The optimizers installed packages register under ``dnnbench.optimizers``."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(name: str) -> tuple[Callable[..., Any], dict[str, Any]] | None:
    """The factory of plugin ``name`` and its origin, or None when no plugin has that name."""
    ep = plugins().get(name)
    if ep is None:
        return None
    try:
        factory = ep.load()
    except BaseException as exc:  # the user's code (sys.exit too)
        if is_stop(exc):
            raise
        raise InputError(f"optimizer plugin {name!r} ({ep.value}): loading it raised {_described(exc)}") from None
    if not callable(factory):
        raise InputError(f"optimizer plugin {name!r} ({ep.value}) is not a function")
    dist = ep.dist
    return factory, {
        "kind": "plugin",
        "entry_point": f"{name} = {ep.value}",
        "distribution": dist.name if dist else None,
        "version": dist.version if dist else None,
    }


def _attribute(module: ModuleType, attr: str, where: str) -> Callable[..., Any]:
    factory = getattr(module, attr, None)
    if factory is None:
        # every public function it holds: its own, and those a package re-exports (optax's are all
        # defined in optax._src); the closest names first, then the first few
        functions = sorted(n for n, v in vars(module).items() if not n.startswith("_") and inspect.isroutine(v))
        if not functions:
            raise InputError(f"{where} has no function {attr!r}; it has no public functions")
        close = difflib.get_close_matches(attr, functions, n=3)
        shown = list(dict.fromkeys([*close, *functions]))[:_LISTED]
        more = f", ... ({len(functions)} in all)" if len(functions) > len(shown) else ""
        hint = (
            f" (optax's optimizers are named optax.NAME, e.g. optax.{close[0] if close else 'adam'})"
            if (module.__name__.split(".")[0] == "optax")
            else ""
        )
        raise InputError(f"{where} has no function {attr!r}; its functions: {', '.join(shown)}{more}{hint}")
    if not callable(factory):
        raise InputError(f"{where}: {attr!r} is a {type(factory).__name__}, not a function")
    return factory


def _distribution(module: str) -> dict[str, Any]:
    top = module.split(".")[0]
    names = metadata.packages_distributions().get(top, [])
    if not names:
        return {"distribution": None, "version": None}
    return {"distribution": names[0], "version": metadata.version(names[0])}


def _line_in(exc: BaseException, path: Path) -> int | None:
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if Path(frame.filename) == path]
    return lines[-1] if lines else None


def _described(exc: BaseException) -> str:
    error = as_error(exc)
    return f"{type(error).__name__}: {_first_line(error)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
