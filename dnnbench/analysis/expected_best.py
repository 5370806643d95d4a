"""Expected-best curves (Dodge et al., 2019, "Show your work"): what a budget of k tries buys.

For N candidates with validation scores v_(1) <= ... <= v_(N) and k drawn from them without
replacement, the largest of the k is v_(i) with probability C(i-1, k-1) / C(N, k) (the other
k - 1 among the i - 1 below it), so

    E[best of k] = sum_i v_(i) * C(i-1, k-1) / C(N, k).

At k = 1 it is the mean, at k = N the best candidate; it never decreases in k. Exact
order-statistics arithmetic, no resampling: sorted once, each weight from its closed form, and per k
only the ranks that can move the float result (about 42 N / k of them for large k), so the whole
curve is O(N log N) terms -- a budget of 4096 in a fraction of a second, where summing every rank
for every k took minutes. A diverged candidate scores the worst value (0 for accuracies, +inf for
losses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SPARK = "▁▂▃▄▅▆▇█"


#: A try whose chance of being the best of k is below this in total is left out of E[best of k]: its share
#: is at most 2^-60 of the largest |value|, under the rounding of the sum itself (the exact terms
#: are summed; only terms that cannot change the float result are skipped).
NEGLIGIBLE = 2.0**-60


def window(n: int, k: int) -> int:
    """The lowest 1-based rank i whose term enters E[best of k] of n (every rank above it does).

    A rank below k cannot be the best of k; and the best of k lies at or below rank j with
    probability C(j, k) / C(n, k) <= (j / n)^k, at most ``NEGLIGIBLE`` for j <= n 2^(-60/k). The
    window is all n ranks for small k and about 42 n / k for large k: O(n log n) terms over all k."""
    below = math.floor(n * NEGLIGIBLE ** (1.0 / k)) if k > 1 else 0
    return max(k, below + 1)


def expected_best(values: Sequence[float], higher: bool = True) -> np.ndarray:
    """E[best of k] for k = 1..N (index k - 1).

    Sorted once; per k the weights C(i-1, k-1) / C(N, k) come from their closed form as a
    running product down from rank N (weight k / N; each rank below times (i - k) / (i - 1)),
    over ``window`` ranks. A value -inf (a diverged loss, sign-flipped) is the best of k only
    when all k tries are among the -infs: then E is -inf; a NaN or a +inf anywhere makes every
    E NaN or +inf, as the sum would."""
    v = np.sort(np.asarray(values, np.float64) if higher else -np.asarray(values, np.float64))
    n = len(v)
    if n == 0:
        return np.zeros(0)
    lowest = int(np.count_nonzero(v == -math.inf))  # sorted first: ranks 1..lowest
    highest = int(np.count_nonzero(v == math.inf)) + int(np.count_nonzero(np.isnan(v)))  # sorted last
    finite = v[lowest : n - highest]
    top = n - highest  # the highest finite rank
    curve = np.empty(n)
    for k in range(1, n + 1):
        lo = max(window(n, k), lowest + 1)
        total = 0.0
        if lo <= top:
            ranks = np.arange(n, lo - 1, -1, dtype=np.float64)  # n, n-1, ..., lo
            weights: np.ndarray = np.empty(len(ranks))
            weights[0] = k / n
            weights[1:] = (ranks[:-1] - k) / (ranks[:-1] - 1)  # w_(i-1) / w_i at i = ranks[:-1]
            weights = np.cumprod(weights)[::-1]  # ranks lo..n
            total = float(np.dot(weights[: top - lo + 1], finite[lo - 1 - lowest :]))
        if highest:
            total += float(v[-1]) if math.isnan(v[-1]) else math.inf
        if k <= lowest:
            total += -math.inf
        curve[k - 1] = total
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
        values: list[float] = []
        for _, status, metrics, _ in mine:
            value = metrics.get(metric) if status == "ok" else None
            if value is not None and math.isfinite(value):
                values.append(value)
            else:
                values.append(0.0 if higher else math.inf)
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
