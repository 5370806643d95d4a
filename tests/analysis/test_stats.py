"""Statistics with known inputs and known answers: mean/std/CI, bootstrap, paired, main effects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dnnbench.analysis import stats
from dnnbench.config import TrialSpec
from dnnbench.results.rows import TrialResult


def trial(seed: int, test_acc: float, status: str = "ok", **tags: str) -> TrialResult:
    return TrialResult(
        id=f"{tags}-{seed}",
        spec=TrialSpec(seed=seed, tags=tuple(tags.items())),
        status=status,
        metrics={"test_acc": test_acc, "train_acc": 1.0},
        history={},
        best_epoch=1,
        stopped_epoch=None,
        diverged_epoch=None,
        timing={},
    )


def test_stat_of_known_values_gives_mean_sample_std_and_t_interval():
    st = stats.Stat.of([1.0, 2.0, 3.0, 4.0])
    assert st.mean == 2.5 and st.n == 4
    assert st.std == pytest.approx(math.sqrt(5 / 3))  # sample std, ddof = 1
    half = 3.182446 * math.sqrt(5 / 3) / 2  # t(0.975, df=3) * s / sqrt(n)
    assert st.ci95 == pytest.approx((2.5 - half, 2.5 + half))


def test_t_quantiles_are_exact_for_every_degree_of_freedom():
    # Published two-sided 95% values; df 11 and 40 were steps of the old hand-typed table.
    for df, t in ((1, 12.7062), (4, 2.7764), (11, 2.2010), (40, 2.0211), (1000, 1.9623)):
        assert stats.t95(df) == pytest.approx(t, abs=1e-4)
    assert math.isnan(stats.t95(0))


def test_stat_ignores_missing_and_non_finite_values():
    st = stats.Stat.of([0.5, None, float("nan"), float("inf"), 0.7])
    assert st.n == 2 and st.mean == pytest.approx(0.6)
    assert stats.Stat.of([]).n == 0 and math.isnan(stats.Stat.of([]).mean)


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small = rng.normal(0.1, 0.05, 5)
    large = rng.normal(0.1, 0.05, 200)
    lo_s, hi_s = stats.bootstrap_ci(small)
    lo_l, hi_l = stats.bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < hi_s - lo_s
    # for a large sample the percentile bootstrap matches the normal interval 1.96 s / sqrt(n)
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * large.std(ddof=1) / math.sqrt(200), rel=0.15)
    assert stats.bootstrap_ci([0.3]) == (0.3, 0.3)


def test_paired_differences_to_the_best_row_with_win_tie_loss():
    a = [trial(0, 0.90, opt="a"), trial(1, 0.92, opt="a"), trial(2, 0.94, opt="a")]
    b = [trial(0, 0.88, opt="b"), trial(1, 0.92, opt="b"), trial(2, 0.95, opt="b")]
    summaries = stats.summarize(a + b, lambda t: t.tags["opt"])
    paired = stats.paired_to_best(summaries, "test_acc")
    assert paired["a"].mean_diff == 0 and paired["a"].ties == 3  # a is the best row (mean 0.92)
    # b - a per seed: -0.02, 0, +0.01
    assert paired["b"].mean_diff == pytest.approx(-0.01 / 3)
    assert (paired["b"].wins, paired["b"].ties, paired["b"].losses) == (1, 1, 1)
    lo, hi = paired["b"].ci95
    assert -0.02 - 1e-12 <= lo <= paired["b"].mean_diff <= hi <= 0.01 + 1e-12


def test_main_effects_for_a_hand_checked_two_by_two_case():
    # lr x activation, one seed each; test accuracies chosen by hand
    trials = [
        trial(0, 0.9, lr="0.1", act="relu"),
        trial(0, 0.5, lr="0.1", act="sigmoid"),
        trial(0, 0.7, lr="0.01", act="relu"),
        trial(0, 0.3, lr="0.01", act="sigmoid"),
    ]
    effects = {(e.factor, e.level): e for e in stats.main_effects(trials, ["lr", "act"], "test_acc")}
    assert effects[("lr", "0.1")].stat.mean == pytest.approx(0.7)  # (0.9 + 0.5) / 2
    assert effects[("lr", "0.01")].stat.mean == pytest.approx(0.5)
    assert effects[("act", "relu")].stat.mean == pytest.approx(0.8)
    assert effects[("act", "sigmoid")].stat.mean == pytest.approx(0.4)
    assert effects[("lr", "0.1")].best and not effects[("lr", "0.01")].best
    assert effects[("act", "relu")].best


def test_main_effects_treat_diverged_trials_as_missing_not_zero():
    trials = [trial(0, 0.9, lr="1"), trial(1, 0.1, status="diverged", lr="1"), trial(0, 0.8, lr="0.1")]
    effects = {e.level: e for e in stats.main_effects(trials, ["lr"], "test_acc")}
    assert effects["1"].stat.n == 1 and effects["1"].stat.mean == pytest.approx(0.9)


def test_grad_ratio_first_over_last_layer():
    t = trial(0, 0.5)
    t.history = {"grad_norm": [[0.01, 0.1, 1.0], [0.5, 0.5, 0.25]]}
    assert stats.grad_ratio(t, 0) == pytest.approx(0.01) and stats.grad_ratio(t, -1) == pytest.approx(2.0)
