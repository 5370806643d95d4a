"""Quasi-random search: N candidates of a search space, the same ones on every rerun.

Candidates are the points of a scrambled Sobol sequence (``scipy.stats.qmc``) when N is a power
of two -- where Sobol's balance properties hold -- and of a scrambled Halton sequence otherwise,
seeded, so a rerun (or a resumed run) draws exactly the same candidates. Compared with a grid,
quasi-random points cover every dimension at N distinct values; compared with random search they
leave no large holes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dnnbench.errors import InputError
from dnnbench.experiments.tuning.space import Dimension

MAX_BUDGET = 4096


def candidates(space: Mapping[str, Dimension], budget: int, seed: int = 0) -> list[dict[str, Any]]:
    """``budget`` points of ``space`` as ``{hyperparameter: value}`` (learning rate first)."""
    from scipy.stats import qmc

    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_BUDGET:
        raise InputError(f"--budget must be an integer in [1, {MAX_BUDGET}], got {budget!r}")
    dims = list(space.values())
    if not dims:
        raise InputError("the search space is empty")
    rng = np.random.default_rng(seed)
    power_of_two = budget & (budget - 1) == 0
    sampler = (
        qmc.Sobol(len(dims), scramble=True, rng=rng) if power_of_two else qmc.Halton(len(dims), scramble=True, rng=rng)
    )
    points = sampler.random(budget)
    return [{dim.name: _rounded(dim.value(float(u))) for dim, u in zip(dims, point, strict=True)} for point in points]


def _rounded(value: Any) -> Any:
    # 7 significant digits: float32's precision; the results file shows what the device used
    return float(f"{value:.7g}") if isinstance(value, float) else value
