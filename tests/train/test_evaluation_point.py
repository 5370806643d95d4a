"""Optimizers trained and judged as their authors intend, checked against a reference loop written
in plain JAX/optax (dnnbench's split, initial weights and batch order; nothing else of dnnbench):
schedule-free evaluated at x (metrics, early stopping's restore, ``Model.predict``), updates that
need the loss given the minibatch's, ``--clip-norm`` / ``--weight-decay`` as optax's own
transformations -- each a per-trial number of one compiled program."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from flax import nnx

from dnnbench.api import Model
from dnnbench.config import ModelConfig, Regularization, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.train import engine
from dnnbench.train import step as core

MODEL = ModelConfig(hidden=(8,))
EPOCHS, BATCH = 3, 20


@pytest.fixture(scope="module")
def ds():
    return split(sources.load_synthetic(train=200, test=50, features=8, classes=3), 0.1)


def _spec(optimizer: str, seed: int, reg: Regularization | None = None, **hp) -> TrialSpec:
    return TrialSpec(
        optimizer=optimizer,
        hyperparams=tuple(hp.items()),
        seed=seed,
        model=MODEL,
        train=TrainConfig(epochs=EPOCHS, batch_size=BATCH),
        reg=reg or Regularization(),
    )


def _plan(ds, spec: TrialSpec) -> core.Plan:
    _, sizes = engine.to_device(ds)
    return core.Plan(spec.structure, sizes, uses_dropout=False, uses_noise=False, uses_early_stopping=False)


def _graphdef(ds, spec: TrialSpec):
    return nnx.split(nnx.eval_shape(lambda: core._model(_plan(ds, spec), 0)))[0]


def reference(ds, spec: TrialSpec, tx, *, eval_params=None, extra_args=()):
    """Train ``spec``'s model with the optax transformation ``tx`` in a plain loop: per epoch, the
    mean loss and accuracy of train, val and test, evaluated at ``eval_params(state, params)``
    (default: the trained params); and the evaluated params of every epoch. Only the initial
    weights (dnnbench's, so that the two start alike) come from dnnbench."""
    data, sizes = engine.to_device(ds)
    params = core.make_init_params(_plan(ds, spec))(jnp.uint32(spec.seed))
    graphdef = _graphdef(ds, spec)

    def loss_fn(p, x, y):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, p)(x), y))

    def metrics(p, x, y, n):
        logits = nnx.merge(graphdef, p)(x[:n])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y[:n])
        return float(jnp.mean(loss)), float(jnp.mean(jnp.argmax(logits, -1) == y[:n]))

    @jax.jit
    def train_step(params, state, x, y):
        value, grad = jax.value_and_grad(loss_fn)(params, x, y)
        given = {"value": value, "grad": grad, "value_fn": lambda p: loss_fn(p, x, y)}
        updates, state = tx.update(grad, state, params, **{k: given[k] for k in extra_args})
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    steps = sizes.n_train // BATCH
    history, points = {k: [] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")}, []
    for epoch in range(EPOCHS):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(spec.seed), 1), epoch)
        order = jax.random.permutation(key, sizes.n_train)[: steps * BATCH].reshape(steps, BATCH)
        for idx in order:
            params, state = train_step(params, state, data.x_train[idx], data.y_train[idx])
        point = params if eval_params is None else eval_params(state, params)
        points.append(point)
        for split_name, x, y, n in (
            ("train", data.x_train, data.y_train, sizes.n_train_eval),
            ("val", data.x_val, data.y_val, sizes.n_val),
            ("test", data.x_test, data.y_test, sizes.n_test),
        ):
            loss, acc = metrics(point, x, y, n)
            history[f"{split_name}_loss"].append(loss)
            history[f"{split_name}_acc"].append(acc)
    return {k: np.asarray(v) for k, v in history.items()}, points


def _equal_history(out, index, want):
    for name, values in want.items():
        np.testing.assert_allclose(out.history[name][:, index], values, rtol=2e-5, atol=2e-6, err_msg=name)


SF = optax.contrib.schedule_free_eval_params


@pytest.mark.parametrize(
    "spec_name, trials, make",
    [
        (
            "optax.contrib.schedule_free_sgd",
            [{"learning_rate": 0.5, "b1": 0.9}, {"learning_rate": 0.2, "b1": 0.7}],
            lambda hp: optax.contrib.schedule_free_sgd(hp["learning_rate"], b1=hp["b1"]),
        ),
        (
            "optax.contrib.schedule_free_adamw",
            [{"learning_rate": 0.01, "b1": 0.9}, {"learning_rate": 0.03, "b1": 0.8, "weight_decay": 0.01}],
            lambda hp: optax.contrib.schedule_free_adamw(
                hp["learning_rate"], b1=hp["b1"], weight_decay=hp.get("weight_decay", 0.0)
            ),
        ),
    ],
)
def test_schedule_free_metrics_are_at_x_as_in_a_reference_loop(ds, spec_name, trials, make):
    specs = [_spec(spec_name, seed, **hp) for seed, hp in enumerate(trials)]
    assert len({s.structure for s in specs}) == 1  # b1 and the rate are numbers of one program
    before = engine.compile_count
    out = engine.train_group(specs, ds)
    assert engine.compile_count - before <= 3
    for i, (spec, hp) in enumerate(zip(specs, trials, strict=True)):
        want, points = reference(ds, spec, make(hp), eval_params=SF)
        _equal_history(out, i, want)
        at_y, _ = reference(ds, spec, make(hp))  # the trained point y scores otherwise: the check can fail
        assert np.max(np.abs(at_y["test_loss"] - want["test_loss"])) > 1e-3
        for a, b in zip(jax.tree.leaves(engine.trial_params(out, i)), jax.tree.leaves(points[-1]), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)


def test_early_stopping_restores_x_and_the_model_predicts_at_x(ds):
    # min_delta 10: no epoch after the first counts as an improvement, so training stops after
    # patience 1 and restores the first epoch's weights -- schedule-free's x of that epoch
    reg = Regularization(early_stopping=True, patience=1, min_delta=10.0)
    model = Model.build(hidden=(8,), regularization=reg)
    model.fit(ds, optimizer="optax.contrib.schedule_free_sgd", learning_rate=0.5, batch_size=BATCH, epochs=EPOCHS)
    assert model.result.best_epoch == 1 and model.result.stopped_epoch == 2
    spec = _spec("optax.contrib.schedule_free_sgd", 0, learning_rate=0.5)
    want, points = reference(ds, spec, optax.contrib.schedule_free_sgd(0.5), eval_params=SF)
    assert model.result.history["val_loss"] == pytest.approx(list(want["val_loss"][:2]), rel=2e-5)
    assert model.result.metrics["test_acc"] == pytest.approx(want["test_acc"][0])
    x = np.asarray(ds.x_test[:7], np.float32)
    expected = np.asarray(jax.nn.softmax(nnx.merge(_graphdef(ds, spec), points[0])(jnp.asarray(x))))
    np.testing.assert_allclose(model.predict(x), expected, rtol=2e-5, atol=2e-6)
    assert model.evaluate()["acc"] == pytest.approx(want["test_acc"][0])


@pytest.mark.parametrize(
    "spec_name, hp, make",
    [
        ("polyak_sgd", {"learning_rate": 0.5, "f_min": 0.1}, lambda: optax.polyak_sgd(0.5, f_min=0.1)),
        ("optax.contrib.momo", {"learning_rate": 0.5}, lambda: optax.contrib.momo(0.5)),
    ],
)
def test_updates_that_need_the_loss_get_the_minibatch_loss(ds, spec_name, hp, make):
    spec = _spec(spec_name, 0, **hp)
    out = engine.train_group([spec], ds)
    want, _ = reference(ds, spec, make(), extra_args=("value",))
    _equal_history(out, 0, want)
    assert want["train_loss"][-1] < want["train_loss"][0]


def test_clip_norm_and_weight_decay_are_optax_transformations_and_numbers_of_one_program(ds):
    settings = [(None, 0.0), (0.5, 0.01), (5.0, 0.1)]
    specs = [
        _spec("adam", 0, Regularization(clip_norm=clip, weight_decay=wd), learning_rate=0.03) for clip, wd in settings
    ]
    assert len({s.structure for s in specs}) == 1
    before = engine.compile_count
    out = engine.train_group(specs, ds)
    assert engine.compile_count - before <= 3
    kernels = lambda tree: jax.tree.map(lambda leaf: leaf.ndim > 1, tree)  # noqa: E731 -- biases are not decayed
    for i, (clip, wd) in enumerate(settings):
        adamw = optax.adamw(0.03, b1=0.9, b2=0.999, eps=1e-7, weight_decay=wd, mask=kernels)
        tx = adamw if clip is None else optax.chain(optax.clip_by_global_norm(clip), adamw)
        want, points = reference(ds, specs[i], tx)
        _equal_history(out, i, want)
        for a, b in zip(jax.tree.leaves(engine.trial_params(out, i)), jax.tree.leaves(points[-1]), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    # the settings change the numbers (the comparison above can fail)
    assert len({round(float(v), 6) for v in out.history["train_loss"][-1]}) == 3


def test_unset_clip_and_decay_leave_the_config_and_id_as_before():
    plain = _spec("adam", 0)
    assert "weight_decay" not in plain.as_dict()["regularization"]
    assert "clip_norm" not in plain.as_dict()["regularization"]
    decayed = _spec("adam", 0, Regularization(weight_decay=1e-4, clip_norm=1.0)).as_dict()["regularization"]
    assert decayed["weight_decay"] == 1e-4 and decayed["clip_norm"] == 1.0
