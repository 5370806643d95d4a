"""Learning-rate schedules: a factor s(t) on every optimizer's update, from the global step.

The factor is computed in plain ``jnp`` from per-trial numbers (warmup length, final factor, step
interval and factor), so a grid of warmups or learning rates under one schedule is still ONE
compiled program. (optax's own schedule functions check their step counts in Python and cannot
take traced values.) With t the 0-based index of an update, T the updates of the whole run, S
the updates of one epoch and W the warmup's updates:

- warmup (any kind): s = min((t + 1) / W, 1) while t < W, a linear ramp that reaches 1 at update W
  (capped, so a W that is not a whole number of updates never takes the rate past its peak);
- after it, with p = (t + 1 - W) / (T - W) going from 0 to 1 at the last update:
  ``constant`` 1; ``linear`` 1 - (1 - d) p; ``cosine`` and ``warmup_cosine`` d + (1 - d)(1 + cos(pi p))/2;
  ``exponential`` d^p; ``step`` f^floor((t - W) / E) with E the step interval;
- d = ``decay_to`` in [0, 1] (default 0; 0.01 for ``exponential``), f = ``step_factor`` in (0, 1] (default 0.1),
  E = ``step_every`` epochs (default: a third of training), W = ``warmup`` as a fraction of
  training or, with ``warmup_epochs``, in epochs (default 0; 0.1 of training for ``warmup_cosine``).

Scaling the update is scaling the learning rate for every optimizer whose step is proportional to
it (all of optax's and the built-ins, decoupled weight decay included, since optax applies the
learning rate last).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dnnbench.errors import InputError, one_of

KINDS = ("constant", "linear", "cosine", "warmup_cosine", "step", "exponential")
#: The per-trial numbers of a schedule, in the order the engine stacks them.
NUMBER_KEYS = ("warmup", "warmup_in_epochs", "decay_to", "step_every", "step_factor")


def _number(
    name: str, value: Any, lo: float, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False
) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"schedule {name} must be a number, got {value!r}") from None
    if (
        isinstance(value, bool)
        or not math.isfinite(x)
        or x < lo
        or (lo_open and x == lo)
        or x > hi
        or (hi_open and x == hi)
    ):
        lo_b, hi_b = "(" if lo_open else "[", ")" if hi_open or hi == math.inf else "]"
        raise InputError(f"schedule {name} must be in {lo_b}{lo:g}, {hi:g}{hi_b}, got {value!r}")
    return x


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule; ``None`` numbers take the kind's default (resolved on construction)."""

    kind: str = "constant"
    warmup: float | None = None
    warmup_epochs: bool = False  # warmup counted in epochs, not as a fraction of training
    decay_to: float | None = None
    step_every: float | None = None  # epochs between steps; None = a third of training
    step_factor: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise one_of("schedule", self.kind, KINDS)
        # Validated here; a None stays None (the kind's default, looked up on use), so that a
        # sweep that changes the kind still gets the new kind's defaults.
        self.resolved()

    def resolved(self) -> dict[str, float]:
        """The schedule's numbers with defaults filled in, validated."""
        warmup = self.warmup if self.warmup is not None else (0.1 if self.kind == "warmup_cosine" else 0.0)
        if self.warmup_epochs:
            warmup = _number("warmup (epochs)", warmup, 0.0)
        else:
            warmup = _number("warmup (fraction of training)", warmup, 0.0, 1.0, hi_open=True)
        decay = self.decay_to if self.decay_to is not None else (0.01 if self.kind == "exponential" else 0.0)
        decay = _number("decay_to (final factor)", decay, 0.0, 1.0, lo_open=self.kind == "exponential")
        step_every = (
            0.0 if self.step_every is None else _number("step_every (epochs)", self.step_every, 0.0, lo_open=True)
        )
        # at most 1: a step schedule decays, the rate never passes its peak (--lr)
        factor = _number("step_factor", self.step_factor, 0.0, 1.0, lo_open=True)
        return {
            "warmup": warmup,
            "warmup_in_epochs": float(bool(self.warmup_epochs)),
            "decay_to": decay,
            "step_every": step_every,
            "step_factor": factor,
        }

    @property
    def numbers(self) -> dict[str, float]:
        """The per-trial numbers the compiled program reads (step_every 0 = a third of training)."""
        return self.resolved()

    @property
    def active(self) -> bool:
        """Whether the factor is ever not 1 (a constant schedule without warmup costs nothing)."""
        return self.kind != "constant" or self.resolved()["warmup"] > 0

    def check_epochs(self, epochs: int) -> None:
        warmup = self.resolved()["warmup"]
        if self.warmup_epochs and warmup >= epochs:
            raise InputError(f"warmup of {warmup:g} epochs must be shorter than training ({epochs} epochs)")


def factor(kind: str, step: Any, numbers: dict[str, Any], steps_per_epoch: int, total_steps: int) -> Any:
    """s(t) for update ``step`` (0-based, may be traced); ``numbers`` are one trial's (scalars)."""
    import jax.numpy as jnp

    t = jnp.asarray(step, jnp.float32)
    S, T = float(steps_per_epoch), float(total_steps)
    W = jnp.where(numbers["warmup_in_epochs"] > 0, numbers["warmup"] * S, numbers["warmup"] * T)
    # capped at 1: when W is not a whole number of updates, the last warmup update t < W has
    # t + 1 > W, and the rate must not pass its peak
    warm = jnp.where(t < W, jnp.minimum((t + 1.0) / jnp.maximum(W, 1.0), 1.0), 1.0)
    p = jnp.clip((t + 1.0 - W) / jnp.maximum(T - W, 1.0), 0.0, 1.0)
    d = numbers["decay_to"]
    if kind == "constant":
        shape = jnp.float32(1.0)
    elif kind == "linear":
        shape = 1.0 - (1.0 - d) * p
    elif kind in ("cosine", "warmup_cosine"):
        shape = d + (1.0 - d) * 0.5 * (1.0 + jnp.cos(jnp.pi * p))
    elif kind == "exponential":
        shape = d**p
    elif kind == "step":
        every = jnp.where(numbers["step_every"] > 0, numbers["step_every"] * S, T / 3.0)
        shape = numbers["step_factor"] ** jnp.floor(jnp.maximum(t - W, 0.0) / jnp.maximum(every, 1.0))
    else:  # pragma: no cover -- Schedule validated the kind
        raise ValueError(kind)
    return warm * shape
