"""Static integers that multiply an update's work are bounded (``optax.contrib.muon --hp ns_steps=100000000``).

A static integer hyperparameter is part of the compiled program. Some only pick a shape or a
period; others count a loop inside every update (muon's Newton-Schulz iterations, a user's Python
``for`` loop, unrolled when traced): a huge count makes one update take hours, or its tracing
never end, with nothing to show for it. So before such a value is traced, the update is traced at
the parameter's default ``a`` and at ``a + 1`` on a tiny model and its work is counted (the
equations it runs, a ``scan`` counting its body once per iteration); where one more unit adds
work, the work at the value given is extrapolated, and more than ``MAX_GROWTH`` times the work at
the default is an ``InputError`` that says the largest value allowed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from dnnbench.errors import InputError

#: An update may do at most this many times the work it does at the parameter's default.
MAX_GROWTH = 100


def check_static_ints(opt: Any, values: Mapping[str, Any]) -> None:
    """Refuse a static integer of ``values`` (``opt``: an ``optim.Optimizer``) that would make one
    update do more than ``MAX_GROWTH`` times its work at the parameter's default."""
    for p in opt.params:
        value = values.get(p.name)
        if p.type is not int or p.kind != "static" or not isinstance(value, int) or isinstance(value, bool):
            continue
        base = p.default if isinstance(p.default, int) and not isinstance(p.default, bool) else 1
        if abs(value) <= max(2 * abs(base), 8):  # near the default: nothing to bound
            continue
        low, high = _work(opt, {**values, p.name: base}), _work(opt, {**values, p.name: base + 1})
        if low is None or high is None or high <= low:  # it does not count a loop (or does not trace here)
            continue
        predicted = low + (value - base) * (high - low)
        if predicted > MAX_GROWTH * low:
            most = base + (MAX_GROWTH * low - low) // (high - low)
            raise InputError(
                f"optimizer {opt.spec!r}: {p.name}={value} repeats work inside every update (about "
                f"{predicted / low:.3g}x the work at {p.name}={base}); at most {MAX_GROWTH}x is allowed, "
                f"{p.name} <= {most}"
            )


def _work(opt: Any, values: Mapping[str, Any]) -> int | None:
    """The equations one update of ``opt`` at ``values`` runs on a tiny model (a loop's body counted
    once per iteration); None where it does not trace (``_trace_update`` says why)."""
    import jax
    import jax.numpy as jnp

    params = {"w": jax.ShapeDtypeStruct((3, 4), jnp.float32), "b": jax.ShapeDtypeStruct((4,), jnp.float32)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tx = opt.transformation(dict(values))
            state = jax.eval_shape(tx.init, params)
            jaxpr = jax.make_jaxpr(lambda p, s: tx.update(p, s, p))(params, state)
    except Exception:  # noqa: BLE001 -- not ours to report: the update's own trace does
        return None
    return _count(jaxpr.jaxpr)


def _count(jaxpr: Any) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        inner = sum(_count(sub) for sub in _subjaxprs(eqn.params))
        times = int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else 1
        total += 1 + times * inner
    return total


def _subjaxprs(params: Mapping[str, Any]) -> list[Any]:
    """The jaxprs inside an equation's parameters (a scan's or a while's body, a cond's branches)."""
    found = []
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            inner = getattr(item, "jaxpr", item)
            if hasattr(inner, "eqns"):
                found.append(inner)
    return found
