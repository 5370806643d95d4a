"""The built-in optimizers: the recipe's update rules, each a short ``optax.chain``.

Every optimizer is a short ``optax.chain`` of optax parts, wrapped in
``optax.inject_hyperparams`` so that its numbers (learning rate, momentum, eps, ...) live in the
optimizer *state* as arrays. That is what lets the engine vmap one compiled program over trials
with different learning rates: the update function reads the numbers from the state, never from
constants baked into the trace.

The update rules, exactly as implemented (g = gradient of the loss, t = step counting from 1,
all operations per parameter; see ``RULES``):

- ``sgd``:      theta -= eta * g
- ``momentum``: m_0 = 0, m_t = lambda * m_{t-1} + (1 - lambda) * g_t, theta -= eta * m_t
                (the recipe's exponential-average form, not PyTorch's m = lambda*m + g)
- ``nesterov``: m_t = mu * m_{t-1} + g_t, theta -= eta * (g_t + mu * m_t)  (optax/PyTorch form)
- ``adagrad``:  v_t = sum_{tau<=t} g_tau^2 (v_0 = 0), theta -= eta * g_t / sqrt(v_t + eps)
- ``rmsprop``:  v_0 = 0, v_t = rho * v_{t-1} + (1 - rho) * g_t^2, theta -= eta * g_t / sqrt(v_t + eps)
- ``adam``:     m_t = b1 m + (1-b1) g, v_t = b2 v + (1-b2) g^2,
                theta -= eta * (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)
- ``adamw``:    adam's step plus decoupled weight decay: theta -= eta * weight_decay * theta
"""

from __future__ import annotations

from collections.abc import Callable

import optax

from dnnbench.errors import InputError


def _sgd(learning_rate: float) -> optax.GradientTransformation:
    return optax.chain(optax.scale_by_learning_rate(learning_rate))


def _momentum(learning_rate: float, momentum: float) -> optax.GradientTransformation:
    # optax.ema without debiasing is exactly m = lambda*m + (1-lambda)*g with m_0 = 0.
    return optax.chain(
        optax.ema(decay=momentum, debias=False),
        optax.scale_by_learning_rate(learning_rate),
    )


def _nesterov(learning_rate: float, momentum: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.trace(decay=momentum, nesterov=True),
        optax.scale_by_learning_rate(learning_rate),
    )


def _adagrad(learning_rate: float, eps: float) -> optax.GradientTransformation:
    # scale_by_rss keeps v_t = sum of g^2 (v_0 = 0 here) and divides by sqrt(v_t + eps).
    return optax.chain(
        optax.scale_by_rss(initial_accumulator_value=0.0, eps=eps),
        optax.scale_by_learning_rate(learning_rate),
    )


def _rmsprop(learning_rate: float, decay: float, eps: float) -> optax.GradientTransformation:
    # eps inside the square root and no bias correction: the recipe's rule, to the letter.
    return optax.chain(
        optax.scale_by_rms(decay=decay, eps=eps, initial_scale=0.0, eps_in_sqrt=True),
        optax.scale_by_learning_rate(learning_rate),
    )


def _adam(learning_rate: float, b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.scale_by_learning_rate(learning_rate),
    )


def _adamw(learning_rate: float, b1: float, b2: float, eps: float, weight_decay: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


FACTORIES: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "adagrad": _adagrad,
    "rmsprop": _rmsprop,
    "adam": _adam,
    "adamw": _adamw,
}

#: Per optimizer: its default learning rate and hyperparameters. The learning rates are tuned
#: for the default task (784/64-500-500-10 MLP, batch 100); the rest are the usual defaults.
DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"learning_rate": 0.1},
    "momentum": {"learning_rate": 0.1, "momentum": 0.9},
    "nesterov": {"learning_rate": 0.01, "momentum": 0.9},
    "adagrad": {"learning_rate": 0.01, "eps": 1e-7},
    "rmsprop": {"learning_rate": 0.001, "decay": 0.9, "eps": 1e-7},
    "adam": {"learning_rate": 0.001, "b1": 0.9, "b2": 0.999, "eps": 1e-7},
    "adamw": {"learning_rate": 0.001, "b1": 0.9, "b2": 0.999, "eps": 1e-7, "weight_decay": 1e-4},
}

#: The documented update rule of each optimizer, one line each (printed by --list).
RULES: dict[str, str] = {
    "sgd": "theta -= eta * g",
    "momentum": "m = momentum*m + (1-momentum)*g; theta -= eta * m",
    "nesterov": "m = momentum*m + g; theta -= eta * (g + momentum*m)",
    "adagrad": "v += g^2 (v0 = 0); theta -= eta * g / sqrt(v + eps)",
    "rmsprop": "v = decay*v + (1-decay)*g^2 (v0 = 0); theta -= eta * g / sqrt(v + eps)",
    "adam": "m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; theta -= eta * m_hat / (sqrt(v_hat) + eps), bias-corrected",
    "adamw": "adam step + decoupled decay: theta -= eta * weight_decay * theta",
}

#: The five optimizers of the recipe, the default comparison.
RECIPE: tuple[str, ...] = ("sgd", "momentum", "adagrad", "rmsprop", "adam")

NAMES: tuple[str, ...] = tuple(FACTORIES)


def check(name: str, values: dict[str, float]) -> None:
    """The ranges the recipe's rules need (beyond finite numbers): ``InputError`` naming the value."""
    for key in ("momentum", "decay", "b1", "b2"):
        if key in values and not 0.0 <= values[key] < 1.0:
            raise InputError(f"{name} {key} must be in [0, 1), got {values[key]!r}")
    for key in ("eps", "weight_decay"):
        if key in values and not values[key] >= 0.0:
            raise InputError(f"{name} {key} must be >= 0, got {values[key]!r}")
