"""Statistics over seeds: mean, standard deviation, 95% confidence interval, per comparison row.

Rendering never computes; it reads the ``Summary`` rows built here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnbench.results import TrialResult

# Two-sided 95% Student-t quantiles for small samples (df = n - 1); 1.96 beyond.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(df: int) -> float:
    if df <= 0:
        return math.nan
    known = [k for k in _T95 if k <= df]
    return _T95[max(known)] if df <= 30 else 1.96


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


SUMMARY_METRICS = ("train_loss", "train_acc", "val_acc", "best_val_acc", "test_loss", "test_acc")


@dataclass
class Summary:
    """One comparison row: trials sharing a label (e.g. one optimizer over its seeds)."""

    label: str
    trials: list[TrialResult]
    stats: dict[str, Stat] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    diagnoses: dict[str, int] = field(default_factory=dict)

    @property
    def learning_rates(self) -> list[float]:
        return sorted({t.spec.learning_rate for t in self.trials})


def summarize(trials: Sequence[TrialResult], label: Callable[[TrialResult], str]) -> list[Summary]:
    """Group ``trials`` by ``label`` (first-seen order) with per-metric statistics over seeds."""
    groups: dict[str, list[TrialResult]] = {}
    for trial in trials:
        groups.setdefault(label(trial), []).append(trial)
    out = []
    for name, members in groups.items():
        ok = [t for t in members if t.status == "ok"]
        stats = {m: Stat.of([t.metrics.get(m, math.nan) for t in ok]) for m in SUMMARY_METRICS}
        stats["best_epoch"] = Stat.of([float(t.best_epoch) for t in ok])
        stats["epochs_run"] = Stat.of([float(t.timing.get("epochs_run", math.nan)) for t in ok])
        stats["val_acc_final"] = stats["val_acc"]
        for key in ("compile_s", "train_s", "samples_per_s"):
            stats[key] = Stat.of([t.timing.get(key, math.nan) for t in members if t.timing])
        statuses: dict[str, int] = {}
        diagnoses: dict[str, int] = {}
        for t in members:
            statuses[t.status] = statuses.get(t.status, 0) + 1
            if t.diagnosis:
                diagnoses[t.diagnosis["label"]] = diagnoses.get(t.diagnosis["label"], 0) + 1
        out.append(Summary(name, members, stats, statuses, diagnoses))
    return out
