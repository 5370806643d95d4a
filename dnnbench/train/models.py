"""The model: a Flax NNX multilayer perceptron with softmax output, optional residual skips.

The forward pass takes its dynamic numbers (dropout rate, dropout key) as arguments so that the
engine can vmap one compiled program over trials with different rates. Dropout is applied to the
*inputs of every layer after the first* (the hidden activations), as in the recipe and Keras's
reference model with Dropout layers; the raw pixels are never dropped.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
    "selu": jax.nn.selu,
    "swish": jax.nn.swish,
    "linear": lambda x: x,
}

DROPOUT_MODES = ("inverted", "scale-at-test")
PRECISIONS = ("fp32", "bf16")


def _dense(layer: nnx.Linear, x: jax.Array, precision: str) -> jax.Array:
    """``x @ W + b``; in bf16 the matmul inputs are bfloat16, the accumulation float32."""
    kernel = layer.kernel[...]
    if precision == "bf16":
        y = jnp.dot(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    else:
        y = x @ kernel
    return y + layer.bias[...]  # type: ignore[index]  # bias is Optional in nnx.Linear (use_bias=False); ours always have one


class MLP(nnx.Module):
    """``in -> hidden[0] -> ... -> hidden[-1] -> classes`` with softmax applied by the loss.

    ``__call__`` returns logits; ``predict_proba`` the softmax probabilities. With ``residual``,
    every hidden layer whose input and output widths are equal computes
    ``a + act(W a + b) - act(0)`` (a ResNet-style identity skip around a centred branch), which
    keeps deep networks trainable: a deep sigmoid network that stays at chance without the skips
    learns with them (docs/sweeps.md shows the sweep).
    """

    def __init__(
        self,
        n_features: int,
        hidden: tuple[int, ...],
        n_classes: int,
        *,
        activation: str = "relu",
        residual: bool = False,
        precision: str = "fp32",
        rngs: nnx.Rngs,
    ) -> None:
        sizes = (n_features, *hidden, n_classes)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])
        self.activation = activation
        self.residual = residual
        self.precision = precision

    def __call__(
        self,
        x: jax.Array,
        *,
        dropout_rate: jax.Array | float = 0.0,
        dropout_key: jax.Array | None = None,
        dropout_mode: str = "inverted",
    ) -> jax.Array:
        """Logits. ``dropout_key`` given = training mode; ``None`` = test mode."""
        act = ACTIVATIONS[self.activation]
        a = x
        for i, layer in enumerate(self.layers):
            if i > 0:
                a = _dropout(a, dropout_rate, dropout_key, dropout_mode, i)
            z = _dense(layer, a, self.precision)
            if i == len(self.layers) - 1:
                return z
            h = act(z)
            # The branch is centred (act(z) - act(0)): a sigmoid branch would otherwise add ~0.5 per
            # layer and push deep activations ever higher; for relu, tanh and gelu act(0) = 0.
            a = a + (h - act(jnp.zeros((), h.dtype))) if self.residual and a.shape[-1] == h.shape[-1] else h
        raise AssertionError("unreachable: the MLP has at least one layer")

    def predict_proba(self, x: jax.Array, **kwargs) -> jax.Array:
        return jax.nn.softmax(self(x, **kwargs), axis=-1)


def _dropout(a: jax.Array, rate: jax.Array | float, key: jax.Array | None, mode: str, layer: int) -> jax.Array:
    """Drop each input of a layer with probability ``rate``.

    ``inverted``: scale the kept inputs by 1/(1-p) at training, nothing at test.
    ``scale-at-test`` (the recipe): no scaling at training; at test the inputs are multiplied by
    (1-p), which is the same as using ``W_test = W * (1-p)`` for the layer they feed.
    """
    rate = jnp.asarray(rate, a.dtype)
    keep = 1.0 - rate
    if key is None:
        return a * keep if mode == "scale-at-test" else a
    mask = jax.random.bernoulli(jax.random.fold_in(key, layer), keep, a.shape)
    if mode == "scale-at-test":
        return jnp.where(mask, a, 0.0)
    # jnp.where keeps p = 0 exact (a / 1.0) and avoids 0/0 when p -> 1.
    return jnp.where(mask, a / jnp.maximum(keep, 1e-6), 0.0)


def weight_count(n_features: int, hidden: tuple[int, ...], n_classes: int, *, biases: bool = True) -> int:
    """Parameters of the MLP ``n_features -> hidden -> n_classes`` (the FLOP and memory estimates'
    unit: training costs 6 FLOP per weight per sample)."""
    sizes = (n_features, *hidden, n_classes)
    return sum(a * b + (b if biases else 0) for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def layer_kernels(params: nnx.State) -> list[jax.Array]:
    """The weight matrices of ``params`` (an MLP's ``nnx.State``), input layer first."""
    # nnx.State indexes to `State | Any`: the checker cannot see that a leaf's [...] is the array
    return [params["layers"][i]["kernel"][...] for i in range(len(params["layers"]))]  # type: ignore[misc]
