"""Learning-rate sensitivity: how good each optimizer can be, and how forgiving it is.

For each optimizer, a log-spaced grid of learning rates trains as ONE vmapped program (the grid
points differ only in a number). The result per optimizer: the best learning rate, its metric,
and the width in decades of the contiguous range of learning rates around the best whose metric
is within ``tolerance`` of it. A wide range is a forgiving optimizer; a narrow one needs tuning.
Decisions use the validation set (never the test set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dnnbench.config import TrialSpec, Variation, trial_list
from dnnbench.errors import InputError
from dnnbench.results.metrics import SENSITIVITY
from dnnbench.results.rows import TrialResult


def lr_grid(lo: float, hi: float, points: int) -> list[float]:
    if not (0 < lo < hi and math.isfinite(hi)):
        raise InputError(f"learning-rate grid needs 0 < lr-min < lr-max, got {lo:g} and {hi:g}")
    if points < 2:
        raise InputError(f"learning-rate grid needs at least 2 points, got {points}")
    return [float(f"{v:.6g}") for v in np.logspace(math.log10(lo), math.log10(hi), points)]


def sensitivity_specs(
    optimizers: Sequence[str],
    grid: Sequence[float],
    base: TrialSpec,
    seeds: Sequence[int],
    hyperparams: dict[str, dict[str, Any]] | None = None,
) -> tuple[TrialSpec, ...]:
    """Every optimizer x every grid point x every seed, tagged ``optimizer`` and ``lr``; each
    optimizer's other hyperparameters from ``hyperparams`` (``--hp``) or its defaults."""
    given = hyperparams or {}
    variations = (Variation(name, lr, given.get(name, {}), tags=(("lr", lr),)) for name in optimizers for lr in grid)
    return trial_list(base, variations, seeds)


def analyze(trials: Sequence[TrialResult], metric: str = "val_acc", tolerance: float = 0.01) -> list[dict[str, Any]]:
    """Per optimizer: the curve over the grid, the best lr, and the forgiving range around it."""
    if metric not in SENSITIVITY:
        raise InputError(f"unknown sensitivity metric {metric!r}; valid: {', '.join(SENSITIVITY)}")
    higher = not metric.endswith("loss")
    out = []
    for name in dict.fromkeys(t.optimizer for t in trials):
        mine = [t for t in trials if t.optimizer == name]
        grid = sorted({t.spec.learning_rate for t in mine})
        curve = []
        for lr in grid:
            found = [t.metrics.get(metric) for t in mine if t.spec.learning_rate == lr and t.status == "ok"]
            values = [v for v in found if v is not None and math.isfinite(v)]
            ok = len(values) == sum(1 for t in mine if t.spec.learning_rate == lr)
            curve.append(float(np.mean(values)) if values and ok else math.nan)
        scored = [(v if higher else -v) for v in curve]
        finite = [i for i, v in enumerate(scored) if not math.isnan(v)]
        if not finite:
            out.append(
                {
                    "optimizer": name,
                    "grid": grid,
                    "curve": curve,
                    "best_lr": math.nan,
                    "best_metric": math.nan,
                    "range": (math.nan, math.nan),
                    "width_decades": 0.0,
                    "best_inside_grid": False,
                }
            )
            continue
        best = max(finite, key=lambda i: scored[i])
        lo = hi = best
        while lo - 1 >= 0 and not math.isnan(scored[lo - 1]) and scored[best] - scored[lo - 1] <= tolerance + 1e-12:
            lo -= 1
        while (
            hi + 1 < len(grid) and not math.isnan(scored[hi + 1]) and scored[best] - scored[hi + 1] <= tolerance + 1e-12
        ):
            hi += 1
        out.append(
            {
                "optimizer": name,
                "grid": grid,
                "curve": curve,
                "metric": metric,
                "tolerance": tolerance,
                "best_lr": grid[best],
                "best_metric": curve[best],
                "range": (grid[lo], grid[hi]),
                "width_decades": math.log10(grid[hi] / grid[lo]),
                "best_inside_grid": 0 < best < len(grid) - 1,
            }
        )
    return out
