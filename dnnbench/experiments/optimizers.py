"""The optimizer comparison's trials: every optimizer x every seed, same model, data and batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dnnbench.config import TrialSpec, Variation
from dnnbench.experiments.job import Job


def optimizer_specs(
    job: Job,
    optimizers: Sequence[str],
    lrs: dict[str, float | None],
    hyperparams: dict[str, dict[str, Any]] | None = None,
) -> tuple[TrialSpec, ...]:
    """The paired optimizer comparison: every optimizer x every seed of ``job``, same model and data."""
    return job.trials(Variation(name, lrs.get(name), (hyperparams or {}).get(name)) for name in optimizers)
