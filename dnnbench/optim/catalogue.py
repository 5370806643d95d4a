"""The optax catalogue: every optax optimizer by its name (``lion``, ``optax.adam``, ``optax.contrib.muon``).

An optax optimizer is a lowercase function of ``optax`` or ``optax.contrib`` whose first
parameter is ``learning_rate`` (``optax.scale_by_*`` building blocks are left out of the list but
can be named; ``polyak_sgd``'s learning rate is its ``max_learning_rate``). Names that cannot run
in dnnbench's training step say why (``REFUSED``: ``sam`` needs a second gradient, ``dpsgd``
per-example ones); those that wrap another optimizer are named as a pair (``wrappers``:
``lookahead(adam)``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from dnnbench.errors import InputError

#: Why these cannot run, said before the generic check would find it (clearer words).
REFUSED: dict[str, str] = {
    "sam": (
        "sharpness-aware minimization takes a second gradient, at adversarially perturbed parameters, every "
        "step (an outer loop alternating two optimizers, or a grad_fn in its opaque mode); dnnbench's step "
        "computes one gradient per minibatch -- it would need to pass a grad_fn of the minibatch"
    ),
    "dpsgd": (
        "it clips each example's gradient before averaging them, so its update needs per-example gradients "
        "(one per sample of the batch); dnnbench's step computes the minibatch mean's gradient -- it would "
        "need a vmap of the loss over the samples"
    ),
    # Kept refused (issue 21, point 5): optax deprecates it, it is the same algorithm as
    # optimistic_adam_v2 (its learning_rate is v2's alpha, its optimism v2's beta, v2's learning_rate 1),
    # so running it too would rank one optimizer twice under an interface optax will remove.
    "optimistic_adam": (
        "deprecated in optax; use optax.optimistic_adam_v2, the same algorithm (this one's learning_rate "
        "and optimism are v2's alpha and beta, with v2's learning_rate 1)"
    ),
}


def _module(contrib: bool) -> Any:
    import optax

    if contrib:
        import optax.contrib

        return optax.contrib
    return optax


def _is_optimizer(name: str, fn: Any) -> bool:
    if name.startswith("_") or not name.islower() or not callable(fn) or inspect.isclass(fn):
        return False
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "learning_rate"


#: Optimizers whose learning rate has another name: dnnbench's ``learning_rate`` sets it.
LEARNING_RATE_IS: dict[str, str] = {"polyak_sgd": "max_learning_rate"}


def _renamed(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` with its parameter ``name`` called ``learning_rate`` (signature and calls)."""
    signature = inspect.signature(fn)
    params = [p.replace(name="learning_rate") if p.name == name else p for p in signature.parameters.values()]

    @functools.wraps(fn)
    def factory(*args: Any, **kwargs: Any) -> Any:
        if "learning_rate" in kwargs:
            kwargs[name] = kwargs.pop("learning_rate")
        return fn(*args, **kwargs)

    factory.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return factory


def names(contrib: bool = False) -> list[str]:
    """The optimizers of ``optax`` (or ``optax.contrib``), building blocks left out."""
    module = _module(contrib)
    return sorted(
        n
        for n in dir(module)
        if (_is_optimizer(n, getattr(module, n, None)) and not n.startswith("scale_by"))
        or n in REFUSED
        or n in LEARNING_RATE_IS
    )


def qualified_names() -> list[str]:
    """Every optimizer of ``optax`` then ``optax.contrib``, qualified (``optax.lion``,
    ``optax.contrib.muon``), each sorted: the catalogue's stable order."""
    return [f"optax.{n}" for n in names()] + [f"optax.contrib.{n}" for n in names(contrib=True)]


def lookup(name: str) -> tuple[Callable[..., Any], str] | None:
    """The factory for ``lion`` / ``optax.lion`` / ``optax.contrib.muon`` and its qualified name, or
    None when optax has no such attribute. ``InputError`` for one that exists but cannot run."""
    contrib = name.startswith("optax.contrib.")
    short = name.removeprefix("optax.contrib.") if contrib else name.removeprefix("optax.")
    if not short or "." in short:
        return None
    module = _module(contrib)
    fn = getattr(module, short, None)
    if fn is None:
        return None
    qualified = f"optax.{'contrib.' if contrib else ''}{short}"
    if short in REFUSED:
        raise InputError(f"{qualified} cannot be benchmarked: {REFUSED[short]}")
    if short in LEARNING_RATE_IS:
        return _renamed(fn, LEARNING_RATE_IS[short]), qualified
    if not callable(fn) or inspect.isclass(fn):
        raise InputError(f"{qualified} is not an optimizer factory (it is a {type(fn).__name__})")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        raise InputError(f"{qualified} is not an optimizer factory (no readable signature)") from None
    if "learning_rate" not in params:
        raise InputError(f"{qualified} is not an optimizer factory (it has no learning_rate parameter)")
    for p in params.values():
        wraps = p.default is p.empty and any(word in p.name for word in ("optimizer", "inner"))
        if wraps:
            raise InputError(
                f"{qualified} cannot be benchmarked on its own: it wraps another optimizer "
                f"(parameter {p.name!r}); write a factory file that builds it"
            )
    return fn, qualified


def version() -> str:
    import optax

    return optax.__version__
