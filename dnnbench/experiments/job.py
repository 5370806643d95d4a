"""A ``Job``: everything the shared options of a training command say, as frozen, validated configs.

The command line (``options.job_from_cli``) and suite files (``suite``) both build one; the
commands turn it into trials (``Job.trials``). Defined here, below both, so that neither imports
the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from dnnbench import optim
from dnnbench.analysis.targets import Target
from dnnbench.config import (
    DataConfig,
    ModelConfig,
    Regularization,
    TagValue,
    TrainConfig,
    TrialSpec,
    Variation,
    trial_list,
)
from dnnbench.run.backends import Settings as BackendSettings

#: ``--hp`` settings: (optimizer spec or "" for every optimizer that has it, name, value).
HpSetting = tuple[str, str, Any]


@dataclass(frozen=True)
class Job:
    """Data, model, training, regularization, schedule, seeds, optimizer hyperparameters."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    reg: Regularization
    seeds: tuple[int, ...]
    max_parallel: int | None = None
    workers: int | None = None
    schedule: optim.Schedule = field(default_factory=optim.Schedule)
    hp: tuple[HpSetting, ...] = ()
    target: Target | None = None  # --target: rows record when they first reached it
    backend: BackendSettings = field(default_factory=BackendSettings)  # --backend: where programs train
    tags: tuple[tuple[str, TagValue], ...] = ()  # every trial's first tags (a suite's experiment=<name>)

    def describe(self) -> dict[str, Any]:
        out = {
            key: dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value
            for key, value in dataclasses.asdict(self).items()
        }
        out["hp"] = [f"{target + '.' if target else ''}{name}={value}" for target, name, value in self.hp]
        out["target"] = self.target.describe() if self.target else None
        del out["tags"]  # each trial carries them; the run's config stays what it was without them
        return out

    @cached_property
    def base(self) -> TrialSpec:
        """The trial every variation of this job starts from: its model, training, regularization,
        schedule and tags, the default optimizer at its defaults, seed 0 (built once: a tuning
        search varies it thousands of times)."""
        return TrialSpec(model=self.model, train=self.train, reg=self.reg, schedule=self.schedule, tags=self.tags)

    def trials(self, variations: Iterable[Variation], seeds: Iterable[int] | None = None) -> tuple[TrialSpec, ...]:
        """Each variation of this job's trial on ``seeds`` (the job's unless given), seeds innermost."""
        return trial_list(self.base, variations, self.seeds if seeds is None else seeds)

    def trial(
        self,
        optimizer: str = "adam",
        lr: float | None = None,
        hyperparams: dict[str, Any] | None = None,
        *,
        seed: int = 0,
        tags: tuple[tuple[str, TagValue], ...] = (),
    ) -> TrialSpec:
        """One trial of this job: ``optimizer`` at ``hyperparams`` (its defaults for the rest) and ``lr``."""
        (spec,) = self.trials([Variation(optimizer, lr, hyperparams or {}, tags=tags)], (seed,))
        return spec
