"""A ``Job``: everything the shared options of a training command say, as frozen, validated configs.

The command line (``options.job_from_cli``) and suite files (``suite``) both build one; the
commands turn it into trials. Defined here, below both, so that neither imports the other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dnnbench import optim
from dnnbench.analysis.targets import Target
from dnnbench.config import DataConfig, ModelConfig, Regularization, TrainConfig, TrialSpec
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

    def describe(self) -> dict[str, Any]:
        out = {
            key: dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value
            for key, value in dataclasses.asdict(self).items()
        }
        out["hp"] = [f"{target + '.' if target else ''}{name}={value}" for target, name, value in self.hp]
        out["target"] = self.target.describe() if self.target else None
        return out

    def trial(
        self, optimizer: str = "adam", lr: float | None = None, hyperparams: dict[str, Any] | None = None, **fields: Any
    ) -> TrialSpec:
        """A trial of this job's model, training, regularization and schedule (seed 0 unless given)."""
        given = dict(hyperparams or {})
        if lr is not None:
            given["learning_rate"] = lr
        return TrialSpec(
            optimizer=optimizer,
            hyperparams=tuple(given.items()),
            model=self.model,
            train=self.train,
            reg=self.reg,
            schedule=self.schedule,
            **fields,
        )
