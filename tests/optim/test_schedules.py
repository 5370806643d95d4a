"""Learning-rate schedules (``optim/schedules.py``): the factor s(t) never takes the rate past its peak."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from dnnbench import optim
from dnnbench.errors import InputError
from dnnbench.optim import schedules


def _factors(kind: str, steps_per_epoch: int, total: int, **over: object) -> np.ndarray:
    numbers = {k: jnp.float32(v) for k, v in optim.Schedule(kind=kind, **over).numbers.items()}
    return np.asarray(schedules.factor(kind, jnp.arange(total), numbers, steps_per_epoch, total))


def test_class_12_warmup_never_passes_the_peak():
    # --warmup 0.479 of 100 updates: W = 47.9, and the old ramp (t + 1) / W gave 48 / 47.9 = 1.002 at t = 47
    s = _factors("constant", 10, 100, warmup=0.479)
    assert s.max() == 1.0 and s[47] == 1.0 and s[46] == pytest.approx(47 / 47.9, rel=1e-6)
    assert (np.diff(s) >= 0).all()  # a ramp, then flat
    for kind in schedules.KINDS:
        for warmup in (0.013, 0.25, 0.479, 0.5, 0.777, 0.99):
            for steps, total in ((7, 21), (10, 100), (33, 99)):
                s = _factors(kind, steps, total, warmup=warmup)
                assert s.max() <= 1.0, (kind, warmup, steps, total)
                assert np.isfinite(s).all() and s.min() >= 0.0
        for epochs_w in (0.5, 1.3, 2.71):
            s = _factors(kind, 7, 35, warmup=epochs_w, warmup_epochs=True)
            assert s.max() <= 1.0, (kind, epochs_w)
    # a whole number of updates still ramps exactly as before: (t + 1) / W, reaching 1 at update W
    s = _factors("constant", 10, 100, warmup=0.2)
    assert s[:20].tolist() == pytest.approx([(t + 1) / 20 for t in range(20)], rel=1e-6) and s[19] == 1.0


def test_class_12_step_factor_above_one_is_refused():
    # a step schedule with factor 2 would double the rate past its peak every step
    with pytest.raises(InputError, match=r"step_factor must be in \(0, 1\], got 2"):
        optim.Schedule(kind="step", step_factor=2)
    assert _factors("step", 10, 90, step_factor=1.0).tolist() == [1.0] * 90
