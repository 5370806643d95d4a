"""Expected-best curves (Dodge et al., 2019, "Show your work"): what a budget of k tries buys.

For N candidates with validation scores v_(1) <= ... <= v_(N) and k drawn from them without
replacement, the largest of the k is v_(i) with probability C(i-1, k-1) / C(N, k) (the other
k - 1 among the i - 1 below it), so

    E[best of k] = sum_i v_(i) * C(i-1, k-1) / C(N, k).

At k = 1 it is the mean, at k = N the best candidate; it never decreases in k. Exact
order-statistics arithmetic, no resampling. A diverged candidate scores the worst value (0 for
accuracies, +inf for losses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SPARK = "▁▂▃▄▅▆▇█"


def expected_best(values: Sequence[float], higher: bool = True) -> np.ndarray:
    """E[best of k] for k = 1..N (index k - 1)."""
    v = np.asarray(values, np.float64)
    n = len(v)
    if n == 0:
        return np.zeros(0)
    v = np.sort(v if higher else -v)
    curve = np.empty(n)
    for k in range(1, n + 1):
        total = math.comb(n, k)
        weights = np.array([math.comb(i - 1, k - 1) / total for i in range(1, n + 1)])
        # weights below i = k are exactly 0; where v holds inf (a loss of a diverged try) skip them
        mask = weights > 0
        curve[k - 1] = float(np.sum(weights[mask] * v[mask]))
    return curve if higher else -curve


def sparkline(curve: Sequence[float]) -> str:
    """The curve as one line of block characters (lowest to highest of this curve)."""
    c = np.asarray([x for x in curve if math.isfinite(x)], np.float64)
    if c.size == 0:
        return ""
    lo, hi = float(c.min()), float(c.max())
    if hi - lo < 1e-12:
        return SPARK[-1] * c.size
    return "".join(SPARK[min(int((x - lo) / (hi - lo) * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)] for x in c)


def curves(
    search: Sequence[tuple[str, str, Mapping[str, Any], Mapping[str, Any]]], metric: str
) -> list[dict[str, Any]]:
    """Per optimizer of ``search`` -- its tune search candidates as (optimizer, status, metrics,
    hyperparams), from trials or from a results file's rows -- the expected-best curve of
    ``metric`` over its candidates, how many diverged, and the winner's hyperparameters."""
    higher = metric == "val_acc"
    rows = []
    for name in dict.fromkeys(c[0] for c in search):
        mine = [c for c in search if c[0] == name]
        values = []
        for _, status, metrics, _ in mine:
            value = metrics.get(metric) if status == "ok" else None
            ok = value is not None and math.isfinite(value)
            values.append(value if ok else (0.0 if higher else math.inf))
        order = [i for i, c in enumerate(mine) if c[1] == "ok"]
        best = max(order, key=lambda i: values[i] if higher else -values[i], default=None)
        rows.append(
            {
                "optimizer": name,
                "curve": expected_best(values, higher).tolist(),
                "n": len(mine),
                "diverged": sum(1 for c in mine if c[1] != "ok"),
                "best": dict(mine[best][3]) if best is not None else None,
            }
        )
    return rows
