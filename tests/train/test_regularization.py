"""Regularizers: exact penalties, dropout modes agree in expectation, augmentation keeps labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dnnbench import data as datamod
from dnnbench.config import ModelConfig, Regularization, Structure, TrainConfig, TrialSpec
from dnnbench.experiments import regularizers
from dnnbench.run import runner
from dnnbench.train import step
from dnnbench.train.models import MLP


def test_penalty_is_exactly_l1_abs_plus_l2_squares_of_weights_not_biases():
    params = nnx.state(MLP(5, (4,), 3, rngs=nnx.Rngs(0)))
    kernels = [np.asarray(params["layers"][i]["kernel"][...]) for i in range(2)]
    expected = 0.01 * sum(np.abs(k).sum() for k in kernels) + 0.1 * sum((k**2).sum() for k in kernels)
    got = float(step.penalty(params, jnp.float32(0.01), jnp.float32(0.1)))
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("rate", [0.2, 0.5])
@pytest.mark.parametrize("mode", ["inverted", "scale-at-test"])
def test_each_dropout_mode_is_unbiased_at_test_time(rate, mode):
    """Test-time output = expectation of the training-time output over dropout masks.

    One dropout site feeding a linear layer makes the expectation exact: inverted dropout scales
    kept inputs by 1/(1-p) while training; the recipe's mode scales W by (1-p) at test.
    """
    model = MLP(6, (64,), 4, rngs=nnx.Rngs(4))
    x = jax.random.uniform(jax.random.key(2), (3, 6))
    keys = jax.random.split(jax.random.key(5), 20000)
    sampled = jax.vmap(lambda k: model(x, dropout_rate=rate, dropout_key=k, dropout_mode=mode))(keys)
    test = model(x, dropout_rate=rate, dropout_mode=mode)
    stderr = np.asarray(sampled.std(0)) / np.sqrt(len(keys))
    assert np.all(np.abs(np.asarray(sampled.mean(0) - test)) < 5 * stderr + 1e-6)


def test_the_two_modes_differ_only_by_where_the_scale_sits():
    model = MLP(6, (64,), 4, rngs=nnx.Rngs(4))
    x = jax.random.uniform(jax.random.key(2), (3, 6))
    inverted = model(x, dropout_rate=0.3, dropout_mode="inverted")
    recipe = model(x, dropout_rate=0.3, dropout_mode="scale-at-test")
    bias = model.layers[1].bias[...]
    np.testing.assert_allclose(recipe - bias, 0.7 * (inverted - bias), rtol=1e-5, atol=1e-6)


def test_augmentation_keeps_labels_and_shapes_and_shifts_pixels():
    data = datamod.load(datamod.DataConfig())
    spec = TrialSpec(reg=Regularization(augment_shift=2))
    sizes = step.Sizes(len(data.y_train), len(data.y_train), len(data.y_val), len(data.y_test), 64, 10, (8, 8))
    plan = step.Plan(spec.structure, sizes, False, False, False, max_shift=2)
    nums = step.Numbers({}, {}, jnp.uint32(0), *(jnp.float32(v) for v in spec.reg.numbers.values()))
    x = jnp.asarray(data.x_train[:50])
    out = step.augment(x, jax.random.key(0), nums, plan)
    assert out.shape == x.shape
    assert not np.allclose(out, x)  # something moved
    # A shift moves pixels, it does not change their values: the multiset of non-zero pixels
    # of an image can only lose pixels at the border, never gain new values.
    assert float(out.max()) <= float(x.max())
    zero = dict(spec.reg.numbers, augment_shift=0.0)
    same = step.augment(
        x, jax.random.key(0), step.Numbers({}, {}, jnp.uint32(0), **{k: jnp.float32(v) for k, v in zero.items()}), plan
    )
    np.testing.assert_array_equal(same, x)  # shift 0 in a padded group is the identity


def test_methods_share_one_compiled_program_and_tag_rows():
    base = TrialSpec(model=ModelConfig(hidden=(8,)), train=TrainConfig(epochs=2, batch_size=16))
    specs = regularizers.method_specs(regularizers.METHODS, base, [0, 1], regularizers.Strengths())
    assert len({s.structure for s in specs}) == 1
    assert len(runner.group_by_structure(specs)) == 1
    assert [dict(s.tags)["regularizer"] for s in specs[::2]] == list(regularizers.METHODS)
    assert isinstance(specs[0].structure, Structure)


def test_unknown_method_is_an_input_error():
    from dnnbench.errors import InputError

    with pytest.raises(InputError, match="unknown regularizer 'weight_decay'; valid: none, l1"):
        regularizers.parse_methods("l2,weight_decay")
