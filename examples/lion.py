"""A hand-written optimizer to benchmark with dnnbench: Lion (Chen et al., 2023, "Symbolic
Discovery of Optimization Algorithms"), as a plain optax ``GradientTransformation``.

    dnnbench optimizers --optimizers adam,examples/lion.py:make_lion,lion

dnnbench reads the factory's signature: ``learning_rate`` and the float keyword parameters
(``b1``, ``b2``, ``weight_decay``) become hyperparameters that ``--hp`` sets, ``sweep --vary``
sweeps and ``tune`` tunes; trials that differ only in them train as one compiled program. The
update, per parameter (g = gradient, m = momentum, m_0 = 0):

    c = b1 * m + (1 - b1) * g
    theta -= learning_rate * (sign(c) + weight_decay * theta)
    m = b2 * m + (1 - b2) * g
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class LionState(NamedTuple):
    momentum: optax.Updates


def make_lion(
    learning_rate: float = 1e-4, b1: float = 0.9, b2: float = 0.99, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """Lion: the sign of an interpolated momentum, with decoupled weight decay."""

    def init(params: optax.Params) -> LionState:
        return LionState(momentum=jax.tree.map(jnp.zeros_like, params))

    def update(grads: optax.Updates, state: LionState, params: optax.Params | None = None):
        direction = jax.tree.map(lambda m, g: jnp.sign(b1 * m + (1 - b1) * g), state.momentum, grads)
        momentum = jax.tree.map(lambda m, g: b2 * m + (1 - b2) * g, state.momentum, grads)
        updates = jax.tree.map(lambda d, p: -learning_rate * (d + weight_decay * p), direction, params)
        return updates, LionState(momentum=momentum)

    return optax.GradientTransformation(init, update)
