"""Pure per-trial numerics: init, one training epoch, evaluation. No jit or vmap here.

``make_trial_fns(plan)`` returns ``init(params, numbers) -> TrialState`` and
``epoch(state, numbers, data, part) -> (state, metrics)`` (the epoch's steps ``part[0]`` to
``part[1]``: all of them but where two workers share an epoch) for ONE trial; the engine vmaps and
compiles them. Randomness is explicit and paired: a trial's keys derive from its seed alone, so for one
seed every optimizer / regularizer starts from the same weights and sees the same batch order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from dnnbench import optim
from dnnbench.config import Structure
from dnnbench.optim import schedules
from dnnbench.train.models import MLP, layer_kernels

REG_KEYS = (
    "l1",
    "l2",
    "dropout",
    "early_stopping",
    "patience",
    "min_delta",
    "augment_noise",
    "augment_shift",
    "weight_decay",
    "clip_norm",
)

# Key streams derived from a trial's seed (fold_in constants keep them independent).
_INIT, _SHUFFLE, _NOISE = 0, 1, 2


@dataclass(frozen=True)
class Sizes:
    n_train: int
    n_train_eval: int
    n_val: int
    n_test: int
    n_features: int
    n_classes: int
    image_shape: tuple[int, int] | None


@dataclass(frozen=True)
class Plan:
    """Everything static about a group's program (hashable: it keys the executable cache)."""

    structure: Structure
    sizes: Sizes
    uses_dropout: bool
    uses_noise: bool
    uses_early_stopping: bool
    max_shift: int = 0  # the largest augmentation shift of the group (pads the images)
    uses_penalty: bool = True  # some trial has l1 > 0 or l2 > 0
    uses_schedule: bool = False  # some trial's learning-rate factor is not always 1
    uses_weight_decay: bool = False  # some trial has weight_decay > 0
    uses_clip: bool = False  # some trial clips its gradient


class DeviceData(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    x_test: jax.Array
    y_test: jax.Array


class Numbers(NamedTuple):
    """One trial's numbers (the engine stacks them along a leading trial axis)."""

    hyperparams: dict[str, jax.Array]  # the optimizer's numbers, learning rate included
    schedule: dict[str, jax.Array]  # the learning-rate schedule's numbers (optim.schedules.NUMBER_KEYS)
    seed: jax.Array
    l1: jax.Array
    l2: jax.Array
    dropout: jax.Array
    early_stopping: jax.Array
    patience: jax.Array
    min_delta: jax.Array
    augment_noise: jax.Array
    augment_shift: jax.Array
    weight_decay: jax.Array
    clip_norm: jax.Array  # inf: not clipped


class TrialState(NamedTuple):
    params: Any  # the weights the optimizer trains (where the gradients are taken)
    opt_state: Any
    eval_params: Any  # where the model is evaluated, for an optimizer that keeps such a point; else None
    best_params: Any  # the evaluated weights of the best epoch (early stopping only; else None)
    best_score: jax.Array
    best_epoch: jax.Array
    bad_epochs: jax.Array
    stopped: jax.Array
    stop_epoch: jax.Array
    epoch: jax.Array
    # Each step's loss and layer gradient norms in the epoch under way: a call that trains only
    # some of an epoch's steps (``epoch``'s ``part``) leaves its steps' here for the call that ends it.
    step_losses: jax.Array
    step_norms: jax.Array


def _model(plan: Plan, key: jax.Array | int) -> MLP:
    m, s = plan.structure.model, plan.sizes
    return MLP(
        s.n_features,
        m.hidden,
        s.n_classes,
        activation=m.activation,
        residual=m.residual,
        precision=m.precision,
        rngs=nnx.Rngs(params=key),
    )


def data_loss(logits: jax.Array, y: jax.Array, loss: str) -> jax.Array:
    """Per-sample loss of the softmax output: cross-entropy, or MSE against the one-hot target."""
    if loss == "ce":
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)
    onehot = jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)
    return jnp.mean((jax.nn.softmax(logits) - onehot) ** 2, axis=-1)


def penalty(params: Any, l1: jax.Array, l2: jax.Array) -> jax.Array:
    """``l1 * sum|W| + l2 * sum W^2`` over the weight matrices (biases are not penalised)."""
    kernels = layer_kernels(params)
    return l1 * sum(jnp.sum(jnp.abs(k)) for k in kernels) + l2 * sum(jnp.sum(k * k) for k in kernels)


def augment(x: jax.Array, key: jax.Array, nums: Numbers, plan: Plan) -> jax.Array:
    """Random shifts of up to ``augment_shift`` pixels (zero fill) and Gaussian noise, per sample.

    The images are padded by the group's largest shift; each trial draws offsets within its own
    shift, so trials with different shifts (0 included) still share one compiled program.
    """
    pad = plan.max_shift
    k_shift, k_noise = jax.random.split(key)
    if pad > 0:
        h, w = plan.sizes.image_shape  # type: ignore[misc]
        images = jnp.pad(x.reshape(-1, h, w), ((0, 0), (pad, pad), (pad, pad)))
        shift = nums.augment_shift.astype(jnp.int32)
        offsets = pad + jax.random.randint(k_shift, (x.shape[0], 2), -shift, shift + 1)
        crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1]), (h, w))  # noqa: E731
        x = jax.vmap(crop)(images, offsets).reshape(x.shape)
    if plan.uses_noise:
        x = x + nums.augment_noise * jax.random.normal(k_noise, x.shape, x.dtype)
    return x


def eval_fn(
    graphdef: Any,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    dropout_rate: jax.Array | float,
    *,
    loss: str,
    dropout_mode: str,
    n: int | None = None,
    chunk: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Summed loss and number of correct predictions over the first ``n`` rows, chunk by chunk."""
    n = x.shape[0] if n is None else n
    chunk = x.shape[0] if chunk is None else chunk
    model = nnx.merge(graphdef, params)

    def one_chunk(start: jax.Array) -> tuple[jax.Array, jax.Array]:
        xb = jax.lax.dynamic_slice_in_dim(x, start, chunk)
        yb = jax.lax.dynamic_slice_in_dim(y, start, chunk)
        logits = model(xb, dropout_rate=dropout_rate, dropout_mode=dropout_mode)
        valid = (start + jnp.arange(chunk)) < n
        losses = jnp.where(valid, data_loss(logits, yb, loss), 0.0)
        correct = jnp.where(valid, jnp.argmax(logits, -1) == yb, False)
        return jnp.sum(losses), jnp.sum(correct)

    starts = jnp.arange(0, -(-n // chunk) * chunk, chunk)  # only the chunks that hold the n rows
    totals, corrects = jax.lax.map(one_chunk, starts)
    return jnp.sum(totals), jnp.sum(corrects).astype(jnp.float32)


def proba_fn(graphdef: Any, params: Any, x: jax.Array, dropout_rate: jax.Array, *, dropout_mode: str) -> jax.Array:
    return nnx.merge(graphdef, params).predict_proba(x, dropout_rate=dropout_rate, dropout_mode=dropout_mode)


def clip_gradient(grads: Any, max_norm: jax.Array) -> Any:
    """``grads`` scaled to global norm ``max_norm`` where it is larger (``optax.clip_by_global_norm``;
    an infinite ``max_norm`` returns them unchanged, bit for bit)."""
    clipped, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
    return clipped


def decoupled_decay(updates: Any, params: Any, rate: jax.Array) -> Any:
    """``updates - rate * W`` for the weight matrices, biases untouched: ``optax.add_decayed_weights``
    with ``rate = learning_rate * weight_decay`` after the optimizer's step, as ``optax.adamw``."""
    decay = optax.add_decayed_weights(-rate, mask=lambda tree: jax.tree.map(lambda leaf: leaf.ndim > 1, tree))
    out, _ = decay.update(updates, decay.init(params), params)
    return out


def make_init_params(plan: Plan):
    """``seed -> initial weights`` of one trial. It depends on the model alone, so every optimizer
    of a comparison shares one compiled copy -- and, for one seed, the very same weights."""

    def init_params(seed: jax.Array) -> Any:
        return nnx.state(_model(plan, jax.random.fold_in(jax.random.key(seed), _INIT)))

    return init_params


def make_trial_fns(plan: Plan):
    """The pure ``init(params, numbers)`` and ``epoch`` functions of one trial, and the graphdef."""
    st, sizes = plan.structure, plan.sizes
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: _model(plan, 0)))
    # Built from the spec and its static settings alone: its update reads the numbers from the state.
    opt = optim.resolve_spec(st.optimizer)
    values = opt.hyperparams(None, **dict(st.optimizer_static))
    tx = opt.transformation(values)
    extra_args = opt.extra_args(values)  # what of the loss its update takes (polyak_sgd, lbfgs, ...)
    keeps_eval_point = opt.eval_params is not None
    batch = st.train.batch_size
    steps = sizes.n_train // batch
    total_steps = steps * st.train.epochs

    def lr_factor(step: jax.Array, nums: Numbers) -> jax.Array:
        return schedules.factor(st.schedule, step, nums.schedule, steps, total_steps)

    dropout_mode = st.dropout_mode if plan.uses_dropout else "inverted"
    chunk_of = lambda n, rows: min(rows, max(n, 1))  # noqa: E731

    def init(params: Any, nums: Numbers) -> TrialState:
        # Built with the trial's numbers: the state holds them, and some optimizers' initial states
        # read them (schedule-free keeps b1, momo its lower bound).
        opt_state = opt.transformation({**values, **nums.hyperparams}).init(params)
        point = opt.evaluation_params(opt_state, params) if keeps_eval_point else None
        # Only early stopping needs a second copy of the weights; others carry None (no memory).
        best = (point if keeps_eval_point else params) if plan.uses_early_stopping else None
        return TrialState(
            params,
            opt_state,
            point,
            best,
            jnp.float32(jnp.inf),
            jnp.int32(0),
            jnp.int32(0),
            jnp.bool_(False),
            jnp.int32(-1),
            jnp.int32(0),
            jnp.zeros((steps,), jnp.float32),
            jnp.zeros((steps, len(layer_kernels(params))), jnp.float32),  # as ``train_step``'s norms
        )

    def objective(params: Any, xb: jax.Array, yb: jax.Array, nums: Numbers, key: jax.Array):
        model = nnx.merge(graphdef, params)
        logits = model(
            xb,
            dropout_rate=nums.dropout if plan.uses_dropout else 0.0,
            dropout_key=key if plan.uses_dropout else None,
            dropout_mode=dropout_mode,
        )
        objective = jnp.mean(data_loss(logits, yb, st.train.loss))
        if plan.uses_penalty:  # skipped when no trial penalises: it costs passes over all weights
            objective = objective + penalty(params, nums.l1, nums.l2)
        return objective

    def evaluate(params: Any, x: jax.Array, y: jax.Array, n: int, nums: Numbers) -> tuple[jax.Array, jax.Array]:
        if n == 0:
            return jnp.float32(jnp.nan), jnp.float32(jnp.nan)
        # Sums, not means: the host divides in float64, so 1293/1293 correct is exactly 1.0.
        return eval_fn(
            graphdef,
            params,
            x,
            y,
            nums.dropout if plan.uses_dropout else 0.0,
            loss=st.train.loss,
            dropout_mode=dropout_mode,
            n=n,
            chunk=chunk_of(n, x.shape[0]),
        )

    def epoch(
        state: TrialState, nums: Numbers, data: DeviceData, part: jax.Array
    ) -> tuple[TrialState, dict[str, jax.Array]]:
        """Steps ``part[0]`` to ``part[1]`` (exclusive) of the epoch under way; the epoch ends, with
        its evaluation and early-stopping bookkeeping, where ``part[1]`` is its last step.

        ``part`` is an argument, not a constant, so that one executable trains a whole epoch
        (``[0, steps]``, every epoch of a run but one) and the two halves of an epoch that two
        worker processes share (``run.schedule``): each step is the same loop body either way,
        so the same numbers. A call that does not end its epoch evaluates too (its metrics are
        not used): a branch would put the evaluation in another computation, whose fusions
        XLA may choose differently.
        """
        base = jax.random.key(nums.seed)
        order = jax.random.permutation(
            jax.random.fold_in(jax.random.fold_in(base, _SHUFFLE), state.epoch), sizes.n_train
        )
        batches = order[: steps * batch].reshape(steps, batch)
        noise_key = jax.random.fold_in(jax.random.fold_in(base, _NOISE), state.epoch)

        def train_step(carry, inputs):
            params, opt_state = carry
            i, idx = inputs
            k_aug, k_drop = jax.random.split(jax.random.fold_in(noise_key, i))
            xb, yb = augment(data.x_train[idx], k_aug, nums, plan), data.y_train[idx]
            loss, grads = jax.value_and_grad(objective)(params, xb, yb, nums, k_drop)
            given = {}
            if extra_args:  # the minibatch's loss as a function of the weights: same batch, same dropout
                loss_fn = lambda p: objective(p, xb, yb, nums, k_drop)  # noqa: E731
                given = {"value": loss, "grad": grads, "value_fn": loss_fn, "obj_fn": loss_fn}
                given = {name: given[name] for name in extra_args}
            clipped = clip_gradient(grads, nums.clip_norm) if plan.uses_clip else grads
            updates, new_opt = tx.update(clipped, opt_state, params, **given)
            if plan.uses_weight_decay:
                updates = decoupled_decay(updates, params, nums.hyperparams["learning_rate"] * nums.weight_decay)
            if plan.uses_schedule:  # the factor s(t) of the global step scales the whole update
                scale = lr_factor(state.epoch * steps + i, nums)
                updates = jax.tree.map(lambda u: u * scale.astype(u.dtype), updates)
            new_params = optax.apply_updates(params, updates)
            if plan.uses_early_stopping:  # a stopped trial keeps computing (vmap) but stops changing
                keep = lambda old, new: jnp.where(state.stopped, old, new)  # noqa: E731
                new_params = jax.tree.map(keep, params, new_params)
                new_opt = jax.tree.map(keep, opt_state, new_opt)
            norms = jnp.stack([jnp.linalg.norm(k) for k in layer_kernels(grads)])
            return (new_params, new_opt), (loss, norms)

        def loop_body(i, carry):
            params, opt_state, losses, norms = carry
            (params, opt_state), (loss, norm) = train_step((params, opt_state), (i, batches[i]))
            return params, opt_state, losses.at[i].set(loss), norms.at[i].set(norm)

        # A loop with bounds known only when it runs (``part``): one executable for a whole epoch
        # and any part of one. Measured against the ``lax.scan`` over the epoch it replaced: the
        # same weights, gradients and evaluations bit for bit; a single trial's step losses too,
        # a vmapped group's step losses in their last bit only (the loop keeps them trial-major,
        # where the scan stacked them step-major, and each step's loss is reduced into that
        # buffer). A ``lax.cond`` skipping the steps outside ``part`` in a scan kept the stacking
        # but changed the training's numbers (XLA fuses a branch apart).
        start, stop = part[0], part[1]
        carry = (state.params, state.opt_state, state.step_losses, state.step_norms)
        params, opt_state, losses, norms = jax.lax.fori_loop(start, stop, loop_body, carry)
        ends = stop == steps  # this call ends the epoch: its bookkeeping counts
        m = {}
        # Every metric, the monitor and the restored weights are at the optimizer's evaluation
        # point (schedule-free's x, lookahead's slow weights), which is the trained weights for most.
        point = opt.evaluation_params(opt_state, params) if keeps_eval_point else params
        # Training metrics in test mode on the first n_train_eval samples (a fixed random subset:
        # the training set was shuffled at the split), so they cost a bounded number of forward passes.
        m["train_loss"], m["train_acc"] = evaluate(point, data.x_train, data.y_train, sizes.n_train_eval, nums)
        m["val_loss"], m["val_acc"] = evaluate(point, data.x_val, data.y_val, sizes.n_val, nums)
        m["test_loss"], m["test_acc"] = evaluate(point, data.x_test, data.y_test, sizes.n_test, nums)
        m["step_loss"] = jnp.mean(losses)
        m["grad_norm"] = jnp.mean(norms, axis=0)
        # The learning rate the epoch's last update applied: learning_rate x s(t).
        lr = nums.hyperparams["learning_rate"]
        m["lr"] = lr * lr_factor((state.epoch + 1) * steps - 1, nums) if plan.uses_schedule else lr

        n_val = max(sizes.n_val, 1)
        score = m["val_loss"] / n_val if st.monitor == "val_loss" else -m["val_acc"] / n_val
        improved = score < state.best_score - nums.min_delta
        if sizes.n_val == 0:  # nothing to monitor: the last epoch is the best one
            improved = jnp.bool_(True)
        improved = improved & ~state.stopped & ends
        best_params = state.best_params
        if plan.uses_early_stopping:
            best_params = jax.tree.map(lambda b, p: jnp.where(improved, p, b), state.best_params, point)
        bad = jnp.where(ends, jnp.where(improved, 0, state.bad_epochs + 1), state.bad_epochs)
        stop_now = (nums.early_stopping > 0) & (bad >= nums.patience) & ~state.stopped & ends
        new_state = TrialState(
            params=params,
            opt_state=opt_state,
            eval_params=point if keeps_eval_point else None,
            best_params=best_params,
            best_score=jnp.where(improved, score, state.best_score),
            best_epoch=jnp.where(improved, state.epoch, state.best_epoch),
            bad_epochs=bad,
            stopped=state.stopped | stop_now,
            stop_epoch=jnp.where(stop_now, state.epoch, state.stop_epoch),
            epoch=state.epoch + ends.astype(jnp.int32),
            step_losses=losses,
            step_norms=norms,
        )
        return new_state, m

    return init, epoch, graphdef
