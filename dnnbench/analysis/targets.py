"""Time to target (AlgoPerf's measure): when did a trial first reach ``val_acc >= 0.97``?

Read from the per-epoch history, so it is known to the epoch: the first epoch whose metric reached
the target, the optimizer steps taken by then (machine-independent), and the training time by
then (``train_s`` of the trial's compiled program x epochs / epochs run: programs share cores,
so time is per program and only comparable within one run; steps are the honest unit across
machines). ``None`` = never reached. Plain Python on rows: no JAX.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dnnbench.errors import InputError
from dnnbench.results.metrics import TARGETS


@dataclass(frozen=True)
class Target:
    """A metric and the value to reach: at least it for accuracies, at most it for losses."""

    metric: str
    value: float

    def __post_init__(self) -> None:
        if self.metric not in TARGETS:
            raise InputError(f"--target: unknown metric {self.metric!r}; valid: {', '.join(TARGETS)}")
        if not math.isfinite(self.value):
            raise InputError(f"--target {self.metric}: the value must be a finite number, got {self.value!r}")
        if self.metric.endswith("acc") and not 0 <= self.value <= 1:
            raise InputError(f"--target {self.metric}: an accuracy target must be in [0, 1], got {self.value:g}")
        if self.metric.endswith("loss") and self.value < 0:
            raise InputError(f"--target {self.metric}: a loss target must be >= 0, got {self.value:g}")

    @property
    def label(self) -> str:
        return f"{self.metric} {'>=' if self.metric.endswith('acc') else '<='} {self.value:g}"

    def reached(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value >= self.value if self.metric.endswith("acc") else value <= self.value

    def describe(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value}


def parse_target(text: str | None) -> Target | None:
    """``--target val_acc=0.97`` -> ``Target``; None when not given."""
    if text is None or not text.strip():
        return None
    match = re.fullmatch(r"\s*(\w+)\s*=\s*(\S+)\s*", text)
    if not match:
        raise InputError(f"--target expects METRIC=VALUE like val_acc=0.97, got {text!r}")
    try:
        value = float(match.group(2))
    except ValueError:
        raise InputError(f"--target {match.group(1)}: {match.group(2)!r} is not a number") from None
    return Target(match.group(1), value)


def time_to_target(
    history: Mapping[str, Sequence[float | None]], timing: Mapping[str, Any], target: Target
) -> dict[str, Any]:
    """``{"epoch", "step", "train_s"}`` at which ``target`` was first reached (each None if never)."""
    values = history.get(target.metric) or []
    for epoch, value in enumerate(values, 1):
        if target.reached(value):
            steps = timing.get("steps_per_epoch")
            ran = timing.get("epochs_run") or len(values)
            train_s = timing.get("train_s")
            return {
                **target.describe(),
                "epoch": epoch,
                "step": epoch * steps if steps else None,
                "train_s": train_s * epoch / ran if train_s is not None and ran else None,
            }
    return {**target.describe(), "epoch": None, "step": None, "train_s": None}


def median_or_never(values: Sequence[float | None]) -> float | None:
    """The median over seeds, a never-reached seed counting as infinitely slow: None ("never")
    unless a majority reached the target."""
    if not values:
        return None
    median = statistics.median(math.inf if v is None else float(v) for v in values)
    return median if math.isfinite(median) else None


def over_seeds(label: str, reached: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """One comparison row's time to target (a ``stats.summarize`` row's trials' ``time_to_target``):
    its seeds, how many reached the target, and the median epochs, steps and training seconds to it
    (None = never, by a majority)."""
    infos = [info or {} for info in reached]
    return {
        "label": label,
        "n": len(infos),
        "reached": sum(1 for i in infos if i.get("epoch") is not None),
        **{key: median_or_never([i.get(key) for i in infos]) for key in ("epoch", "step", "train_s")},
    }
