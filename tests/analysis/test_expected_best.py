"""Expected-best curves (``analysis/expected_best.py``): the exact order statistics, in O(N log N)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dnnbench.analysis import expected_best as eb


def _reference(values, higher=True):
    """The sum over every rank of every k with exact binomials (the former implementation, O(N^2) big integers)."""
    v = np.sort(np.asarray(values, np.float64) if higher else -np.asarray(values, np.float64))
    n = len(v)
    curve = np.empty(n)
    for k in range(1, n + 1):
        total = math.comb(n, k)
        weights = np.array([math.comb(i - 1, k - 1) / total for i in range(1, n + 1)])
        mask = weights > 0
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, as the new code gives too
            curve[k - 1] = float(np.sum(weights[mask] * v[mask]))
    return curve if higher else -curve


def test_class_9_expected_best_is_n_log_n_with_the_same_values():
    rng = np.random.default_rng(9)
    cases = [rng.random(257), np.round(rng.random(300), 1), rng.normal(0, 100, 211), 1000 + rng.random(150)]
    cases += [np.append(rng.random(40), [math.inf] * 3), np.append(rng.random(40), [-math.inf, math.inf])]
    for values in cases:
        scale = np.max(np.abs(values[np.isfinite(values)]))
        for higher in (True, False):
            new, old = eb.expected_best(values, higher), _reference(values, higher)
            assert np.array_equal(np.isfinite(new), np.isfinite(old))  # inf where all k may be diverged, NaN...
            assert np.array_equal(new[~np.isfinite(new)], old[~np.isfinite(old)], equal_nan=True)
            finite = np.isfinite(old)
            # the same numbers up to the rounding of the sum (a few units in the last place of the data)
            np.testing.assert_allclose(new[finite], old[finite], rtol=1e-14, atol=2**-48 * scale)
    # the terms summed over all k: O(N log N) (about 42 N ln N), not N (N + 1) / 2
    n = 4096
    terms = sum(n - eb.window(n, k) + 1 for k in range(1, n + 1))
    assert terms < 900_000 < n * (n + 1) // 2 // 9
    assert [eb.window(n, k) for k in (1, 2, 60, 4096)] == [1, 2, 2049, 4096]
    # the largest tune budget: the whole curve (before: about 9 minutes), from the mean to the best
    values = rng.random(n)
    curve = eb.expected_best(values)
    assert curve[0] == pytest.approx(values.mean(), rel=1e-12) and curve[-1] == values.max()
    assert np.all(np.diff(curve) >= -1e-15)
