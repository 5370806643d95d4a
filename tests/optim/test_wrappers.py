"""Optimizers as their authors run them: wrappers named ``wrapper(inner)``, updates that need the
loss, evaluation points. Each composed transformation equals optax's own built by hand; polyak_sgd
and momo equal NumPy implementations of their published rules; what cannot run says why."""

from __future__ import annotations

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

from dnnbench import optim
from dnnbench.errors import InputError
from dnnbench.experiments import options, sweep
from dnnbench.optim import wrappers

F32 = np.float32


@pytest.fixture(autouse=True)
def _fresh_specs():
    optim._resolve.cache_clear()
    yield
    optim._resolve.cache_clear()


def _params():
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((3, 4)).astype(F32), "b": rng.standard_normal(4).astype(F32)}


# A least-squares loss of the params (w, b): what the "training step" of these tests minimises.
_X = np.random.default_rng(2).standard_normal((6, 3)).astype(F32)
_Y = np.random.default_rng(3).standard_normal((6, 4)).astype(F32)


def _loss(p):
    return 0.5 * jnp.mean(jnp.sum((_X @ p["w"] + p["b"] - _Y) ** 2, axis=1))


def _run(tx, params, steps, extra_args=()):
    """``steps`` updates of ``tx`` on ``_loss``, given the extra arguments it asks for."""
    params = jax.tree.map(jnp.asarray, params)
    state = tx.init(params)
    for _ in range(steps):
        value, grad = jax.value_and_grad(_loss)(params)
        given = {"value": value, "grad": grad, "value_fn": _loss, "obj_fn": _loss}
        updates, state = tx.update(grad, state, params, **{k: given[k] for k in extra_args})
        params = optax.apply_updates(params, updates)
    return jax.tree.map(np.asarray, params), state


def _close(got, want, rtol=1e-5, atol=1e-6):
    for leaf in want:
        np.testing.assert_allclose(got[leaf], want[leaf], rtol=rtol, atol=atol, err_msg=leaf)


def _np_loss_and_grad(p):
    r = _X @ p["w"] + p["b"] - _Y
    n = F32(len(_X))
    return F32(0.5) * np.sum(r * r) / n, {"w": _X.T @ r / n, "b": r.sum(0) / n}


def test_polyak_sgd_is_the_published_sps_max_rule_with_learning_rate_as_its_bound():
    """Loizou et al. 2021, SPS_max with c = 1: x -= min((f(x) - f*) / (|g|^2 + eps), gamma_b) g."""
    opt = optim.resolve_spec("polyak_sgd")
    values = opt.hyperparams(0.3, f_min=0.05, eps=1e-3)
    assert opt.extra_args(values) == ("value", "grad", "value_fn")
    got, _ = _run(opt.transformation(values), _params(), 8, opt.extra_args(values))
    x = _params()
    for _ in range(8):
        f, g = _np_loss_and_grad(x)
        sq = sum(np.sum(v * v) for v in g.values())
        step = min((f - F32(0.05)) / (sq + F32(1e-3)), F32(0.3))
        x = {k: x[k] - step * g[k] for k in x}
    _close(got, x)
    # the bound binds: a smaller learning rate is a smaller first step
    small, _ = _run(opt.transformation(opt.hyperparams(0.01)), _params(), 1, ("value",))
    f, g = _np_loss_and_grad(_params())
    _close(small, {k: _params()[k] - F32(0.01) * g[k] for k in g})


def test_momo_is_the_published_rule():
    """Schaipp et al. 2023, Algorithm 1 (MoMo, lower bound f* = 0, no weight decay): averages
    f_k, d_k, gamma_k with beta (the first step takes the first values), then
    x -= min(alpha, (f_k + <d_k, x> - gamma_k - f*)_+ / |d_k|^2) d_k."""
    opt = optim.resolve_spec("optax.contrib.momo")
    values = opt.hyperparams(0.5, beta=0.8)
    got, _ = _run(opt.transformation(values), _params(), 8, opt.extra_args(values))
    x = _params()
    fbar = gamma = F32(0)
    d = {k: np.zeros_like(v) for k, v in x.items()}
    for t in range(8):
        f, g = _np_loss_and_grad(x)
        b = F32(0.0 if t == 0 else 0.8)
        fbar = b * fbar + (1 - b) * f
        d = {k: b * d[k] + (1 - b) * g[k] for k in x}
        gamma = b * gamma + (1 - b) * sum(np.sum(g[k] * x[k]) for k in x)
        inner = sum(np.sum(d[k] * x[k]) for k in x)
        tau = min(F32(0.5), max(fbar + inner - gamma, F32(0)) / sum(np.sum(d[k] * d[k]) for k in x))
        x = {k: x[k] - tau * d[k] for k in x}
    _close(got, x, rtol=2e-5)


def test_loss_needing_optimizers_ask_for_what_their_update_reads():
    for spec, wanted in (
        ("adam", ()),
        ("optax.contrib.schedule_free_sgd", ()),
        ("optax.contrib.momo_adam", ("value", "grad", "value_fn")),
        ("lbfgs", ("value", "grad", "value_fn")),  # its line search refuses obj_fn
        ("optax.contrib.sophia", ("value", "grad", "value_fn", "obj_fn")),
        ("reduce_on_plateau(adam)", ("value", "grad", "value_fn")),
    ):
        opt = optim.resolve_spec(spec)
        assert opt.extra_args(opt.hyperparams()) == wanted, spec


def test_a_strict_update_signature_is_read_not_probed(tmp_path):
    mine = tmp_path / "strict.py"
    mine.write_text(
        textwrap.dedent(
            """
            import optax

            def make(learning_rate=0.1):
                sgd = optax.sgd(learning_rate)
                def update(updates, state, params=None, *, value):
                    scaled = optax.tree.scale(1.0 / (1.0 + value), updates)
                    return sgd.update(scaled, state, params)
                return optax.GradientTransformationExtraArgs(sgd.init, update)
            """
        )
    )
    opt = optim.resolve_spec(f"{mine}:make")
    values = opt.hyperparams()
    assert opt.extra_args(values) == ("value",)  # grad or value_fn would be a TypeError here
    got, _ = _run(opt.transformation(values), _params(), 1, ("value",))
    f, g = _np_loss_and_grad(_params())
    _close(got, {k: _params()[k] - F32(0.1) / (1 + f) * g[k] for k in g})


def test_lookahead_keeps_the_slow_weights_in_its_state_as_optax_keeps_them_in_the_params():
    opt = optim.resolve_spec("lookahead(adam)")
    values = opt.hyperparams(0.05, **{"lookahead.sync_period": 3, "lookahead.slow_step_size": 0.4, "adam.b1": 0.7})
    got, state = _run(opt.transformation(values), _params(), 7)
    ref = optax.lookahead(optim.build("adam", 0.05, b1=0.7), 3, 0.4)
    pair = optax.LookaheadParams.init_synced(jax.tree.map(jnp.asarray, _params()))
    ref_state = ref.init(pair)
    for _ in range(7):
        updates, ref_state = ref.update(jax.grad(_loss)(pair.fast), ref_state, pair)
        pair = optax.apply_updates(pair, updates)
    _close(got, jax.tree.map(np.asarray, pair.fast))
    _close(jax.tree.map(np.asarray, opt.evaluation_params(state, None)), jax.tree.map(np.asarray, pair.slow))
    assert not np.allclose(np.asarray(pair.slow["w"]), np.asarray(pair.fast["w"]))  # 7 = 2 syncs + 1 step


def test_schedule_free_mechanize_multi_steps_and_reduce_on_plateau_equal_optax_built_by_hand():
    p0 = jax.tree.map(jnp.asarray, _params())
    sgd, adam = optim.build("sgd", 0.2), optim.build("adam", 0.05, b1=0.0)
    cases = {
        "schedule_free(sgd)": (
            {"learning_rate": 0.2, "schedule_free.b1": 0.8},
            optax.contrib.schedule_free(sgd, 0.2, b1=0.8),
        ),
        "mechanize(sgd)": ({"learning_rate": 0.2}, optax.contrib.mechanize(sgd)),
        "multi_steps(adam)": (
            {"learning_rate": 0.05, "multi_steps.every_k_schedule": 2, "adam.b1": 0.0},
            optax.MultiSteps(adam, 2).gradient_transformation(),
        ),
        "reduce_on_plateau(sgd)": (
            {"learning_rate": 0.2, "reduce_on_plateau.patience": 1, "reduce_on_plateau.factor": 0.5},
            optax.chain(sgd, optax.contrib.reduce_on_plateau(factor=0.5, patience=1)),
        ),
    }
    for spec, (given, ref) in cases.items():
        opt = optim.resolve_spec(spec)
        values = opt.hyperparams(**given)
        got, _ = _run(opt.transformation(values), _params(), 6, opt.extra_args(values))
        want, _ = _run(ref, _params(), 6, opt.extra_args(values))
        _close(got, want)
        assert not np.allclose(got["w"], np.asarray(p0["w"])), spec
    # schedule-free is evaluated at x, which is not the point it trains
    opt = optim.resolve_spec("schedule_free(sgd)")
    values = opt.hyperparams(0.2)
    got, state = _run(opt.transformation(values), _params(), 4)
    _, ref_state = _run(optax.contrib.schedule_free(sgd, 0.2, b1=0.9), _params(), 4)
    x = optax.contrib.schedule_free_eval_params(ref_state, jax.tree.map(jnp.asarray, got))
    _close(jax.tree.map(np.asarray, opt.evaluation_params(state, got)), jax.tree.map(np.asarray, x))
    assert not np.allclose(np.asarray(x["w"]), got["w"])


def test_composed_numbers_are_named_by_part_and_live_in_the_state():
    opt = optim.resolve_spec("schedule_free(adam)")
    assert opt.kind == "composite" and opt.default_lr == 1e-3
    defaults = opt.hyperparams()
    # the authors switch the inner optimizer's momentum off; the wrapper's b1 is its own
    assert defaults["adam.b1"] == 0.0 and defaults["schedule_free.b1"] == 0.9
    assert set(opt.numbers(defaults)) == {
        "learning_rate",
        "schedule_free.b1",
        "schedule_free.weight_lr_power",
        "adam.b1",
        "adam.b2",
        "adam.eps",
    }
    nested = optim.resolve_spec("lookahead(schedule_free(momentum))")
    assert {"lookahead.sync_period", "schedule_free.b1", "momentum.momentum"} <= set(nested.param)
    assert nested.hyperparams()["momentum.momentum"] == 0.0
    assert nested.eval_params is not None  # lookahead's slow weights win over schedule-free's x
    assert optim.resolve_spec("mechanize(momentum)").default_lr == 1.0  # optax: "base learning rate 1.0"
    assert optim.origin("lookahead(adam)")["inner"]["kind"] == "builtin"
    with pytest.raises(InputError, match="multi_steps.every_k_schedule"):
        optim.resolve("multi_steps(adam)")
    with pytest.raises(InputError, match="out of range|\\[0, 1\\)"):
        optim.resolve("lookahead(adam)", **{"adam.b1": 1.5})


def test_hp_and_vary_set_a_wrapper_or_its_inner_optimizer_by_part():
    run = ["adam", "lookahead(adam)", "schedule_free(sgd)"]
    hp = options.parse_hp(["lookahead.sync_period=7", "adam.b1=0.95", "b1=0.5"])
    given = options.apply_hp(hp, run)
    assert given["adam"] == {"b1": "0.95"}
    assert given["lookahead(adam)"] == {"lookahead.sync_period": "7", "adam.b1": "0.95"}
    assert given["schedule_free(sgd)"] == {"schedule_free.b1": "0.5"}
    for bad, words in (
        (["lookahead.period=7"], ["lookahead.period", "lookahead.sync_period"]),
        (["mechanize.eps=1"], ["mechanize", "not being run"]),
    ):
        with pytest.raises(InputError) as err:
            options.apply_hp(options.parse_hp(bad), run)
        assert all(word in str(err.value) for word in words), str(err.value)
    factors = sweep.parse_vary(["lookahead.slow_step_size=0.3,0.6"], "lookahead(adam)")
    assert [value for _, value in factors["lookahead.slow_step_size"]] == ["0.3", "0.6"]


def test_wrappers_and_optimizers_that_cannot_run_say_why():
    for spec, words in (
        ("lookahead", ["wraps another optimizer", "lookahead(adam)"]),
        ("optax.contrib.schedule_free", ["schedule_free(<optimizer>)", "--hp schedule_free."]),
        ("optax.contrib.sam", ["second gradient", "grad_fn"]),
        ("optax.contrib.dpsgd", ["per-example gradients", "vmap"]),
        ("warmup(adam)", ["not a wrapper", "lookahead", "reduce_on_plateau"]),
        ("lookahead(lookahead(adam))", ["names the wrapper lookahead twice"]),
    ):
        with pytest.raises(InputError) as err:
            optim.resolve_spec(spec)
        assert all(word in str(err.value) for word in words), str(err.value)


def test_a_factory_declares_its_evaluation_point(tmp_path):
    mine = tmp_path / "sf.py"
    mine.write_text(
        textwrap.dedent(
            """
            import optax

            def make(learning_rate=0.3, b1=0.9):
                return optax.contrib.schedule_free_sgd(learning_rate, b1=b1)

            make.eval_params = optax.contrib.schedule_free_eval_params
            """
        )
    )
    opt = optim.resolve_spec(f"{mine}:make")
    got, state = _run(opt.transformation(opt.hyperparams(b1=0.7)), _params(), 3)
    _, ref_state = _run(optax.contrib.schedule_free_sgd(0.3, b1=0.7), _params(), 3)
    want = optax.contrib.schedule_free_eval_params(ref_state, jax.tree.map(jnp.asarray, got))
    _close(jax.tree.map(np.asarray, opt.evaluation_params(state, got)), jax.tree.map(np.asarray, want))
    assert wrappers.OPTAX_EVAL_PARAMS["optax.contrib.schedule_free_adamw"] is not None


def test_loss_needing_and_wrapped_optimizers_train_on_digits_each_as_one_executable(tmp_path, capsys):
    """The acceptance command, small: hidden 32, 2 epochs, 2 seeds (the 3-epoch run on the default
    MLP is quoted in docs/optimizers.md)."""
    from dnnbench.cli import main

    out = tmp_path / "r.jsonl"
    specs = "polyak_sgd,optax.contrib.momo,optax.contrib.sophia,lbfgs,lookahead(adam)"
    argv = ["optimizers", "--optimizers", specs, "--hidden", "32", "--epochs", "2", "--seeds", "2", "--quiet"]
    # adam's 1e-3 needs more than 2 epochs of this small net; the rest run at their defaults
    assert main([*argv, "--lr", "lookahead(adam)=0.01", "--out", str(out)]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    trials = [r for r in rows if r["type"] == "trial"]
    assert [r["optimizer"] for r in trials[::2]] == specs.split(",")
    for r in trials:
        assert r["status"] == "ok", r["optimizer"]
        assert r["timing"]["executable_trials"] == 2, r["optimizer"]  # the two seeds: one program
        losses = r["history"]["train_loss"]
        assert losses[-1] < losses[0] and r["metrics"]["test_acc"] > 0.3, (r["optimizer"], r["metrics"])
