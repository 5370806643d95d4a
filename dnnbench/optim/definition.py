"""What dnnbench knows of one optimizer, wherever it came from: a factory and its hyperparameters.

A factory is ``(learning_rate, **hyperparameters) -> optax.GradientTransformation``. Its
signature says what can be set: keyword parameters with a float default (or an int default
annotated ``float``) are *numbers* -- injected into the optimizer state with
``optax.inject_hyperparams``, so trials with different values share one compiled program; those
with a bool, int or str default are *static* (they change the program: trials differing in them
train apart); a ``None`` default is an optional static setting (unset unless given); a parameter
without a default must be given. Anything else (dtypes, masks, callables) keeps the factory's
default and cannot be set from dnnbench.

Two more things an optimizer may say about itself. Its *evaluation point*: an optimizer that
trains one sequence of weights and means another to be evaluated (schedule-free's x, lookahead's
slow weights) declares ``eval_params(state, params) -> params``, and every metric, the early-stopping
monitor and restore, and the trained model use it. Its *extra arguments*: an update that needs the
loss (optax's ``GradientTransformationExtraArgs``: ``value``, ``grad``, ``value_fn``, ``obj_fn``) is
given them by the training step (``extra_args``).
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
#: The extra arguments of optax's ``GradientTransformationExtraArgs`` protocol that the training
#: step gives an update that asks: the minibatch loss, its gradient, and the loss as a function of
#: the parameters (same batch, same dropout key); ``obj_fn`` is sophia's name for that function.
EXTRA_ARGS = ("value", "grad", "value_fn", "obj_fn")
#: Tried in turn where an update takes ``**extra_args`` (every ``optax.chain`` and wrapper), so its
#: signature cannot say what it reads: none; the loss protocol (polyak_sgd, momo, reduce_on_plateau,
#: lbfgs -- whose line search refuses arguments its loss function does not take); all of them.
_EXTRA_TRIES: tuple[tuple[str, ...], ...] = ((), ("value", "grad", "value_fn"), EXTRA_ARGS)
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
    #: ``(state, params) -> params``: where the model is evaluated, ``state`` being the state of
    #: ``transformation(values)``; None: at the trained parameters themselves.
    eval_params: Callable[[Any, Any], Any] | None = None
    #: ``values -> transformation`` for optimizers that are not one injected factory (``wrappers``).
    build: Callable[[Mapping[str, Any]], Any] | None = None
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

        if self.build is not None:
            return self.build(values)
        names = inspect.signature(self.factory).parameters
        static_args = tuple(n for n in names if n not in self.numbers(values))
        return optax.inject_hyperparams(self.factory, static_args=static_args)(**values)

    def evaluation_params(self, state: Any, params: Any) -> Any:
        """The parameters the model is evaluated at: ``eval_params(state, params)`` where the
        optimizer declares an evaluation point, else ``params``."""
        return params if self.eval_params is None else self.eval_params(state, params)

    def extra_args(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        """The names in ``EXTRA_ARGS`` that ``transformation(values).update`` takes: read from the
        update's signature where it names them, else found by tracing one update (once per static
        setting, when the values are validated)."""
        self._validate(dict(values))
        return self._checked[self._static_key(values)]

    def _static_key(self, values: Mapping[str, Any]) -> tuple:
        return ("static", tuple(sorted((k, repr(v)) for k, v in self.static(values).items())))

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
        static_key = self._static_key(values)
        if static_key not in self._checked:
            import dnnbench.optim.work as work

            work.check_static_ints(self, values)  # before a loop count of 10^8 is traced or trained
            self._checked[static_key] = _trace_update(self, values, _named_extra_args(tx))
        self._checked[key] = True


def _named_extra_args(tx: Any) -> tuple[str, ...] | None:
    """The ``EXTRA_ARGS`` that ``tx.update``'s signature names; None where it takes ``**extra_args``
    (a chain, a wrapper: the signature cannot say); none for a plain ``GradientTransformation``."""
    import optax

    if not isinstance(tx, optax.GradientTransformationExtraArgs):
        return ()
    try:
        params = inspect.signature(tx.update).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(name for name in EXTRA_ARGS if name in params)


def _trace_update(opt: Optimizer, values: dict[str, Any], named: tuple[str, ...] | None) -> tuple[str, ...]:
    """Trace ``init`` and one ``update`` on a tiny model (nothing runs) and return the extra
    arguments the update takes: ``named`` where its signature names them, else the first of
    ``_EXTRA_TRIES`` it traces with."""
    import jax
    import jax.numpy as jnp

    tx = opt.transformation(values)
    params = {"w": jax.ShapeDtypeStruct((3, 4), jnp.float32), "b": jax.ShapeDtypeStruct((4,), jnp.float32)}

    def loss(p: Any) -> jax.Array:
        return jnp.sum(jnp.stack([jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(p)]))

    def update(p: Any, state: Any, extras: tuple[str, ...]) -> Any:
        given = {"value": loss(p), "grad": p, "value_fn": loss, "obj_fn": loss}
        return tx.update(p, state, p, **{name: given[name] for name in extras})

    failures: list[Exception] = []
    with warnings.catch_warnings():  # optax's deprecation notices are not the user's concern here
        warnings.simplefilter("ignore")
        try:
            state = jax.eval_shape(tx.init, params)
        except Exception as exc:  # noqa: BLE001 -- e.g. Python control flow on a traced hyperparameter
            raise InputError(
                f"optimizer {opt.spec!r} cannot run in a compiled step: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        for extras in (named,) if named is not None else _EXTRA_TRIES:
            try:
                jax.eval_shape(lambda p, s, extras=extras: update(p, s, extras), params, state)
                return extras
            except Exception as exc:  # noqa: BLE001 -- reported below if no try traces
                failures.append(exc)
    # the plain update's failure says what is wrong, unless it only missed an argument it was not given
    failure = failures[-1] if len(failures) > 1 and _misses_an_argument(failures[0]) else failures[0]
    if isinstance(failure, TypeError):
        raise InputError(f"optimizer {opt.spec!r} cannot run: TypeError: {_one_line(failure)}") from None
    raise InputError(
        f"optimizer {opt.spec!r} cannot run in a compiled step: {type(failure).__name__}: {_one_line(failure)}"
    ) from None


def _misses_an_argument(exc: Exception) -> bool:
    text = str(exc)
    return bool(re.search(r"missing \d+ required", text)) or any(name in text for name in EXTRA_ARGS)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
