"""Optimizers: any optimizer spec -> an optax ``GradientTransformation`` with its numbers in the state.

A spec is, in the order they are tried:

1. ``path/to/file.py:factory`` -- a function in a file (``user.load_file``);
2. ``package.module:factory`` -- a function in an importable module (``user.load_module``);
3. ``optax.<name>`` / ``optax.contrib.<name>`` -- optax's own, always (``catalogue``);
4. a built-in name (``sgd``, ``momentum``, ``nesterov``, ``adagrad``, ``rmsprop``, ``adam``,
   ``adamw``): the recipe's rules (``builtin``);
5. a plugin registered under the entry-point group ``dnnbench.optimizers``;
6. any other name: ``optax.<name>`` (``lion``, ``lamb``, ``nadam``, ``adafactor``, ...);

and ``wrapper(spec)`` -- any of these inside a wrapper (``lookahead(adam)``, ``schedule_free(sgd)``,
``mechanize(momentum)``, ``multi_steps(adam)``, ``reduce_on_plateau(adam)``; ``wrappers``), whose
numbers are named with their part (``--hp lookahead.sync_period=5``, ``--hp adam.b1=0.95``).

An optimizer may keep an *evaluation point* apart from the weights it trains (schedule-free's x,
lookahead's slow weights): the optax ones are known, and a factory declares its own as an
attribute, ``make.eval_params = optax.contrib.schedule_free_eval_params`` -- a function of the
state of the transformation the factory returns and the parameters. Every metric, early stopping
and the trained model use it. An update that needs the loss (``polyak_sgd``, ``momo``, ``sophia``,
``lbfgs``) is given it by the training step (``Optimizer.extra_args``).

Whatever the source, the engine sees the same thing: ``transformation(spec, static)`` -- the
factory wrapped in ``optax.inject_hyperparams`` -- whose state holds the numbers as arrays, so
one compiled program trains any values of them (vmapped). Schedules (``schedules``) scale the
update by a per-trial factor.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from dnnbench.errors import InputError
from dnnbench.train import threads

# Every path that trains imports this package before JAX computes anything: XLA starts here, with
# its CPU thread pools sized by ``dnnbench.train.threads`` (a trial's last bits depend on them).
threads.ensure()

from dnnbench.optim import builtin, catalogue, default_lrs, schedules, user, wrappers  # noqa: E402
from dnnbench.optim.builtin import DEFAULTS, NAMES, RECIPE, RULES  # noqa: E402
from dnnbench.optim.definition import (  # noqa: E402
    FALLBACK_LR,
    NUMBER,
    STATIC,
    Optimizer,
    Param,
    signature_params,
)
from dnnbench.optim.schedules import Schedule  # noqa: E402

__all__ = [
    "DEFAULTS",
    "FALLBACK_LR",
    "NAMES",
    "NUMBER",
    "RECIPE",
    "RULES",
    "STATIC",
    "Optimizer",
    "Param",
    "Schedule",
    "at_fallback",
    "build",
    "describe_spec",
    "every",
    "origin",
    "resolve",
    "resolve_spec",
    "schedules",
    "setting_keys",
    "split_setting",
    "transformation",
]


def resolve_spec(spec: str) -> Optimizer:
    """The ``Optimizer`` a spec names (cached per process: a file is read once per run)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"an optimizer must be named, got {spec!r}")
    return _resolve(spec.strip())


@functools.cache
def _resolve(spec: str) -> Optimizer:
    pair = wrappers.split_spec(spec)
    if pair is not None:
        name, inner = pair
        return wrappers.compose(spec, wrappers.wrapper(name, spec), resolve_spec(inner))
    bare = wrappers.bare(spec)
    if bare is not None:
        raise bare
    if user.is_file_spec(spec):
        return _from_factory(spec, "file", *user.load_file(spec))
    if user.is_module_spec(spec):
        return _from_factory(spec, "module", *user.load_module(spec))
    if spec.startswith("optax."):
        found = catalogue.lookup(spec)
        if found is None:
            raise InputError(
                f"optax {catalogue.version()} has no optimizer {spec.removeprefix('optax.')!r}; "
                "`dnnbench optimizers --list --all` lists them"
            )
        return _optax(spec, *found)
    if spec in builtin.FACTORIES:
        params = tuple(Param(k, NUMBER, v, float) for k, v in DEFAULTS[spec].items() if k != "learning_rate")
        return Optimizer(
            spec=spec,
            kind="builtin",
            factory=builtin.FACTORIES[spec],
            params=params,
            default_lr=DEFAULTS[spec]["learning_rate"],
            lr_in_signature=True,
            origin={"kind": "builtin"},
            rule=RULES[spec],
            check=functools.partial(builtin.check, spec),
        )
    plugin = user.load_plugin(spec)
    if plugin is not None:
        return _from_factory(spec, "plugin", *plugin)
    found = catalogue.lookup(spec)
    if found is None:
        plugins = sorted(user.plugins())
        raise InputError(
            f"unknown optimizer {spec!r}: not built in ({', '.join(NAMES)}), "
            + (f"not a plugin ({', '.join(plugins)}), " if plugins else "")
            + f"not in optax {catalogue.version()}; a file is named path/to/file.py:function, a module "
            "package.module:function (`dnnbench optimizers --list --all` lists optax's)"
        )
    return _optax(spec, *found)


def _optax(spec: str, factory: Any, qualified: str) -> Optimizer:
    origin = {"kind": "optax", "name": qualified, "version": catalogue.version()}
    return _from_factory(
        spec, "optax", factory, origin, default_lrs.lookup(qualified), wrappers.OPTAX_EVAL_PARAMS.get(qualified)
    )


def _from_factory(
    spec: str,
    kind: str,
    factory: Any,
    origin: dict[str, Any],
    documented: default_lrs.DefaultLr | None = None,
    eval_params: Any = None,
) -> Optimizer:
    """The signature's default learning rate, else the documented one (optax's, ``default_lrs``),
    else ``FALLBACK_LR``; the row's origin records which (``default_lr_source``). The evaluation
    point: ``eval_params``, else the factory's attribute of that name."""
    params, default_lr = signature_params(factory, f"optimizer {spec!r}")
    declared = eval_params if eval_params is not None else getattr(factory, "eval_params", None)
    if declared is not None and not callable(declared):
        raise InputError(
            f"optimizer {spec!r}: its eval_params must be a function (state, params) -> params, "
            f"got {type(declared).__name__}"
        )
    if default_lr is not None:
        lr, source = default_lr, "signature"
    elif documented is not None:
        lr, source = documented.value, documented.source
    else:
        lr, source = FALLBACK_LR, "fallback"
    doc = (getattr(factory, "__doc__", None) or "").strip()
    return Optimizer(
        spec=spec,
        kind=kind,
        factory=user.guarded(factory) if kind in ("file", "module", "plugin") else factory,  # sys.exit: an error
        params=params,
        default_lr=lr,
        lr_in_signature=default_lr is not None,
        origin={**origin, "default_lr": lr, "default_lr_source": source},
        rule=doc.splitlines()[0] if doc else "",
        eval_params=None if declared is None else functools.partial(_under_injection, declared),
    )


def _under_injection(eval_params: Any, state: Any, params: Any) -> Any:
    """A factory's ``eval_params`` reads its own transformation's state, which
    ``optax.inject_hyperparams`` keeps as ``inner_state``."""
    return eval_params(state.inner_state, params)


def resolve(spec: str, learning_rate: Any = None, **hyperparams: Any) -> dict[str, Any]:
    """The full, validated hyperparameters of ``spec``: defaults overridden by the given values."""
    return resolve_spec(spec).hyperparams(learning_rate, **hyperparams)


def build(spec: str, learning_rate: Any = None, **hyperparams: Any) -> Any:
    """The optax transformation for ``spec`` with its numbers injected into the state.

    ``learning_rate`` and ``hyperparams`` default to the spec's own. The result's state has a
    ``hyperparams`` dict of arrays, so ``update`` works for any values placed there (vmapping).
    """
    opt = resolve_spec(spec)
    return opt.transformation(opt.hyperparams(learning_rate, **hyperparams))


def transformation(spec: str, static: Mapping[str, Any]) -> Any:
    """The injected transformation of ``spec`` with ``static`` settings; its numbers are the
    defaults, meant to be replaced in the state (what the engine does, per trial)."""
    opt = resolve_spec(spec)
    return opt.transformation(opt.hyperparams(None, **static))


def split_setting(item: str, option: str, form: str) -> tuple[str, str, str]:
    """``OPTIMIZER.NAME=VALUE`` or ``NAME=VALUE`` (``--hp``, ``--space``) -> (optimizer or "",
    name, value text). The optimizer part may hold dots itself (``optax.adam.b1``,
    ``my_opt.py:make.b1``): the name is the part after the last dot."""
    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise InputError(f"{option} expects {form}, got {item!r}")
    target, _, name = key.rpartition(".")
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise InputError(f"{option} {item!r}: {name!r} is not a hyperparameter name")
    return user.normalized(target), name, value


def setting_keys(spec: str, target: str, name: str) -> list[str]:
    """The hyperparameters of ``spec`` that ``[TARGET.]NAME`` (``--hp``, ``--vary``) sets: ``name``
    where ``target`` is ``spec`` or not given; in a wrapped optimizer, its part ``target``'s
    (``lookahead.sync_period``, ``adam.b1``) or, without a target, every part's ``name``."""
    params = resolve_spec(spec).param
    if not target or target == spec:
        if name in params:
            return [name]
        return [] if target else [key for key in params if key.rpartition(".")[2] == name]
    key = f"{target}.{name}"
    return [key] if key in params else []


def origin(spec: str) -> dict[str, Any]:
    """Where ``spec``'s optimizer came from, as a results row records it."""
    return {"spec": spec, **resolve_spec(spec).origin}


def describe_spec(spec: str) -> dict[str, Any]:
    """``--list``'s row: kind, rule / doc line, and every hyperparameter with its default."""
    opt = resolve_spec(spec)
    params = {p.name: ("required" if p.required else p.default) for p in opt.params}
    return {
        "spec": spec,
        "kind": opt.kind,
        "rule": opt.rule,
        "learning_rate": opt.default_lr,
        "lr_in_signature": opt.lr_in_signature,
        "lr_source": opt.origin.get("default_lr_source", BUILTIN_LR_SOURCE),
        "numbers": [p.name for p in opt.params if p.kind == NUMBER],
        "params": params,
        "origin": dict(opt.origin),
    }


#: Where a built-in's default learning rate comes from (``builtin.DEFAULTS``).
BUILTIN_LR_SOURCE = "dnnbench's, tuned for the recipe's MLP"


def at_fallback(spec: str, learning_rate: float) -> bool:
    """Whether a trial of ``spec`` at ``learning_rate`` runs at ``FALLBACK_LR`` because its
    optimizer has no default rate (none in its signature, none documented): a number to tune."""
    return resolve_spec(spec).origin.get("default_lr_source") == "fallback" and learning_rate == FALLBACK_LR


def every() -> tuple[tuple[str, ...], dict[str, str]]:
    """``--optimizers all``: every optimizer that runs here, each once, in a stable order, and why
    each other one cannot (spec -> reason).

    The order: the built-ins (``NAMES``), installed plugins (sorted), optax's, then
    optax.contrib's (sorted). Each is named once: where optax has an optimizer of a built-in's name
    (adam, sgd, ...) the built-in stands for it (``optax.adam`` can still be named), and a plugin
    whose factory is an optax function is not run twice. Each is resolved with its defaults (its
    update traced once), so a name that cannot run is refused here, before anything trains.
    """
    plugins = sorted(p for p in user.plugins() if p not in NAMES)
    optax_specs = [
        q for q in catalogue.qualified_names() if q.removeprefix("optax.").removeprefix("contrib.") not in NAMES
    ]
    runnable: list[str] = []
    refused: dict[str, str] = {}
    factories: set[int] = set()
    for spec in [*NAMES, *plugins, *optax_specs]:
        try:
            opt = resolve_spec(spec)
            opt.hyperparams()
        except InputError as exc:
            refused[spec] = str(exc)
            continue
        if id(opt.factory) not in factories:
            factories.add(id(opt.factory))
            runnable.append(spec)
    return tuple(runnable), refused
