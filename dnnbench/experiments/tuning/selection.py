"""The tuning protocol's trials: N candidates per optimizer on one search seed, then the winner --
chosen on the validation set only -- and the optimizer's defaults, both on K fresh seeds.

Rows are tagged ``phase = search | final``; search rows carry ``candidate`` (its index, an integer), final
rows ``choice = default | tuned``. Candidates of one optimizer differ only in numbers, so they
train as one compiled program (static choices, e.g. ``nesterov = true, false``, split it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dnnbench.config import MAX_SEED, TagValue, Variation
from dnnbench.errors import InputError
from dnnbench.experiments.job import Job
from dnnbench.experiments.tuning.search import candidates
from dnnbench.experiments.tuning.space import Dimension, SpaceSetting, check_settings, space_for
from dnnbench.results.metrics import VALIDATION
from dnnbench.results.rows import TrialResult


def search_specs(
    job: Job,
    spaces: Mapping[str, Mapping[str, Dimension]],
    budget: int,
    seed: int,
    hyperparams: Mapping[str, Mapping[str, Any]],
) -> tuple:
    """Every optimizer's ``budget`` candidates on the search ``seed`` (each validated when built)."""
    specs: list = []
    for name, space in spaces.items():
        for i, cand in enumerate(candidates(space, budget, seed)):
            values = {**hyperparams.get(name, {}), **cand}
            try:  # one candidate at a time, to name the one that is not valid
                specs += job.trials(
                    [Variation(name, hyperparams=values, tags=(("phase", "search"), ("candidate", i)))], (seed,)
                )
            except InputError as exc:
                raise InputError(
                    f"tune {name}: candidate {i} ({_short(cand)}) is not valid: {exc}; narrow --space"
                ) from None
    return tuple(specs)


def score(trial: TrialResult, metric: str) -> float:
    """The selection score (higher is better) of a search trial: never a test metric."""
    if metric not in VALIDATION:
        raise InputError(f"unknown selection metric {metric!r}; valid: {', '.join(VALIDATION)}")
    value = trial.metrics.get(metric) if trial.status == "ok" else None
    if value is None or not math.isfinite(value):
        return -math.inf
    return value if metric == "val_acc" else -value


def select(search: Sequence[TrialResult], metric: str = "val_acc") -> dict[str, TrialResult]:
    """Per optimizer, its best search trial by ``metric`` on the validation set (first on ties);
    an optimizer all of whose candidates diverged has none."""
    best: dict[str, TrialResult] = {}
    for trial in search:
        s = score(trial, metric)
        if s == -math.inf:
            continue
        if trial.optimizer not in best or s > score(best[trial.optimizer], metric):
            best[trial.optimizer] = trial
    return best


def final_specs(
    job: Job,
    optimizers: Sequence[str],
    winners: Mapping[str, TrialResult],
    seeds: Sequence[int],
    hyperparams: Mapping[str, Mapping[str, Any]],
) -> tuple:
    """Each optimizer at its defaults and (when a candidate did not diverge) at its winner, on ``seeds``."""
    finals = []
    for name in optimizers:
        finals.append(_final(name, "default", hyperparams.get(name, {})))
        if name in winners:
            finals.append(_final(name, "tuned", winners[name].spec.hyperparams))
    return job.trials(finals, seeds)


def _final(name: str, choice: str, values: Any) -> Variation:
    """A final run of optimizer ``name`` at ``values`` (a mapping or (name, value) pairs)."""
    return Variation(name, hyperparams=values, tags=(("phase", "final"), ("choice", choice)))


def _short(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


@dataclass(frozen=True)
class TuningPlan:
    """A tuning run, planned: the search trials, the seeds of the final runs, and how the final
    trials follow from the search's results (``finals``)."""

    job: Job
    optimizers: tuple[str, ...]
    spaces: Mapping[str, Mapping[str, Dimension]]
    budget: int
    metric: str
    hyperparams: Mapping[str, Mapping[str, Any]]
    search: tuple
    final_seeds: tuple[int, ...]

    def finals(self, search: Sequence[TrialResult], tags: tuple[tuple[str, TagValue], ...] = ()) -> list:
        """The final trials once ``search`` (this plan's search results) is known."""
        mine = [t for t in search if t.tags.get("phase") == "search"]
        winners = select(mine, self.metric)
        return list(final_specs(self._job(tags), self.optimizers, winners, self.final_seeds, self.hyperparams))

    def possible_finals(self, tags: tuple[tuple[str, TagValue], ...] = ()) -> list:
        """Every final trial this plan could train, whichever candidates win: the defaults' runs
        and each candidate's as the winner (what a resumed file's final rows are checked against
        before the search trains)."""
        job = self._job(tags)
        tuned = [_final(candidate.optimizer, "tuned", candidate.hyperparams) for candidate in self.search]
        return [
            *final_specs(job, self.optimizers, {}, self.final_seeds, self.hyperparams),
            *job.trials(tuned, self.final_seeds),
        ]

    def _job(self, tags: tuple[tuple[str, TagValue], ...]) -> Job:
        """The plan's job with ``tags`` before its own: its trials carry them."""
        return dataclasses.replace(self.job, tags=(*tags, *self.job.tags)) if tags else self.job

    def describe(self) -> dict[str, Any]:
        return {
            "optimizers": list(self.optimizers),
            "budget": self.budget,
            "metric": self.metric,
            "search_seed": self.job.seeds[0],
            "final_seeds": list(self.final_seeds),
            "space": {name: [d.describe() for d in dims.values()] for name, dims in self.spaces.items()},
        }


def plan(
    job: Job,
    optimizers: Sequence[str],
    *,
    budget: int,
    metric: str,
    settings: Sequence[SpaceSetting] = (),
    suite_space: Mapping[str, Mapping[str, Any]] | None = None,
    hyperparams: Mapping[str, Mapping[str, Any]] | None = None,
) -> TuningPlan:
    """Plan ``tune``: search on the job's first seed, final runs on as many fresh seeds after it."""
    if job.data.val_split == 0:
        raise InputError("tune selects on the validation set; use --val-split > 0")
    if metric not in VALIDATION:
        raise InputError(f"--metric: unknown selection metric {metric!r}; valid: {', '.join(VALIDATION)}")
    check_settings(settings, optimizers)
    spaces = {name: space_for(name, settings, (suite_space or {}).get(name)) for name in optimizers}
    search_seed = job.seeds[0]
    final_seeds = tuple(search_seed + 1 + i for i in range(len(job.seeds)))
    if final_seeds[-1] > MAX_SEED:
        raise InputError(f"tune trains the final runs on seeds {final_seeds[0]}..{final_seeds[-1]}, past {MAX_SEED}")
    hp = hyperparams or {}
    try:  # the final runs compare each optimizer at its defaults with its winner: they must be buildable
        final_specs(job, optimizers, {}, final_seeds, hp)
    except InputError as exc:
        raise InputError(f"tune compares each optimizer at its defaults with its tuned values, but {exc}") from None
    return TuningPlan(
        job=job,
        optimizers=tuple(optimizers),
        spaces=spaces,
        budget=budget,
        metric=metric,
        hyperparams=hp,
        search=search_specs(job, spaces, budget, search_seed, hp),
        final_seeds=final_seeds,
    )
