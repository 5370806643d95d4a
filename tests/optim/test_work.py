"""The work inside an update (``optim/work.py``): a static integer that repeats work in every update is
bounded before anything trains."""

from __future__ import annotations

import time

LOOPS = """\
import jax
import optax


def make(learning_rate=0.01, n: int = 2):
    inner = optax.sgd(learning_rate)

    def update(grads, state, params=None):
        for _ in range(n):  # unrolled when traced: n copies in the program
            grads = jax.tree.map(lambda x: x * 1.0, grads)
        return inner.update(grads, state, params)

    return optax.GradientTransformation(inner.init, update)
"""


def test_class_14_a_static_integer_that_repeats_work_in_every_update_is_bounded(tmp_path, no_training, run, tiny):
    start = time.monotonic()
    code, _, err = run("diagnose", *tiny, "--optimizer", "optax.contrib.muon", "--hp", "ns_steps=100000000")
    assert code == 2
    assert "ns_steps=100000000 repeats work inside every update" in err and "ns_steps <= " in err
    (tmp_path / "loop.py").write_text(LOOPS)
    code, _, err = run("diagnose", *tiny, "--optimizer", f"{tmp_path / 'loop.py'}:make", "--hp", "n=100000000")
    assert code == 2 and "n=100000000 repeats work inside every update" in err, err
    assert time.monotonic() - start < 120
    # values near the default, and static integers that loop nothing (adafactor's size threshold), are free
    assert optim_hyperparams("optax.contrib.muon", ns_steps=8)["ns_steps"] == 8
    assert optim_hyperparams("optax.adafactor", min_dim_size_to_factor=10**8)["min_dim_size_to_factor"] == 10**8


def optim_hyperparams(spec: str, **given: object) -> dict:
    from dnnbench import optim

    return optim.resolve(spec, None, **given)
