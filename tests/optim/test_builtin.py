"""Optimizer registry: each rule equals a hand-written NumPy version of the documented formula,
bad names and numbers fail with ``InputError``, and the numbers live in the state (vmappable,
one compilation for any learning rate)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dnnbench import optim
from dnnbench.errors import InputError

STEPS = 12
RTOL, ATOL = 1e-5, 1e-6
F32 = np.float32


def _params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((3, 4)).astype(F32), "b": rng.standard_normal(4).astype(F32)}


def _grads() -> list[dict[str, np.ndarray]]:
    """A fixed sequence of gradients, some small so that eps placement matters."""
    rng = np.random.default_rng(1)
    out = []
    for t in range(STEPS):
        scale = F32(0.05 if t % 3 == 0 else 1.0)
        out.append(
            {"w": rng.standard_normal((3, 4)).astype(F32) * scale, "b": rng.standard_normal(4).astype(F32) * scale}
        )
    return out


# ---- The update rules, as written in optim's docstring and SEED.md, one leaf at a time (float32).


def ref_sgd(theta, grads, learning_rate):
    for g in grads:
        theta = theta - F32(learning_rate) * g
    return theta


def ref_momentum(theta, grads, learning_rate, momentum):
    m = np.zeros_like(theta)
    for g in grads:
        m = F32(momentum) * m + F32(1 - momentum) * g
        theta = theta - F32(learning_rate) * m
    return theta


def ref_nesterov(theta, grads, learning_rate, momentum):
    m = np.zeros_like(theta)
    for g in grads:
        m = F32(momentum) * m + g
        theta = theta - F32(learning_rate) * (g + F32(momentum) * m)
    return theta


def ref_adagrad(theta, grads, learning_rate, eps):
    v = np.zeros_like(theta)
    for g in grads:
        v = v + g * g
        theta = theta - F32(learning_rate) * g / np.sqrt(v + F32(eps))
    return theta


def ref_rmsprop(theta, grads, learning_rate, decay, eps):
    v = np.zeros_like(theta)
    for g in grads:
        v = F32(decay) * v + F32(1 - decay) * g * g
        theta = theta - F32(learning_rate) * g / np.sqrt(v + F32(eps))
    return theta


def ref_adamw(theta, grads, learning_rate, b1, b2, eps, weight_decay=0.0):
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, 1):
        m = F32(b1) * m + F32(1 - b1) * g
        v = F32(b2) * v + F32(1 - b2) * g * g
        m_hat = m / F32(1 - b1**t)
        v_hat = v / F32(1 - b2**t)
        step = m_hat / (np.sqrt(v_hat) + F32(eps)) + F32(weight_decay) * theta
        theta = theta - F32(learning_rate) * step
    return theta


def ref_adam(theta, grads, learning_rate, b1, b2, eps):
    return ref_adamw(theta, grads, learning_rate, b1, b2, eps, 0.0)


REFERENCES = {
    "sgd": ref_sgd,
    "momentum": ref_momentum,
    "nesterov": ref_nesterov,
    "adagrad": ref_adagrad,
    "rmsprop": ref_rmsprop,
    "adam": ref_adam,
    "adamw": ref_adamw,
}

# Non-default numbers, large eps values on purpose: eps inside vs outside the sqrt then differs.
CUSTOM = {
    "sgd": {"learning_rate": 0.3},
    "momentum": {"learning_rate": 0.2, "momentum": 0.5},
    "nesterov": {"learning_rate": 0.05, "momentum": 0.7},
    "adagrad": {"learning_rate": 0.2, "eps": 0.5},
    "rmsprop": {"learning_rate": 0.02, "decay": 0.8, "eps": 0.1},
    "adam": {"learning_rate": 0.03, "b1": 0.8, "b2": 0.95, "eps": 0.1},
    "adamw": {"learning_rate": 0.03, "b1": 0.7, "b2": 0.9, "eps": 0.01, "weight_decay": 0.2},
}


def _run_optax(tx: optax.GradientTransformation, params, grads):
    params = jax.tree.map(jnp.asarray, params)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, params)
        params = optax.apply_updates(params, updates)
    return jax.tree.map(np.asarray, params)


def test_table_covers_every_optimizer():
    assert set(REFERENCES) == set(optim.NAMES) == set(CUSTOM)
    assert set(optim.RECIPE) <= set(optim.NAMES)


@pytest.mark.parametrize("which", ["defaults", "custom"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_update_rule_matches_numpy_reference(name, which):
    hp = dict(optim.DEFAULTS[name] if which == "defaults" else CUSTOM[name])
    if which == "defaults":
        tx = optim.build(name)
    else:
        lr = hp.pop("learning_rate")
        tx = optim.build(name, lr, **hp)
        hp["learning_rate"] = lr
    params, grads = _params(), _grads()
    got = _run_optax(tx, params, grads)
    for leaf in params:
        want = REFERENCES[name](params[leaf].copy(), [g[leaf] for g in grads], **hp)
        assert got[leaf].dtype == np.float32
        np.testing.assert_allclose(got[leaf], want, rtol=RTOL, atol=ATOL, err_msg=f"{name} {which} {leaf}")
        # the rule moved the parameters by far more than the tolerance: the comparison means something
        assert np.max(np.abs(want - params[leaf])) > 1e-3


def test_momentum_is_the_exponential_average_not_the_pytorch_form():
    """One constant gradient: the recipe's m = lambda*m + (1-lambda)*g gives theta -= eta*g*(1-lambda^t)
    summed; PyTorch's m = lambda*m + g would be 1/(1-lambda) times larger in the limit."""
    tx = optim.build("momentum", 1.0, momentum=0.5)
    params = {"x": jnp.zeros(())}
    state = tx.init(params)
    updates, state = tx.update({"x": jnp.ones(())}, state, params)
    assert float(updates["x"]) == pytest.approx(-0.5)
    updates, _ = tx.update({"x": jnp.ones(())}, state, params)
    assert float(updates["x"]) == pytest.approx(-0.75)


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(InputError) as info:
        optim.build("adadeltaa", 0.1)
    message = str(info.value)
    assert "adadeltaa" in message and "optax" in message
    for name in optim.NAMES:
        assert name in message


@pytest.mark.parametrize("lr", [0.0, -1.0, -1e-3, math.nan, math.inf, "fast"])
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_bad_learning_rate_is_input_error(name, lr):
    with pytest.raises(InputError, match="learning.rate|must be a number"):
        optim.build(name, lr)


@pytest.mark.parametrize(
    ("name", "hp"),
    [("sgd", {"momentum": 0.9}), ("adam", {"beta1": 0.9}), ("rmsprop", {"b2": 0.9}), ("momentum", {"nesterov": 1.0})],
)
def test_unknown_hyperparameter_is_input_error(name, hp):
    with pytest.raises(InputError) as info:
        optim.build(name, 0.1, **hp)
    message = str(info.value)
    assert next(iter(hp)) in message
    for valid in optim.DEFAULTS[name]:
        assert valid in message


@pytest.mark.parametrize(
    ("name", "hp"),
    [
        ("momentum", {"momentum": 1.0}),
        ("adam", {"b2": -0.1}),
        ("rmsprop", {"eps": -1e-8}),
        ("adamw", {"weight_decay": math.nan}),
    ],
)
def test_out_of_range_hyperparameter_is_input_error(name, hp):
    with pytest.raises(InputError, match=next(iter(hp))):
        optim.build(name, 0.1, **hp)


def test_defaults_and_rules_cover_every_name():
    assert set(optim.DEFAULTS) == set(optim.NAMES) == set(optim.RULES)
    for name in optim.NAMES:
        lr = optim.DEFAULTS[name]["learning_rate"]
        assert 0 < lr < 1
        assert optim.RULES[name]
        # build() without numbers uses exactly the defaults, and resolve() reports them all
        assert optim.resolve(name) == optim.DEFAULTS[name]
        state = optim.build(name).init(_params())
        assert set(state.hyperparams) == set(optim.DEFAULTS[name])
        for key, value in optim.DEFAULTS[name].items():
            assert float(state.hyperparams[key]) == pytest.approx(value, rel=1e-6)


def test_resolve_merges_overrides_with_defaults():
    full = optim.resolve("adam", 0.01, b2=0.9)
    assert full == {"learning_rate": 0.01, "b1": 0.9, "b2": 0.9, "eps": optim.DEFAULTS["adam"]["eps"]}


def _first_update(tx, state, params, grads):
    updates, _ = tx.update(grads, state, params)
    return jax.tree.map(np.asarray, updates)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_learning_rate_read_from_state(name):
    """Changing state.hyperparams['learning_rate'] changes the step: every rule is linear in eta."""
    tx = optim.build(name, 0.01)
    params = jax.tree.map(jnp.asarray, _params())
    grads = jax.tree.map(jnp.asarray, _grads()[1])
    state = tx.init(params)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.01)
    base = _first_update(tx, state, params, grads)
    hp = dict(state.hyperparams, learning_rate=jnp.asarray(0.03, jnp.float32))
    tripled = _first_update(tx, state._replace(hyperparams=hp), params, grads)
    for leaf in base:
        assert np.max(np.abs(base[leaf])) > 0
        np.testing.assert_allclose(tripled[leaf], 3 * base[leaf], rtol=1e-5, atol=1e-8)


def test_other_hyperparams_read_from_state():
    tx = optim.build("momentum", 1.0, momentum=0.9)
    params = {"x": jnp.zeros(2)}
    state = tx.init(params)
    hp = dict(state.hyperparams, momentum=jnp.asarray(0.25, jnp.float32))
    updates, _ = tx.update({"x": jnp.ones(2)}, state._replace(hyperparams=hp), params)
    np.testing.assert_allclose(np.asarray(updates["x"]), [-0.75, -0.75], rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam", "adamw"])
def test_jitted_update_compiles_once_for_any_hyperparams(name):
    tx = optim.build(name, 0.01)
    params = jax.tree.map(jnp.asarray, _params())
    grads = jax.tree.map(jnp.asarray, _grads()[2])
    traces = []

    @jax.jit
    def update(g, state, p):
        traces.append(1)  # runs only while tracing
        return tx.update(g, state, p)

    other = optim.build(name, 0.5).init(params)  # same structure, different numbers
    first, _ = update(grads, tx.init(params), params)
    second, _ = update(grads, other, params)
    assert len(traces) == 1
    # ... and the second call really used the learning rate from its state
    ratio = np.asarray(second["w"]) / np.asarray(first["w"])
    np.testing.assert_allclose(ratio, 50.0, rtol=1e-4)


def test_update_vmaps_over_stacked_learning_rates():
    tx = optim.build("adam", 0.001)
    params = jax.tree.map(jnp.asarray, _params())
    grads = jax.tree.map(jnp.asarray, _grads()[4])
    lrs = [0.001, 0.01, 0.1]
    states = [optim.build("adam", lr).init(params) for lr in lrs]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    batched, _ = jax.vmap(tx.update, in_axes=(None, 0, None))(grads, stacked, params)
    for i, state in enumerate(states):
        alone, _ = tx.update(grads, state, params)
        np.testing.assert_allclose(np.asarray(batched["w"][i]), np.asarray(alone["w"]), rtol=1e-6)
    assert not np.allclose(np.asarray(batched["w"][0]), np.asarray(batched["w"][2]))
