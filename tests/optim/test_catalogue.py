"""The whole catalogue: ``--optimizers all`` (every optimizer that runs, each once, in a stable
order), ``--list --all`` (rate, source, refusals) and why optimistic_adam stays refused."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dnnbench import optim
from dnnbench.cli import main
from dnnbench.errors import InputError
from dnnbench.experiments import options

TINY = [
    "--dataset",
    "synthetic:train=200,test=50,features=8,classes=3",
    "--hidden",
    "8",
    "--epochs",
    "1",
    "--batch-size",
    "20",
    "--quiet",
]


def test_all_is_every_runnable_optimizer_once_in_a_stable_order():
    names = options.check_optimizers(options.parse_names("all"))
    runnable, refused = optim.every()
    assert names == list(runnable) and len(set(names)) == len(names)
    assert names[: len(optim.NAMES)] == list(optim.NAMES)  # the built-ins first, in their order
    optax_part = [n for n in names if n.startswith("optax.") and not n.startswith("optax.contrib.")]
    contrib_part = [n for n in names if n.startswith("optax.contrib.")]
    assert optax_part == sorted(optax_part) and contrib_part == sorted(contrib_part)
    assert names.index(optax_part[-1]) < names.index(contrib_part[0])
    assert {"optax.lion", "optax.contrib.muon", "optax.contrib.prodigy"} <= set(names)
    # a built-in stands for optax's optimizer of the same name; what cannot run is refused, with a reason
    assert "optax.adam" not in names and "optax.sgd" not in names
    assert "optax.optimistic_adam" in refused and "optax.optimistic_adam" not in names
    assert all(why for why in refused.values())
    # names beside `all` run too, in their place, each once
    assert options.check_optimizers(["adam", "all", "optax.adam"]) == ["adam", *names[:5], *names[6:], "optax.adam"]


def test_all_trains_the_expanded_names(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(optim, "every", lambda: (("sgd", "optax.lion", "optax.contrib.muon"), {}))
    out = tmp_path / "r.jsonl"
    assert main(["optimizers", "--optimizers", "all", *TINY, "--out", str(out)]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()[1:4]]
    assert [r["optimizer"] for r in rows] == ["sgd", "optax.lion", "optax.contrib.muon"]
    assert all(r["status"] == "ok" for r in rows)
    assert rows[2]["hyperparams"]["learning_rate"] == 0.02  # muon at its documented rate


def test_list_all_names_each_rate_its_source_and_each_refusal(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["optimizers", "--list", "--all"]) == 0
    out = capsys.readouterr().out
    assert "0.02: Jordan et al. 2024" in out  # optax.contrib.muon: documented rate and source
    assert "1: Zeiler 2012" in out  # optax.adadelta
    assert "1: its signature" in out  # optax.contrib.prodigy
    assert "0.001: dnnbench's, tuned" in out  # the built-in adam
    assert "cannot run: deprecated in optax; use optax.optimistic_adam_v2" in out
    assert out.count("cannot run: ") == len(optim.every()[1])  # each refusal, with its reason
    assert "optax.adam, optax.adamw" in out  # listed, but `all` leaves them to the built-ins


def test_optimistic_adam_is_refused_and_v2_is_the_same_algorithm():
    with pytest.raises(InputError, match="use optax.optimistic_adam_v2"):
        optim.resolve("optax.optimistic_adam")
    lr, optimism = 0.01, 0.5
    with pytest.warns(DeprecationWarning, match="optimistic_adam_v2"):
        old = optax.optimistic_adam(lr, optimism)
    new = optax.optimistic_adam_v2(1.0, alpha=lr, beta=optimism)
    params = {"w": jnp.asarray(np.linspace(-1, 1, 6, dtype=np.float32))}
    states = old.init(params), new.init(params)
    for step in range(4):
        grads = {"w": jnp.asarray(np.cos(np.arange(6, dtype=np.float32) + step))}
        u_old, s_old = old.update(grads, states[0], params)
        u_new, s_new = new.update(grads, states[1], params)
        np.testing.assert_allclose(np.asarray(u_old["w"]), np.asarray(u_new["w"]), rtol=1e-6)
        states = s_old, s_new
        params = optax.apply_updates(params, u_new)
