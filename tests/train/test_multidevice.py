"""The trial axis sharded over several devices gives the numbers of one device.

Runs a child process with XLA_FLAGS=--xla_force_host_platform_device_count=4 (XLA's CPU backend
then shows four devices) and compares its histories with the same group trained here on one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from dnnbench.config import ModelConfig, Regularization, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.train import engine

# The group both processes train: 3 trials of one structure (different seeds, rates, dropout).
GROUP = textwrap.dedent("""
    data = split(sources.load_synthetic(train=240, test=60, features=6, classes=3, seed=5), 0.1)
    specs = [TrialSpec(optimizer="adam", hyperparams=(("learning_rate", lr),), seed=seed,
                       model=ModelConfig(hidden=(8,)), train=TrainConfig(epochs=3, batch_size=24),
                       reg=Regularization(dropout=p))
             for seed, lr, p in ((0, 1e-3, 0.0), (1, 3e-3, 0.2), (2, 1e-2, 0.0))]
""")

SCRIPT = (
    textwrap.dedent("""
    import json, sys
    import jax
    from dnnbench.train import engine
    from dnnbench.config import ModelConfig, Regularization, TrainConfig, TrialSpec
    from dnnbench.data import sources, split
    assert jax.local_device_count() == 4, jax.local_devices()
""")
    + GROUP
    + textwrap.dedent("""
    out = engine.train_group(specs, data)
    placed = {str(d) for d in jax.tree.leaves(out.params)[0].sharding.device_set}
    json.dump({"history": {k: v.tolist() for k, v in out.history.items()}, "devices": sorted(placed),
               "n_params": len(jax.tree.leaves(out.params)[0])}, sys.stdout)
""")
)


def test_sharded_trial_axis_matches_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    child = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    sharded = json.loads(child.stdout)
    assert len(sharded["devices"]) == 4  # the 3 trials (padded to 4) were spread over 4 devices
    assert sharded["n_params"] == 3  # the padding trial is dropped

    group: dict = {
        "split": split,
        "sources": sources,
        "TrialSpec": TrialSpec,
        "ModelConfig": ModelConfig,
        "TrainConfig": TrainConfig,
        "Regularization": Regularization,
    }
    exec(GROUP, group)  # the very group the child trained
    single = engine.train_group(group["specs"], group["data"])
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "grad_norm"):
        np.testing.assert_allclose(
            np.asarray(sharded["history"][key]), single.history[key], rtol=1e-5, atol=1e-6, err_msg=key
        )
