"""What dnnbench knows of one optimizer, wherever it came from: a factory and its hyperparameters.

A factory is ``(learning_rate, **hyperparameters) -> optax.GradientTransformation``. Its
signature says what can be set: keyword parameters with a float default (or an int default
annotated ``float``) are *numbers* -- injected into the optimizer state with
``optax.inject_hyperparams``, so trials with different values share one compiled program; those
with a bool, int or str default are *static* (they change the program: trials differing in them
train apart); a ``None`` default is an optional static setting (unset unless given); a parameter
without a default must be given. Anything else (dtypes, masks, callables) keeps the factory's
default and cannot be set from dnnbench.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnbench.errors import InputError

#: The learning rate used when a factory's signature gives none (said so by ``--list``).
FALLBACK_LR = 1e-3
NUMBER, STATIC = "number", "static"
_REQUIRED = inspect.Parameter.empty
_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_SUBNORMAL = float(np.finfo(np.float32).smallest_subnormal)


@dataclass(frozen=True)
class Param:
    """One settable hyperparameter of a factory: its name, whether it is a number or static, its
    default (``inspect.Parameter.empty`` when it has none) and the Python type of the default."""

    name: str
    kind: str
    default: Any
    type: type | None  # bool, int, float or str; None: an optional setting (default None) or no default

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def parse(self, value: Any, owner: str) -> Any:
        """``value`` (a typed value, or text from the command line) as this parameter's type."""
        text = value.strip() if isinstance(value, str) else None
        if self.kind == NUMBER or self.type is float:
            return as_number(value, f"{owner} {self.name}")
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if text is not None and text.lower() in ("true", "false", "1", "0", "yes", "no"):
                return text.lower() in ("true", "1", "yes")
            raise InputError(f"{owner} {self.name} must be true or false, got {value!r}")
        if self.type is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if text is not None and re.fullmatch(r"[+-]?\d+", text):
                return int(text)
            raise InputError(f"{owner} {self.name} must be an integer, got {value!r}")
        if self.type is str:
            return value if isinstance(value, str) else str(value)
        # untyped (default None or no default): a number when it reads as one, else the text
        if text is not None:
            if re.fullmatch(r"[+-]?\d+", text):
                return int(text)
            try:
                return as_number(text, f"{owner} {self.name}")
            except InputError:
                return {"true": True, "false": False, "none": None}.get(text.lower(), text)
        return value


def as_number(value: Any, what: str) -> float:
    """``value`` as a float that float32 (the device's type) holds: finite, and not so small that
    it becomes 0."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or abs(number) > _F32_MAX:
        raise InputError(f"{what} must be a finite float32 number (|x| <= {_F32_MAX:.4g}), got {value!r}")
    if number != 0.0 and abs(number) < _F32_SUBNORMAL:
        raise InputError(f"{what} {value!r} is 0 in float32; use 0 or a number >= {_F32_TINY:.4g}")
    return number


def signature_params(factory: Callable[..., Any], owner: str) -> tuple[tuple[Param, ...], float | None]:
    """The settable parameters of ``factory`` (``learning_rate`` aside) and its default learning
    rate (None when the signature has none)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{owner}: cannot read the factory's signature ({exc})") from None
    if "learning_rate" not in signature.parameters:
        names = ", ".join(signature.parameters) or "none"
        raise InputError(f"{owner}: the factory must take a learning_rate parameter (it takes: {names})")
    params: list[Param] = []
    default_lr: float | None = None
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name == "learning_rate":
            if isinstance(p.default, (int, float)) and not isinstance(p.default, bool) and p.default > 0:
                default_lr = float(p.default)
            continue
        annotation = str(p.annotation)
        # an int default is a number only where the annotation says float and not int (``wd: float = 0``);
        # ``ns_steps: ArrayLike = 5`` stays an int (a loop count)
        floaty = "float" in annotation and "int" not in annotation.replace("float", "")
        d = p.default
        if isinstance(d, bool):
            params.append(Param(p.name, STATIC, d, bool))
        elif isinstance(d, float) or (isinstance(d, int) and floaty):
            params.append(Param(p.name, NUMBER, float(d), float))
        elif isinstance(d, int):
            params.append(Param(p.name, STATIC, d, int))
        elif isinstance(d, str):
            params.append(Param(p.name, STATIC, d, str))
        elif d is None:
            params.append(Param(p.name, STATIC, None, None))
        elif d is _REQUIRED:
            params.append(Param(p.name, NUMBER if floaty else STATIC, _REQUIRED, float if floaty else None))
        # other defaults (dtypes, masks, functions) stay as the factory has them
    return tuple(params), default_lr


@dataclass(frozen=True, eq=False)
class Optimizer:
    """A resolved optimizer spec: the factory, its settable parameters and where it came from.

    ``spec`` is the text the user gave (``adam``, ``lion``, ``optax.adam``, ``opt.py:make``,
    ``pkg.mod:make``, a plugin name); ``origin`` is what a results row records about it.
    """

    spec: str
    kind: str  # builtin | optax | file | module | plugin
    factory: Callable[..., Any]
    params: tuple[Param, ...]
    default_lr: float
    lr_in_signature: bool
    origin: Mapping[str, Any]
    rule: str = ""
    check: Callable[[dict[str, Any]], None] | None = None  # range checks beyond the types
    _checked: dict = field(default_factory=dict, repr=False)

    @property
    def param(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    def numbers(self, values: Mapping[str, Any]) -> dict[str, float]:
        """The numeric hyperparameters of ``values`` (learning rate first): the vmapped arrays."""
        kinds = self.param
        return {k: v for k, v in values.items() if k == "learning_rate" or kinds[k].kind == NUMBER}

    def static(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The static settings of ``values``: they are part of the compiled program's structure."""
        kinds = self.param
        return {k: v for k, v in values.items() if k != "learning_rate" and kinds[k].kind == STATIC}

    def hyperparams(self, learning_rate: Any = None, **given: Any) -> dict[str, Any]:
        """Defaults overridden by ``given``, every value parsed and validated, learning rate first.

        Optional settings (default None) appear only when given. The factory is called once per
        distinct value set (and once traced), so a value it rejects is an ``InputError`` here,
        before anything trains.
        """
        kinds = self.param
        for key in given:
            if key not in kinds:
                valid = ", ".join(["learning_rate", *kinds]) if kinds else "learning_rate only"
                raise InputError(f"optimizer {self.spec!r} has no hyperparameter {key!r}; valid: {valid}")
        lr = self.default_lr if learning_rate is None else learning_rate
        lr = as_number(lr, f"{self.spec} learning rate")
        if not lr > 0:
            raise InputError(f"learning rate must be a positive finite number, got {lr!r} for {self.spec}")
        values: dict[str, Any] = {"learning_rate": lr}
        for p in self.params:
            if p.name in given:
                values[p.name] = p.parse(given[p.name], self.spec)
            elif p.required:
                raise InputError(
                    f"optimizer {self.spec!r} needs a value for {p.name!r} (its factory has no default "
                    f"for it): --hp {p.name}=..."
                )
            elif p.default is not None:
                values[p.name] = p.default
        if self.check is not None:
            self.check(values)
        self._validate(values)
        return values

    def transformation(self, values: Mapping[str, Any]) -> Any:
        """The injected transformation: numbers live in ``state.hyperparams`` (arrays), static
        settings are baked in. Its ``update`` runs for any numbers placed in the state."""
        import optax

        names = inspect.signature(self.factory).parameters
        static_args = tuple(n for n in names if n not in self.numbers(values))
        return optax.inject_hyperparams(self.factory, static_args=static_args)(**values)

    def _validate(self, values: dict[str, Any]) -> None:
        """Build once with plain numbers (the factory's own checks), and trace one update on a
        tiny model once per static setting (what cannot run is found before training)."""
        import optax

        key = tuple(sorted((k, repr(v)) for k, v in values.items()))
        if key in self._checked:
            return
        try:
            with warnings.catch_warnings():  # optax's deprecation notices are not the user's concern here
                warnings.simplefilter("ignore")
                tx = self.factory(**values)
        except Exception as exc:  # noqa: BLE001 -- the user's code: quote whatever it raised
            raise InputError(
                f"optimizer {self.spec!r}: the factory raised {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        if not isinstance(tx, optax.GradientTransformation):
            raise InputError(
                f"optimizer {self.spec!r}: the factory returned {type(tx).__name__}, not an "
                "optax.GradientTransformation (a pair of init/update functions)"
            )
        static_key = ("static", tuple(sorted((k, repr(v)) for k, v in self.static(values).items())))
        if static_key not in self._checked:
            from dnnbench.optim import work

            work.check_static_ints(self, values)  # before a loop count of 10^8 is traced or trained
            _trace_update(self, values)
            self._checked[static_key] = True
        self._checked[key] = True


def _trace_update(opt: Optimizer, values: dict[str, Any]) -> None:
    import jax
    import jax.numpy as jnp

    tx = opt.transformation(values)
    params = {"w": jax.ShapeDtypeStruct((3, 4), jnp.float32), "b": jax.ShapeDtypeStruct((4,), jnp.float32)}
    try:
        with warnings.catch_warnings():  # optax's deprecation notices are not the user's concern here
            warnings.simplefilter("ignore")
            state = jax.eval_shape(tx.init, params)
            jax.eval_shape(tx.update, params, state, params)
    except TypeError as exc:
        missing = re.search(r"missing \d+ required (?:keyword-only |positional )?arguments?: (.+)", str(exc))
        if missing:
            raise InputError(
                f"optimizer {opt.spec!r} needs {missing.group(1)} at update time; dnnbench's training "
                "step passes only the gradients, the state and the parameters"
            ) from None
        raise InputError(f"optimizer {opt.spec!r} cannot run: TypeError: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 -- e.g. Python control flow on a traced hyperparameter
        raise InputError(
            f"optimizer {opt.spec!r} cannot run in a compiled step: {type(exc).__name__}: {_one_line(exc)}"
        ) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
