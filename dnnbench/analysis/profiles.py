"""Performance profiles across tasks (Dolan & Moré 2002; AlgoPerf's scoring).

A *task* is one results file, or one experiment of a suite's file. On each task every optimizer
(a comparison row: ``adam``, or ``adam (tuned)`` for ``tune``'s final rows) has a time to target:
the median over seeds of the optimizer steps to reach it (``targets``; never reached by a
majority = infinite). Its ratio to the task's fastest optimizer is r >= 1. An optimizer's profile
rho(tau) is the fraction of tasks with r <= tau; its score is the area under rho over tau in
[1, TAU_MAX], divided by TAU_MAX - 1 (1 = fastest on every task, 0 = never within TAU_MAX).
Steps, not seconds: they do not depend on the machine or on what ran beside a program.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dnnbench.analysis.targets import Target, median_or_never, time_to_target
from dnnbench.errors import InputError

TAU_MAX = 4.0
TAUS = np.linspace(1.0, TAU_MAX, 301)


@dataclass(frozen=True)
class Profile:
    """One optimizer's profile over the tasks."""

    label: str
    ratios: tuple[float, ...]  # per task (inf: never reached; the task order of ``tasks``)
    rho: tuple[float, ...]  # rho(tau) at TAUS
    score: float

    def at(self, tau: float) -> float:
        return float(np.mean([r <= tau for r in self.ratios])) if self.ratios else 0.0


def row_label(row: Mapping[str, Any]) -> str:
    """The comparison row a trial belongs to: its optimizer, and ``tune``'s choice."""
    choice = row.get("choice")
    return f"{row['optimizer']} ({choice})" if choice else str(row["optimizer"])


def steps_to_target(row: Mapping[str, Any], target: Target | None) -> float | None:
    """The steps a row took to ``target`` (the row's own recorded target when None)."""
    if target is not None:
        return time_to_target(row.get("history") or {}, row.get("timing") or {}, target)["step"]
    recorded = row.get("target")
    if not recorded:
        raise InputError(f"trial {row.get('id')} records no target; give --target METRIC=VALUE")
    return recorded.get("step")


def task_times(tasks: Mapping[str, Sequence[Mapping[str, Any]]], target: Target | None) -> dict[str, dict[str, float]]:
    """Per task, per comparison row: the median steps to target (inf = never)."""
    out: dict[str, dict[str, float]] = {}
    for task, rows in tasks.items():
        per: dict[str, list[float | None]] = {}
        for row in rows:
            if row.get("type", "trial") != "trial" or row.get("phase") == "search":
                continue  # tune's search candidates are not comparison rows
            steps = steps_to_target(row, target) if row.get("status") == "ok" else None
            per.setdefault(row_label(row), []).append(steps)
        medians = {label: median_or_never(values) for label, values in per.items()}
        out[task] = {label: math.inf if m is None else m for label, m in medians.items()}
    return out


def profiles(times: Mapping[str, Mapping[str, float]]) -> tuple[list[Profile], list[str]]:
    """Every row's profile over the tasks where some row reached the target; the skipped tasks."""
    labels = list(dict.fromkeys(label for per in times.values() for label in per))
    if not labels:
        raise InputError("no comparison rows to profile")
    used = [task for task, per in times.items() if any(math.isfinite(t) for t in per.values())]
    skipped = [task for task in times if task not in used]
    if not used:
        raise InputError("no optimizer reached the target on any task; lower the target")
    out = []
    for label in labels:
        ratios = []
        for task in used:
            best = min(t for t in times[task].values() if math.isfinite(t))
            mine = times[task].get(label, math.inf)
            ratios.append(mine / best if math.isfinite(mine) else math.inf)
        rho = [float(np.mean([r <= tau for r in ratios])) for tau in TAUS]
        # the area under a step function, exactly: each task adds (TAU_MAX - r) where r <= TAU_MAX
        score = float(np.mean([max(0.0, TAU_MAX - r) for r in ratios]) / (TAU_MAX - 1.0))
        out.append(Profile(label, tuple(ratios), tuple(rho), score))
    out.sort(key=lambda p: -p.score)
    return out, skipped
