"""Orchestration: trials -> groups of one structure -> engine -> diagnosed ``TrialResult`` rows.

This is the library behind every command. It never prints; progress goes through callbacks and
results come back as rows (and, through ``on_result``, as each group finishes, so a results file
grows while a long run goes on).
"""

from __future__ import annotations

import dataclasses
import os
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnbench import diagnosis, engine, results
from dnnbench.config import DataConfig, ModelConfig, Regularization, TrainConfig, TrialSpec
from dnnbench.data import Dataset
from dnnbench.errors import DnnbenchError, InputError
from dnnbench.models import weight_count

EpochCallback = Callable[[int, int, dict[str, np.ndarray]], None]  # (group index, epoch, metrics)


@dataclass(frozen=True)
class Run:
    """A batch of trials on one dataset, and how to run them."""

    specs: tuple[TrialSpec, ...]
    data: DataConfig = field(default_factory=DataConfig)
    max_parallel: int | None = None  # at most this many trials per compiled program
    thresholds: diagnosis.Thresholds = field(default_factory=diagnosis.Thresholds)

    def __post_init__(self) -> None:
        if not self.specs:
            raise InputError("nothing to run: no trials")
        if self.max_parallel is not None and self.max_parallel <= 0:
            raise InputError(f"max parallel must be a positive integer, got {self.max_parallel!r}")


#: Device memory one compiled group may plan for when ``--max-parallel`` is not given.
MEMORY_BUDGET = 2 * 1024**3
_OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1, "adam": 2, "adamw": 2}


def trial_bytes(spec: TrialSpec, n_features: int, n_classes: int = 10) -> int:
    """A generous estimate of one trial's device memory inside a vmapped group: weights, gradients,
    optimizer slots, the early-stopping copy, and the activations of a minibatch and of an
    evaluation chunk (float32)."""
    weights = weight_count(n_features, spec.model.hidden, n_classes)
    copies = 3 + _OPTIMIZER_SLOTS.get(spec.optimizer, 2) + (1 if spec.reg.early_stopping else 0)
    activations = (4 * spec.train.batch_size + 2 * 2048) * (n_features + sum(spec.model.hidden) + n_classes)
    # x2: XLA's buffers and temporaries. Calibrated by benchmarks/speed.py: the reference MLP on
    # MNIST-sized data took 92 MB of resident memory per extra vmapped trial (16 -> 64 trials).
    return 2 * 4 * (copies * weights + activations)


def group_by_structure(specs: Sequence[TrialSpec], max_parallel: int | None = None,
                       n_features: int | None = None, n_classes: int = 10) -> list[list[int]]:
    """Indices of ``specs`` grouped by structure (first-seen order), chunked to ``max_parallel``.

    Without ``max_parallel`` and given ``n_features``, each group is chunked so that its estimated
    memory (``trial_bytes``) stays within ``MEMORY_BUDGET``: big sweeps run as several programs
    of one shape (compiled once) instead of one that does not fit.
    """
    groups: dict[Any, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(spec.structure, []).append(i)
    chunks: list[list[int]] = []
    for members in groups.values():
        size = max_parallel or len(members)
        if max_parallel is None and n_features is not None:
            size = max(1, min(size, MEMORY_BUDGET // trial_bytes(specs[members[0]], n_features, n_classes)))
        chunks += [members[i:i + size] for i in range(0, len(members), size)]
    return chunks


def data_args(config: DataConfig) -> list[str]:
    """The command-line options that select ``config``'s data (for suggested next commands)."""
    args = ["--data", config.path] if config.path else ["--dataset", config.dataset]
    if config.val_split != 0.1:
        args += ["--val-split", f"{config.val_split:g}"]
    if config.label_noise:
        args += ["--label-noise", f"{config.label_noise:g}"]
    return args


def data_key(config: DataConfig, data: Dataset) -> dict[str, Any]:
    return {"source": data.source, "val_split": config.val_split, "sizes": data.sizes}


def execute(run: Run, data: Dataset, *, on_result: Callable[[results.TrialResult], None] | None = None,
            on_epoch: EpochCallback | None = None,
            on_group: Callable[[int, int, Sequence[TrialSpec]], None] | None = None) -> list[results.TrialResult]:
    """Train every trial of ``run`` on ``data``; results in the order of ``run.specs``."""
    groups = group_by_structure(run.specs, run.max_parallel, data.n_features, data.n_classes)
    thresholds = run.thresholds
    if run.data.label_noise > 0:  # wrong labels cap the reachable training accuracy
        ceiling = thresholds.underfit_train_acc * (1.0 - run.data.label_noise)
        thresholds = dataclasses.replace(thresholds, underfit_train_acc=ceiling)
    key = data_key(run.data, data)
    out: dict[int, results.TrialResult] = {}
    compile_s = _precompile([[run.specs[i] for i in members] for members in groups], data)
    for g, members in enumerate(groups):
        specs = [run.specs[i] for i in members]
        if on_group is not None:
            on_group(g, len(groups), specs)
        callback = (lambda e, m, g=g: on_epoch(g, e, m)) if on_epoch else None
        try:
            output = engine.train_group(specs, data, on_epoch=callback, compile_s=compile_s[g])
        except DnnbenchError:
            raise
        except Exception as exc:  # noqa: BLE001 -- one failing group must not sink the others
            for i, spec in zip(members, specs, strict=True):
                out[i] = _error_result(spec, key, exc)
                if on_result:
                    on_result(out[i])
            continue
        for j, i in enumerate(members):
            result = results.from_group(output, j, key, len(specs))
            result.params = engine.trial_params(output, j)
            result.graphdef = output.graphdef
            base = diagnosis.command_for(result.spec, data_args(run.data))
            result.diagnosis = diagnosis.diagnose(result.history, result.status, spec=result.spec,
                                                  base_command=base, thresholds=thresholds)
            out[i] = result
            if on_result:
                on_result(result)
    return [out[i] for i in range(len(run.specs))]


def _precompile(groups: list[list[TrialSpec]], data: Dataset) -> list[float]:
    """Compile every group's programs before training, one thread per core (at most 4; XLA
    compiles outside the GIL); per group the seconds spent. A group that fails here fails again,
    reported, in training."""
    if len(groups) < 2:
        return [0.0] * len(groups)

    def one(specs: list[TrialSpec]) -> float:
        try:
            return engine.prepare(specs, data)
        except Exception:  # noqa: BLE001 -- train_group raises it again and reports it per trial
            return 0.0

    with ThreadPoolExecutor(max_workers=min(len(groups), os.cpu_count() or 1, 4)) as pool:
        return list(pool.map(one, groups))


def _error_result(spec: TrialSpec, key: dict[str, Any], exc: Exception) -> results.TrialResult:
    message = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
    return results.TrialResult(
        id=results.trial_id(spec, key), spec=spec, status="error", metrics={}, history={},
        best_epoch=0, stopped_epoch=None, diverged_epoch=None, timing={},
        extra={"error": message, "traceback": traceback.format_exc(limit=3)},
    )


def parse_lr(text: str | None, optimizers: Sequence[str]) -> dict[str, float | None]:
    """``--lr``: one number for all (``0.01``) or per optimizer (``adam=1e-3,sgd=0.1``)."""
    lrs: dict[str, float | None] = dict.fromkeys(optimizers)
    if text is None or not text.strip():
        return lrs
    for item in text.split(","):
        name, sep, value = item.strip().rpartition("=")
        if sep and name not in optimizers:
            raise InputError(f"--lr names optimizer {name!r}, which is not being run ({', '.join(optimizers)})")
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"--lr expects a number or name=number, got {item.strip()!r}") from None
        for target in ([name] if sep else optimizers):
            lrs[target] = number
    return lrs


def optimizer_specs(optimizers: Sequence[str], lrs: dict[str, float | None], seeds: Sequence[int], *,
                    model: ModelConfig, train: TrainConfig, reg: Regularization,
                    hyperparams: dict[str, dict[str, float]] | None = None) -> tuple[TrialSpec, ...]:
    """The paired optimizer comparison: every optimizer x every seed, same model and data."""
    specs = []
    for name in optimizers:
        given = dict((hyperparams or {}).get(name, {}))
        if lrs.get(name) is not None:
            given["learning_rate"] = lrs[name]  # type: ignore[assignment]
        for seed in seeds:
            specs.append(TrialSpec(optimizer=name, hyperparams=tuple(given.items()), seed=seed,
                                   model=model, train=train, reg=reg))
    return tuple(specs)
