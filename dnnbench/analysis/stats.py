"""Statistics over seeds: mean, standard deviation, 95% confidence interval, per comparison row.

Rendering never computes; it reads the ``Summary`` rows built here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from dnnbench.results.metrics import HEADLINE, SUMMARY
from dnnbench.results.rows import TrialResult


def t95(df: int) -> float:
    """Two-sided 95% Student-t quantile for ``df`` degrees of freedom (NaN below 1)."""
    if df <= 0:
        return math.nan
    import scipy.stats  # here, not at the top: the results commands start without SciPy's import cost

    return float(scipy.stats.t.ppf(0.975, df))


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int
    ci95: tuple[float, float]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
        if x.size == 0:
            return cls(math.nan, math.nan, 0, (math.nan, math.nan))
        mean = float(x.mean())
        std = float(x.std(ddof=1)) if x.size > 1 else 0.0
        half = t95(x.size - 1) * std / math.sqrt(x.size) if x.size > 1 else math.nan
        return cls(mean, std, int(x.size), (mean - half, mean + half))

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "ci95": list(self.ci95)}


class _Spec(Protocol):
    @property
    def seed(self) -> Any: ...
    @property
    def learning_rate(self) -> float: ...


class Trial(Protocol):
    """What a summary reads of a trial: a ``TrialResult``, or a results row seen as one (``export.RowTrial``)."""

    @property
    def spec(self) -> _Spec: ...
    @property
    def status(self) -> str: ...
    @property
    def metrics(self) -> Mapping[str, float]: ...
    @property
    def history(self) -> Mapping[str, list]: ...
    @property
    def best_epoch(self) -> int: ...
    @property
    def timing(self) -> Mapping[str, Any]: ...
    @property
    def diagnosis(self) -> Mapping[str, Any] | None: ...


T = TypeVar("T", bound=Trial)


@dataclass
class Summary(Generic[T]):
    """One comparison row: trials sharing a label (e.g. one optimizer over its seeds)."""

    label: str
    trials: list[T]
    stats: dict[str, Stat] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    diagnoses: dict[str, int] = field(default_factory=dict)

    @property
    def learning_rates(self) -> list[float]:
        """The rates its trials ran with, sorted; a row that records none (NaN) adds nothing."""
        return sorted({lr for t in self.trials if not math.isnan(lr := t.spec.learning_rate)})


def summarize(trials: Sequence[T], label: Callable[[T], str], metrics: Sequence[str] = SUMMARY) -> list[Summary[T]]:
    """Group ``trials`` by ``label`` (first-seen order): statistics over the seeds that ended ok of
    each of ``metrics``, the best epoch, the epochs run and the timings; every trial's status and
    diagnosis counted. The one summary of a comparison, of live trials and of results rows alike."""
    groups: dict[str, list[T]] = {}
    for trial in trials:
        groups.setdefault(label(trial), []).append(trial)
    out = []
    for name, members in groups.items():
        ok = [t for t in members if t.status == "ok"]
        stats = {m: Stat.of([t.metrics.get(m, math.nan) for t in ok]) for m in metrics}
        stats["best_epoch"] = Stat.of([float(t.best_epoch) for t in ok])
        stats["epochs_run"] = Stat.of([float(t.timing.get("epochs_run", math.nan)) for t in ok])
        stats["val_acc_final"] = stats["val_acc"]
        for key in ("compile_s", "train_s", "samples_per_s"):
            stats[key] = Stat.of([t.timing.get(key, math.nan) for t in members if t.timing])
        statuses: dict[str, int] = {}
        diagnoses: dict[str, int] = {}
        for t in members:
            statuses[t.status] = statuses.get(t.status, 0) + 1
            diagnosis = (t.diagnosis or {}).get("label")
            if diagnosis:
                diagnoses[diagnosis] = diagnoses.get(diagnosis, 0) + 1
        out.append(Summary(name, members, stats, statuses, diagnoses))
    return out


def grad_ratio(trial: Trial, epoch: int) -> float:
    """First-layer / last-layer gradient norm at ``epoch`` (0 = first, -1 = last): below 1, the
    gradient shrinks on its way back to the input (vanishing); far above 1, it explodes."""
    norms = trial.history.get("grad_norm") or []
    if not norms:
        return math.nan
    layer = norms[epoch]
    if not layer or layer[-1] in (0, None) or layer[0] is None:
        return math.nan
    return float(layer[0]) / float(layer[-1])


def add_grad_ratios(summaries: Sequence[Summary]) -> None:
    """Give each summary ``grad_ratio_start`` and ``grad_ratio_end`` statistics."""
    for summary in summaries:
        ok = [t for t in summary.trials if t.status != "error"]
        summary.stats["grad_ratio_start"] = Stat.of([grad_ratio(t, 0) for t in ok])
        summary.stats["grad_ratio_end"] = Stat.of([grad_ratio(t, -1) for t in ok])


@dataclass(frozen=True)
class MainEffect:
    """Mean of a metric at one level of one factor, over every other factor and seed."""

    factor: str
    level: str
    stat: Stat
    best: bool


def main_effects(
    trials: Sequence[TrialResult], factors: Sequence[str], metric: str, higher_is_better: bool = True
) -> list[MainEffect]:
    """For each factor and level: the metric's mean over all trials at that level (an ablation
    matrix). Diverged and failed trials count as missing values, not as zeros."""
    out: list[MainEffect] = []
    for factor in factors:
        levels: dict[str, list[float]] = {}
        for trial in trials:
            value = trial.metrics.get(metric, math.nan) if trial.status == "ok" else math.nan
            levels.setdefault(str(trial.tags[factor]), []).append(value)  # a typed tag, labelled
        stats = {level: Stat.of(values) for level, values in levels.items()}
        finite = {level: st.mean for level, st in stats.items() if st.n}
        best = (max if higher_is_better else min)(finite, key=finite.__getitem__) if finite else None
        out += [MainEffect(factor, level, st, level == best) for level, st in stats.items()]
    return out


@dataclass(frozen=True)
class Paired:
    """A row against the best row, seed by seed (same seed = same weights and batches)."""

    label: str
    mean_diff: float
    ci95: tuple[float, float]
    wins: int
    ties: int
    losses: int
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "mean_diff": self.mean_diff,
            "ci95": list(self.ci95),
            "wins": self.wins,
            "ties": self.ties,
            "losses": self.losses,
            "n": self.n,
        }


def bootstrap_ci(diffs: Sequence[float], *, resamples: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of ``diffs`` (``scipy.stats.bootstrap``, fixed
    seed: the same differences give the same interval)."""
    x = np.asarray(diffs, float)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1 or np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    # imported only here: a summary of one seed never resamples, and SciPy's import took 0.6 s at
    # the end of every --json run of one seed (2-core machine, py-spy)
    import scipy.stats

    found = scipy.stats.bootstrap(
        (x,), np.mean, n_resamples=resamples, method="percentile", random_state=np.random.default_rng(seed)
    )
    return (float(found.confidence_interval.low), float(found.confidence_interval.high))


def paired_to_best(
    summaries: Sequence[Summary], metric: str, higher_is_better: bool = True, tie: float = 1e-9
) -> dict[str, Paired]:
    """Each summary's seed-paired difference (row - best) in ``metric``, with a bootstrap CI and
    a win / tie / loss count over seeds -- a real difference from noise at a glance."""
    means = {s.label: s.stats[metric].mean for s in summaries if s.stats[metric].n}
    if not means:
        return {}
    best_label = (max if higher_is_better else min)(means, key=means.__getitem__)
    best = {
        t.spec.seed: t.metrics.get(metric)
        for t in next(s for s in summaries if s.label == best_label).trials
        if t.status == "ok"
    }
    out = {}
    for summary in summaries:
        diffs = [
            t.metrics[metric] - best[t.spec.seed]
            for t in summary.trials
            if t.status == "ok"
            and t.spec.seed in best
            and t.metrics.get(metric) is not None
            and best[t.spec.seed] is not None
        ]
        sign = 1.0 if higher_is_better else -1.0
        wins = sum(1 for d in diffs if sign * d > tie)
        losses = sum(1 for d in diffs if sign * d < -tie)
        out[summary.label] = Paired(
            summary.label,
            float(np.mean(diffs)) if diffs else math.nan,
            bootstrap_ci(diffs),
            wins,
            len(diffs) - wins - losses,
            losses,
            len(diffs),
        )
    return out


def summary_row(
    trials: Sequence[TrialResult], label: Callable[[TrialResult], str], by: str, metric: str = HEADLINE
) -> dict[str, Any]:
    """The results file's closing ``{"type": "summary"}`` line: every comparison row's statistics
    over seeds (mean, std, n, 95% CI per metric) and its seed-paired difference to the best row."""
    summaries = summarize(trials, label)
    add_grad_ratios(summaries)
    paired = paired_to_best(summaries, metric)
    return {
        "type": "summary",
        "by": by,
        "paired_metric": metric,
        "rows": [
            {
                "label": s.label,
                "trials": len(s.trials),
                "statuses": s.statuses,
                "diagnoses": s.diagnoses,
                "stats": {name: st.as_dict() for name, st in s.stats.items() if name != "val_acc_final"},
                "paired_to_best": paired[s.label].as_dict() if s.label in paired else None,
            }
            for s in summaries
        ],
    }
