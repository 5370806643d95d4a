"""The engine: a vmapped group equals its trials run one by one, seeds reproduce, executables are
reused, optimizers are paired (same weights, same batches), divergence and early stopping are
recorded correctly. Tiny synthetic data keeps every compilation to a second or two."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnnbench.config import MAX_SEED, DataConfig, ModelConfig, Regularization, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.errors import InputError
from dnnbench.results import rows as results
from dnnbench.results.metrics import EPOCH
from dnnbench.run import runner
from dnnbench.train import engine
from dnnbench.train import step as core

MODEL = ModelConfig(hidden=(16,))
TRAIN = TrainConfig(epochs=3, batch_size=20)
RUN_DATA = DataConfig(dataset="synthetic:train=200,test=50,features=8,classes=3")


@pytest.fixture(scope="module")
def ds():
    return split(sources.load_synthetic(train=200, test=50, features=8, classes=3), 0.1)


def spec(
    optimizer: str = "adam",
    lr: float | None = None,
    seed: int = 0,
    *,
    model: ModelConfig = MODEL,
    train: TrainConfig = TRAIN,
    reg: Regularization | None = None,
    **hp: float,
) -> TrialSpec:
    given = {**({"learning_rate": lr} if lr is not None else {}), **hp}
    return TrialSpec(
        optimizer=optimizer,
        hyperparams=tuple(given.items()),
        seed=seed,
        model=model,
        train=train,
        reg=reg or Regularization(),
    )


GROUP = (spec("adam", 0.01, 0), spec("adam", 0.003, 1), spec("adam", 0.03, 2))


@pytest.fixture(scope="module")
def group(ds):
    return engine.train_group(GROUP, ds)


def test_vmapped_group_equals_sequential_trials(ds, group):
    for i, one in enumerate(GROUP):
        alone = engine.train_group([one], ds)
        assert set(alone.history) == set(group.history)
        for name, values in group.history.items():
            np.testing.assert_allclose(
                alone.history[name][:, 0], values[:, i], rtol=1e-5, atol=1e-6, err_msg=f"trial {i} {name}"
            )
        for a, b in zip(
            jax.tree.leaves(engine.trial_params(alone, 0)), jax.tree.leaves(engine.trial_params(group, i)), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # the three trials really are different experiments
    assert not np.allclose(group.history["train_loss"][:, 0], group.history["train_loss"][:, 1])
    assert not np.allclose(group.history["train_loss"][:, 0], group.history["train_loss"][:, 2])


def _state_axes(specs, ds):
    group = engine._setup(tuple(specs), ds)
    init_params_fn = core.make_init_params(group.plan)
    init_fn, epoch_fn, _ = core.make_trial_fns(group.plan)
    params = jax.eval_shape(jax.vmap(init_params_fn), group.numbers.seed)
    return engine._state_axes(init_fn, epoch_fn, params, group.numbers, group.data)


def test_lockstep_step_counters_are_shared_and_change_no_number(ds):
    # GaLore recomputes its projection (an SVD) when count % update_proj_gap == 0: with the count
    # shared by the group, lax.cond stays a branch instead of computing the SVD at every step.
    specs = [spec("optax.contrib.galore", lr, i, update_proj_gap=2) for i, lr in enumerate((0.01, 0.003, 0.03))]
    axes = _state_axes(specs, ds)
    assert axes != 0 and None in jax.tree.leaves(axes.opt_state, is_leaf=lambda a: a is None)
    assert jax.tree.leaves(axes.params) == [0] * len(jax.tree.leaves(axes.params))
    group = engine.train_group(specs, ds)
    for i, one in enumerate(specs):
        alone = engine.train_group([one], ds)
        for name, values in group.history.items():
            np.testing.assert_allclose(
                alone.history[name][:, 0], values[:, i], rtol=1e-5, atol=1e-6, err_msg=f"trial {i} {name}"
            )
    assert not np.allclose(group.history["train_loss"][:, 0], group.history["train_loss"][:, 1])


def test_step_counters_stay_per_trial_where_trials_can_differ(ds):
    # early stopping freezes a stopped trial's optimizer state, counter included
    stopping = Regularization(early_stopping=True, patience=1)
    assert _state_axes([spec("adam", 0.01, 0, reg=stopping), spec("adam", 0.02, 1, reg=stopping)], ds) == 0
    assert _state_axes([spec("adam", 0.01, 0), spec("adam", 0.02, 1)], ds) != 0


@pytest.mark.parametrize(
    "members",
    [
        (spec("sgd", 0.1, 0), spec("sgd", 0.05, 1)),
        (spec("optax.contrib.schedule_free_adamw", 0.01, 0),),  # evaluated at other weights than it trains
        (spec("sgd", 0.1, 0, reg=Regularization(early_stopping=True, patience=1, dropout=0.2)),),
    ],
    ids=["sgd", "schedule-free", "early-stopping"],
)
def test_a_group_trained_in_parts_gives_the_numbers_of_one_call(ds, members):
    """What a worker hands another (``Progress``, pickled as between processes) resumes the very
    steps one ``train_group`` trains, at an epoch's end or inside one: the same history and
    weights, bit for bit."""
    import pickle

    members = tuple(dataclasses.replace(m, train=TrainConfig(epochs=4, batch_size=20)) for m in members)
    steps = len(ds.y_train) // 20
    assert steps > 4
    whole = engine.train_group(members, ds)
    part = engine.train_part(members, ds, until_step=steps // 2)  # inside the first epoch
    assert isinstance(part, engine.Progress) and (part.epochs_done, part.steps_into_epoch) == (0, steps // 2)
    assert part.rows == ()  # an epoch's metrics come with the call that ends it
    part = engine.train_part(members, ds, start=pickle.loads(pickle.dumps(part)), until_step=steps)
    assert isinstance(part, engine.Progress) and (part.epochs_done, part.steps_into_epoch) == (1, 0)
    assert len(part.rows) == 1
    part = engine.train_part(members, ds, start=pickle.loads(pickle.dumps(part)), until_step=2 * steps + 3)
    assert isinstance(part, engine.Progress) and (part.epochs_done, part.steps_into_epoch) == (2, 3)
    parts = engine.train_part(members, ds, start=pickle.loads(pickle.dumps(part)))
    assert isinstance(parts, engine.GroupOutput)
    assert parts.history.keys() == whole.history.keys()
    for name, values in whole.history.items():
        np.testing.assert_array_equal(parts.history[name], values, err_msg=name)
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(parts.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(parts.best_epoch, whole.best_epoch)
    np.testing.assert_array_equal(parts.stopped_epoch, whole.stopped_epoch)
    assert parts.samples_seen == whole.samples_seen


def test_same_seed_gives_identical_histories(ds, group):
    again = engine.train_group(GROUP, ds)
    for name, values in group.history.items():
        np.testing.assert_array_equal(again.history[name], values, err_msg=name)
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(group.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_executables_are_reused_across_numbers_but_not_shapes(ds, group):
    before = engine.compile_count
    engine.train_group(GROUP, ds)
    assert engine.compile_count == before
    other_numbers = [dataclasses.replace(s, hyperparams=(("learning_rate", 0.5),), seed=s.seed + 7) for s in GROUP]
    out = engine.train_group(other_numbers, ds)
    assert engine.compile_count == before
    assert not np.allclose(out.history["train_loss"], group.history["train_loss"])
    wider = [dataclasses.replace(s, model=ModelConfig(hidden=(13,))) for s in GROUP]
    engine.train_group(wider, ds)
    assert engine.compile_count > before


def test_history_has_every_metric_per_epoch_and_grad_norm_per_layer(ds, group):
    epochs, trials, layers = TRAIN.epochs, len(GROUP), len(MODEL.hidden) + 1
    for name in (*EPOCH, "step_loss"):
        assert group.history[name].shape == (epochs, trials), name
        assert np.isfinite(group.history[name]).all(), name
    for name in ("train_acc", "val_acc", "test_acc"):
        assert ((group.history[name] >= 0) & (group.history[name] <= 1)).all()
    assert group.history["grad_norm"].shape == (epochs, trials, layers)
    assert (group.history["grad_norm"] > 0).all()
    # adam learns: the training loss falls for every trial
    assert (group.history["train_loss"][-1] < group.history["train_loss"][0]).all()
    row = results.from_group(group, 0, {}, trials)
    assert set(row.history) >= {*EPOCH, "grad_norm"}
    assert all(len(row.history[name]) == epochs for name in EPOCH)
    assert [len(per_epoch) for per_epoch in row.history["grad_norm"]] == [layers] * epochs


def test_history_metrics_are_the_final_weights_evaluated(ds, group):
    """The last epoch's train/val/test numbers are what evaluate() says of the final weights."""
    for i, s in enumerate(GROUP):
        params = engine.trial_params(group, i)
        for split_name in ("train", "val", "test"):
            got = engine.evaluate(
                group.graphdef,
                params,
                getattr(ds, f"x_{split_name}"),
                getattr(ds, f"y_{split_name}"),
                loss=s.train.loss,
            )
            assert got["loss"] == pytest.approx(group.history[f"{split_name}_loss"][-1, i], rel=1e-5)
            assert got["acc"] == group.history[f"{split_name}_acc"][-1, i]


def test_same_seed_same_initial_weights_for_every_optimizer(ds):
    _, sizes = engine.to_device(ds)
    plans = [
        core.Plan(s.structure, sizes, uses_dropout=False, uses_noise=False, uses_early_stopping=False)
        for s in (spec("sgd"), spec("adam"), spec("rmsprop"))
    ]
    inits = [jax.jit(core.make_init_params(plan))(jnp.uint32(3)) for plan in plans]
    for other in inits[1:]:
        for a, b in zip(jax.tree.leaves(inits[0]), jax.tree.leaves(other), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    seed4 = jax.jit(core.make_init_params(plans[0]))(jnp.uint32(4))
    assert not np.array_equal(np.asarray(jax.tree.leaves(seed4)[-1]), np.asarray(jax.tree.leaves(inits[0])[-1]))


@pytest.fixture(scope="module")
def comparison(ds):
    """One run: a diverging SGD next to a healthy one (same program), momentum with lambda = 0 on
    two seeds, and adam."""
    specs = (
        spec("sgd", 1e6, 0),
        spec("sgd", 0.1, 0),
        spec("momentum", 0.1, 0, momentum=0.0),
        spec("momentum", 0.1, 1, momentum=0.0),
        spec("adam", 0.01, 0),
    )
    return runner.execute(runner.Run(specs, data=RUN_DATA), ds)


def test_optimizers_are_paired_same_weights_and_batch_order(comparison):
    """momentum with lambda = 0 is exactly SGD: equal histories prove equal initial weights and
    equal batch order across two optimizers (separate compiled programs); another seed differs."""
    _, sgd, mom0, mom1, _ = comparison
    for name in (*EPOCH, "grad_norm"):
        np.testing.assert_allclose(
            np.asarray(mom0.history[name]), np.asarray(sgd.history[name]), rtol=1e-5, atol=1e-6, err_msg=name
        )
    assert abs(mom1.history["train_loss"][0] - sgd.history["train_loss"][0]) > 1e-3


def test_divergence_is_recorded_per_trial(comparison):
    diverged, sgd, _, _, adam = comparison
    assert diverged.status == "diverged"
    assert isinstance(diverged.diverged_epoch, int)
    assert 1 <= diverged.diverged_epoch <= TRAIN.epochs
    assert diverged.diagnosis["label"] == "diverged"
    assert diverged.to_row()["status"] == "diverged"
    for healthy in (sgd, adam):  # the trial vmapped next to the diverged one is untouched
        assert healthy.status == "ok"
        assert healthy.diverged_epoch is None
        assert set(healthy.metrics) >= set(EPOCH)
        assert all(np.isfinite(v) for v in healthy.metrics.values())
        assert healthy.diagnosis["label"] != "diverged"
    assert sgd.history["train_loss"][-1] < sgd.history["train_loss"][0]


def test_early_stopping_restores_the_best_epoch(ds):
    train = TrainConfig(epochs=6, batch_size=20)
    stopping = Regularization(early_stopping=True, patience=1)
    specs = (spec("sgd", 0.2, 0, train=train, reg=stopping), spec("sgd", 0.2, 0, train=train))
    stopped, full = runner.execute(runner.Run(specs, data=RUN_DATA), ds)
    # this setting stops early (val loss rises at epoch 3) -- otherwise the test would prove nothing
    assert stopped.stopped_epoch is not None
    assert stopped.stopped_epoch < train.epochs
    assert len(stopped.history["val_loss"]) == stopped.stopped_epoch
    best = stopped.best_epoch
    assert 1 <= best < stopped.stopped_epoch
    assert stopped.history["val_loss"][best - 1] == min(stopped.history["val_loss"])
    for key in EPOCH:
        assert stopped.metrics[key] == stopped.history[key][best - 1], key
    assert stopped.extra["early_stopping"]["restored_epoch"] == best
    # the final weights ARE the best epoch's weights, not the last epoch's
    val = engine.evaluate(stopped.graphdef, stopped.params, ds.x_val, ds.y_val)
    assert val["loss"] == pytest.approx(stopped.history["val_loss"][best - 1], rel=1e-5)
    assert val["acc"] == stopped.history["val_acc"][best - 1]
    assert abs(val["loss"] - stopped.history["val_loss"][-1]) > 1e-4
    # the trial without early stopping in the same program ran every epoch, unaffected
    assert full.stopped_epoch is None
    assert len(full.history["val_loss"]) == train.epochs
    np.testing.assert_allclose(
        full.history["val_loss"][: stopped.stopped_epoch], stopped.history["val_loss"], rtol=1e-5, atol=1e-6
    )
    assert full.metrics["val_loss"] == full.history["val_loss"][-1]


def test_batch_larger_than_training_set_is_input_error(ds):
    with pytest.raises(InputError, match="larger than the training set"):
        engine.train_group([spec(train=TrainConfig(epochs=1, batch_size=1000))], ds)


def test_group_of_mixed_structures_is_rejected(ds):
    with pytest.raises(ValueError, match="one structure"):
        engine.train_group([spec("sgd"), spec("adam")], ds)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_outside_uint32_is_refused_when_the_config_is_built(seed):
    """Seeds travel to the device as uint32: 2**32 would wrap onto seed 0's weights and batches."""
    with pytest.raises(InputError, match=rf"seed must be an integer in \[0, {2**32 - 1}\], got {seed}"):
        spec("sgd", 0.1, seed)


def test_the_largest_seed_trains_with_its_own_numbers(ds):
    train = TrainConfig(epochs=1, batch_size=20)
    out = engine.train_group([spec("sgd", 0.1, 0, train=train), spec("sgd", 0.1, MAX_SEED, train=train)], ds)
    loss = out.history["train_loss"][0]
    assert MAX_SEED == 2**32 - 1
    assert np.isfinite(loss).all()
    assert loss[0] != loss[1]  # its own weights and batches, not wrapped onto seed 0's


def test_training_metrics_use_the_first_train_eval_samples_in_test_mode():
    raw = sources.load_synthetic(train=300, test=40, features=6, classes=3, seed=3)
    data = split(raw, 0.1)
    spec = TrialSpec(
        optimizer="adam",
        model=ModelConfig(hidden=(8,)),
        train=TrainConfig(epochs=2, batch_size=30, train_eval_samples=50),
    )
    out = engine.train_group([spec], data)
    acc = out.history["train_acc"][-1, 0]
    assert acc * 50 == pytest.approx(round(acc * 50))  # a count out of 50, not out of 270
    direct = engine.evaluate(out.graphdef, engine.trial_params(out, 0), data.x_train[:50], data.y_train[:50])
    assert direct["acc"] == acc
    assert direct["loss"] == pytest.approx(out.history["train_loss"][-1, 0], rel=1e-5)


@pytest.mark.parametrize(
    "argv",
    [
        ["diagnose", "--augment-shift", "8"],
        ["regularizers", "--methods", "augment", "--augment-shift", "100"],
        ["sweep", "--vary", "augment_shift=1,9"],
    ],
)
def test_a_shift_as_large_as_the_images_is_refused(argv, run):
    code, _, err = run(*argv, "--hidden", "8", "--epochs", "1", "-q")
    assert code == 2
    assert err.strip() == (
        f"dnnbench: error: augment shift {max(8, *[int(v) for v in argv[-1].split('=')[-1].split(',')])}"
        " pixels is not smaller than the 8x8 images; use at most 7"
    )


def test_class_14_an_unusable_compile_cache_is_said_once(tmp_path, monkeypatch, run, tiny):
    cache = tmp_path / "a-file"
    cache.write_text("")
    monkeypatch.setenv("DNNBENCH_COMPILE_CACHE", str(cache))
    code, _, err = run("tune", *tiny, "--optimizers", "sgd", "--budget", 2, "--seeds", 1, "--json")  # two stages
    assert code == 0, err
    said = [line for line in err.splitlines() if "DNNBENCH_COMPILE_CACHE" in line]
    assert said == [
        f"dnnbench: warning: $DNNBENCH_COMPILE_CACHE {cache}: cannot be made a folder (File exists); "
        "compiled programs are not cached"
    ]
