"""Optimizers around an optimizer, named ``wrapper(inner)``: ``lookahead(adam)``, ``schedule_free(sgd)``.

A wrapper is one of optax's transformations that takes another optimizer (``optax.lookahead``,
``optax.contrib.schedule_free``, ``optax.contrib.mechanize``, ``optax.MultiSteps``) or follows one
(``optax.contrib.reduce_on_plateau``, chained after it). ``compose(wrapper, inner)`` makes one
``Optimizer`` of the pair: its numbers are the inner optimizer's and the wrapper's, each named with
its part (``adam.b1``, ``lookahead.slow_step_size``; the learning rate is the inner one's), all
injected into the state, so any of them is a per-trial number of one compiled program; its
evaluation point is the wrapper's own (schedule-free's x, lookahead's slow weights) or, where the
wrapper keeps none, the inner optimizer's. Wrappers nest (``lookahead(schedule_free(sgd))``).

``sam`` (two gradients a step) and ``dpsgd`` (per-example gradients) are refused in ``catalogue``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import optax
import optax.contrib

from dnnbench.errors import InputError
from dnnbench.optim.definition import NUMBER, STATIC, Optimizer, Param


class SlowWeights(NamedTuple):
    """``lookahead``'s state: optax's own, and the slow weights optax keeps in the parameters."""

    lookahead: optax.LookaheadState
    slow: Any


def _with_extra_args(tx: Any, extra: Mapping[str, Any]) -> Any:
    """``tx`` as a plain transformation whose update is given ``extra`` (optax's lookahead passes
    its fast optimizer the gradients, state and parameters only)."""
    if not extra:
        return tx
    full = optax.with_extra_args_support(tx)
    return optax.GradientTransformation(
        tx.init, lambda updates, state, params=None: full.update(updates, state, params, **extra)
    )


def _lookahead(inner: Any, sync_period: int, slow_step_size: float) -> Any:
    """``optax.lookahead`` over dnnbench's one set of parameters: the fast weights are the
    parameters, the slow ones live in the state (optax keeps both in a ``LookaheadParams``)."""

    def init(params: Any) -> SlowWeights:
        pair = optax.LookaheadParams(fast=params, slow=params)
        return SlowWeights(optax.lookahead(inner, sync_period, slow_step_size).init(pair), params)

    def update(updates: Any, state: SlowWeights, params: Any = None, **extra: Any) -> tuple[Any, SlowWeights]:
        tx = optax.lookahead(_with_extra_args(inner, extra), sync_period, slow_step_size)
        pair = optax.LookaheadParams(fast=params, slow=state.slow)
        steps, lookahead = tx.update(updates, state.lookahead, pair)
        return steps.fast, SlowWeights(lookahead, optax.apply_updates(state.slow, steps.slow))

    return optax.GradientTransformationExtraArgs(init, update)


def _schedule_free(inner: Any, learning_rate: float, b1: float, weight_lr_power: float) -> Any:
    return optax.contrib.schedule_free(inner, learning_rate, b1=b1, weight_lr_power=weight_lr_power)


def _mechanize(inner: Any, weight_decay: float, eps: float, s_init: float, num_betas: int) -> Any:
    return optax.contrib.mechanize(inner, weight_decay=weight_decay, eps=eps, s_init=s_init, num_betas=num_betas)


def _multi_steps(inner: Any, every_k_schedule: int, use_grad_mean: bool) -> Any:
    steps = optax.MultiSteps(inner, every_k_schedule, use_grad_mean=use_grad_mean)
    # optax returns a plain GradientTransformation, whose extra arguments inject_hyperparams would drop
    return optax.GradientTransformationExtraArgs(steps.init, steps.update)


def _reduce_on_plateau(
    inner: Any,
    factor: float,
    patience: int,
    rtol: float,
    atol: float,
    cooldown: int,
    accumulation_size: int,
    min_scale: float,
) -> Any:
    plateau = optax.contrib.reduce_on_plateau(
        factor=factor,
        patience=patience,
        rtol=rtol,
        atol=atol,
        cooldown=cooldown,
        accumulation_size=accumulation_size,
        min_scale=min_scale,
    )
    return optax.chain(inner, plateau)


def _schedule_free_eval(state: Any, params: Any) -> Any:
    return optax.contrib.schedule_free_eval_params(state, params)


@dataclass(frozen=True)
class Wrapper:
    """One wrapper: how to build it around an injected inner transformation, its settings, and
    where the inner optimizer's state and the evaluation point are in its state."""

    name: str
    make: Callable[..., Any]  # (inner, [learning_rate,] **settings) -> transformation
    params: tuple[Param, ...]
    rule: str
    takes_lr: bool = False  # make takes the (inner optimizer's) learning rate too
    default_lr: float | None = None  # the learning rate its authors give the inner optimizer
    lr_source: str = ""  # where that learning rate comes from
    #: the inner optimizer's numbers as the wrapper's authors set them (schedule-free: no momentum)
    inner_defaults: Mapping[str, float] = field(default_factory=dict)
    inner_state: Callable[[Any], Any] | None = None  # the wrapper's state -> the inner optimizer's
    eval_params: Callable[[Any, Any], Any] | None = None  # its own evaluation point (its state, params)


def _required(name: str, kind: str, type_: type) -> Param:
    return Param(name, kind, inspect.Parameter.empty, type_)


WRAPPERS: dict[str, Wrapper] = {
    w.name: w
    for w in (
        Wrapper(
            "lookahead",
            _lookahead,
            (Param("sync_period", STATIC, 5, int), Param("slow_step_size", NUMBER, 0.5, float)),
            "optax.lookahead: k fast steps, then slow += slow_step_size * (fast - slow) and fast = slow; "
            "evaluated at the slow weights (Zhang et al. 2019: k = 5, alpha = 0.5)",
            inner_state=lambda s: s.lookahead.fast_state,
            eval_params=lambda s, params: s.slow,
        ),
        Wrapper(
            "schedule_free",
            _schedule_free,
            (Param("b1", NUMBER, 0.9, float), Param("weight_lr_power", NUMBER, 2.0, float)),
            "optax.contrib.schedule_free: gradients at y = (1-b1) z + b1 x, the inner step moves z, x averages z; "
            "evaluated at x (Defazio et al. 2024); the inner optimizer's momentum (b1, momentum) defaults to 0",
            takes_lr=True,
            inner_defaults={"b1": 0.0, "momentum": 0.0},
            inner_state=lambda s: s.base_optimizer_state,
            eval_params=_schedule_free_eval,
        ),
        Wrapper(
            "mechanize",
            _mechanize,
            (
                Param("weight_decay", NUMBER, 1e-2, float),
                Param("eps", NUMBER, 1e-8, float),
                Param("s_init", NUMBER, 1e-6, float),
                Param("num_betas", STATIC, 6, int),
            ),
            "optax.contrib.mechanize: learns the scale of the inner optimizer's updates (Cutkosky et al. 2023); "
            "the inner learning rate defaults to 1",
            default_lr=1.0,
            lr_source="optax.contrib.mechanize docstring: the base learning rate set to 1.0, Mechanic learns the scale",
            inner_state=lambda s: s.base_optimizer_state,
        ),
        Wrapper(
            "multi_steps",
            _multi_steps,
            (_required("every_k_schedule", STATIC, int), Param("use_grad_mean", STATIC, True, bool)),
            "optax.MultiSteps: averages the gradients of every_k_schedule minibatches, then one inner step "
            "(gradient accumulation; no default: --hp multi_steps.every_k_schedule=K)",
            inner_state=lambda s: s.inner_opt_state,
        ),
        Wrapper(
            "reduce_on_plateau",
            _reduce_on_plateau,
            (
                Param("factor", STATIC, 0.1, float),
                Param("patience", STATIC, 10, int),
                Param("rtol", STATIC, 1e-4, float),
                Param("atol", STATIC, 0.0, float),
                Param("cooldown", STATIC, 0, int),
                Param("accumulation_size", STATIC, 1, int),
                Param("min_scale", NUMBER, 0.0, float),
            ),
            "optax.contrib.reduce_on_plateau after the inner step: scales it by factor when the mean minibatch "
            "loss of accumulation_size steps has not improved for patience of them",
            inner_state=lambda s: s[0],
        ),
    )
}

#: Catalogue optimizers that keep an evaluation point, by qualified name: (the factory's own state, params) -> params.
OPTAX_EVAL_PARAMS: dict[str, Callable[[Any, Any], Any]] = {
    "optax.contrib.schedule_free_sgd": _schedule_free_eval,
    "optax.contrib.schedule_free_adamw": _schedule_free_eval,
    "optax.contrib.schedule_free": _schedule_free_eval,
}
#: Names that wrap an optimizer, as optax spells them, and the wrapper each is.
OPTAX_NAMES = {
    "lookahead": "lookahead",
    "optax.lookahead": "lookahead",
    "schedule_free": "schedule_free",
    "optax.contrib.schedule_free": "schedule_free",
    "mechanize": "mechanize",
    "optax.contrib.mechanize": "mechanize",
    "multi_steps": "multi_steps",
    "MultiSteps": "multi_steps",
    "optax.MultiSteps": "multi_steps",
    "reduce_on_plateau": "reduce_on_plateau",
    "optax.contrib.reduce_on_plateau": "reduce_on_plateau",
}

_SPEC = re.compile(r"(?P<wrapper>[A-Za-z_]\w*)\((?P<inner>.+)\)")


def split_spec(spec: str) -> tuple[str, str] | None:
    """``lookahead(adam)`` -> ``("lookahead", "adam")``; None for a spec that is not a composition."""
    match = _SPEC.fullmatch(spec)
    return (match["wrapper"], match["inner"].strip()) if match else None


def wrapper(name: str, spec: str) -> Wrapper:
    """The wrapper ``name`` of ``spec``; ``InputError`` listing the wrappers when there is none."""
    if name not in WRAPPERS:
        raise InputError(
            f"optimizer {spec!r}: {name!r} is not a wrapper; wrappers: {', '.join(WRAPPERS)} "
            "(e.g. lookahead(adam), schedule_free(sgd))"
        )
    return WRAPPERS[name]


def bare(spec: str) -> InputError | None:
    """The error for a wrapper named without an optimizer inside (``lookahead``, ``optax.contrib.schedule_free``)."""
    name = OPTAX_NAMES.get(spec)
    if name is None:
        return None
    return InputError(
        f"{spec} wraps another optimizer: name the pair as {name}(<optimizer>), e.g. {name}(adam); "
        f"its settings are --hp {name}.<name>=<value>"
    )


def compose(spec: str, w: Wrapper, inner: Optimizer) -> Optimizer:
    """The ``Optimizer`` of ``w`` around ``inner``: one set of named numbers, one transformation."""
    own_names = {f"{w.name}.{p.name}": p.name for p in w.params}
    nested = inner.kind == "composite"
    if any(name in own_names for name in (p.name for p in inner.params)):
        raise InputError(f"optimizer {spec!r} names the wrapper {w.name} twice")
    prefix = "" if nested else f"{inner.spec}."

    def qualified(p: Param) -> Param:
        default = p.default
        if not nested and p.kind == NUMBER and p.name in w.inner_defaults:
            default = w.inner_defaults[p.name]
        return dataclasses.replace(p, name=prefix + p.name, default=default)

    params = tuple(dataclasses.replace(p, name=f"{w.name}.{p.name}") for p in w.params) + tuple(
        qualified(p) for p in inner.params
    )

    def split(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        own = {own_names[k]: v for k, v in values.items() if k in own_names}
        rest = {k: v for k, v in values.items() if k not in own_names}
        inside = {k if k == "learning_rate" else k.removeprefix(prefix): v for k, v in rest.items()}
        if w.takes_lr:
            own["learning_rate"] = values["learning_rate"]
        return inside, own

    def factory(**values: Any) -> Any:
        inside, own = split(values)
        return w.make(inner.factory(**inside), **own)

    def build(values: Mapping[str, Any]) -> Any:
        inside, own = split(values)
        kinds = {p.name: p.kind for p in w.params}
        static = tuple(k for k in own if k != "learning_rate" and kinds[k] == STATIC)
        make = functools.partial(w.make, inner.transformation(inside))
        return optax.inject_hyperparams(make, static_args=static)(**own)

    def check(values: dict[str, Any]) -> None:
        if inner.check is not None:
            inner.check(split(values)[0])

    eval_params = None
    if w.eval_params is not None:
        own_eval = w.eval_params
        eval_params = lambda state, p: own_eval(state.inner_state, p)  # noqa: E731 -- the wrapper's, under inject
    elif inner.eval_params is not None and w.inner_state is not None:
        inner_eval, inner_state = inner.eval_params, w.inner_state
        eval_params = lambda state, p: inner_eval(inner_state(state.inner_state), p)  # noqa: E731

    default_lr = w.default_lr if w.default_lr is not None else inner.default_lr
    source = w.lr_source if w.default_lr is not None else inner.origin.get("default_lr_source")
    return Optimizer(
        spec=spec,
        kind="composite",
        factory=factory,
        params=params,
        default_lr=default_lr,
        lr_in_signature=w.default_lr is not None or inner.lr_in_signature,
        origin={
            "kind": "composite",
            "wrapper": w.name,
            "inner": {"spec": inner.spec, **inner.origin},
            "default_lr": default_lr,
            "default_lr_source": source,
        },
        rule=w.rule,
        check=check if inner.check is not None else None,
        eval_params=eval_params,
        build=build,
    )
