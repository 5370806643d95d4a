"""Orchestration: trials -> groups of one structure -> engine -> diagnosed ``TrialResult`` rows.

This is the library behind every command. It never prints; progress goes through callbacks and
results come back as rows (and, through ``on_result``, as each group finishes, so a results file
grows while a long run goes on).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnbench import optim
from dnnbench.analysis import diagnosis, targets
from dnnbench.config import DataConfig, TrialSpec
from dnnbench.data import Dataset
from dnnbench.errors import InputError
from dnnbench.results import rows as results
from dnnbench.run import backends
from dnnbench.train import engine
from dnnbench.train.models import weight_count

EpochCallback = Callable[[int, int, dict[str, np.ndarray]], None]  # (group index, epoch, metrics)


@dataclass(frozen=True)
class Run:
    """A batch of trials on one dataset, and how to run them."""

    specs: tuple[TrialSpec, ...]
    data: DataConfig = field(default_factory=DataConfig)
    max_parallel: int | None = None  # at most this many trials per compiled program
    thresholds: diagnosis.Thresholds = field(default_factory=diagnosis.Thresholds)
    workers: int | None = None  # compiled programs trained at once; None = engine.concurrency()
    #: each row records when it first reached its target: one for the run, or one per trial
    target: targets.Target | Callable[[TrialSpec], targets.Target | None] | None = None
    backend: backends.Settings = field(default_factory=backends.Settings)  # where the programs train

    def __post_init__(self) -> None:
        if not self.specs:
            raise InputError("nothing to run: no trials")
        if self.max_parallel is not None and self.max_parallel <= 0:
            raise InputError(f"max parallel must be a positive integer, got {self.max_parallel!r}")
        if self.workers is not None and self.workers <= 0:
            raise InputError(f"workers must be a positive integer, got {self.workers!r}")


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


def group_by_structure(
    specs: Sequence[TrialSpec],
    max_parallel: int | None = None,
    n_features: int | None = None,
    n_classes: int = 10,
    workers: int = 1,
) -> list[list[int]]:
    """Indices of ``specs`` grouped by structure (first-seen order), chunked to ``max_parallel``.

    Without ``max_parallel`` and given ``n_features``, each group is chunked so that its estimated
    memory (``trial_bytes``) stays within ``MEMORY_BUDGET`` shared by ``workers`` programs running at
    once: big sweeps run as several programs of one shape (compiled once) instead of one that does
    not fit. With ``workers`` > 1 and fewer chunks than workers, chunks are split into near-equal
    parts so that every worker has a program to train (see ``balance``).
    """
    groups: dict[Any, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(spec.structure, []).append(i)
    chunks: list[list[int]] = []
    for members in groups.values():
        if max_parallel is not None:  # the user's word: chunks of exactly that many
            chunks += [members[i : i + max_parallel] for i in range(0, len(members), max_parallel)]
            continue
        size = len(members)
        if n_features is not None:
            budget = MEMORY_BUDGET // max(workers, 1)
            size = max(1, min(size, budget // trial_bytes(specs[members[0]], n_features, n_classes)))
        chunks += near_equal(members, math.ceil(len(members) / size))
    return balance(chunks, workers) if max_parallel is None else chunks


def near_equal(members: list[int], parts: int) -> list[list[int]]:
    """``members`` cut into ``parts`` contiguous chunks whose sizes differ by at most one, bigger
    first (``numpy.array_split``): at most two program shapes, hence at most two compiles (16 trials
    under a cap of 10 are 8 + 8, one executable, rather than 10 + 6, two)."""
    return [[int(i) for i in chunk] for chunk in np.array_split(members, parts)]


def balance(chunks: list[list[int]], workers: int) -> list[list[int]]:
    """Split chunks into equal contiguous parts until there are at least ``workers`` of them.

    On a CPU, programs trained at once outrun one vmapped program of all their trials (figures:
    docs/performance.md): the batch-100 matmuls leave cores idle that another program fills.
    Parts are equal so they share one compiled executable: a chunk is cut into the smallest
    divisor of its size that is >= its share of the workers (a prime-sized chunk becomes single
    trials, which need no vmap at all).
    """
    if len(chunks) >= workers:
        return chunks
    parts = [1] * len(chunks)
    while sum(parts) < workers:
        # one more part for the chunk whose parts are biggest, while parts can shrink
        i = max(range(len(chunks)), key=lambda j: len(chunks[j]) / parts[j])
        if len(chunks[i]) <= parts[i]:
            break
        parts[i] += 1
    out: list[list[int]] = []
    for chunk, wanted in zip(chunks, parts, strict=True):
        k = next(k for k in range(wanted, len(chunk) + 1) if len(chunk) % k == 0)
        size = len(chunk) // k
        out += [chunk[start : start + size] for start in range(0, len(chunk), size)]
    return out


def chunks_of(run: Run, data: Dataset, threads: int | None = None) -> tuple[list[list[int]], int]:
    """How ``run`` trains on ``data``: the indices of each compiled program's trials, and how many
    programs train at once, each with ``threads`` XLA threads (default: ``program_threads``).

    The plan is a function of the run alone -- its trials, their structures, ``--max-parallel``
    and the kind of device -- never of ``--workers`` or the core count: a trial's numbers depend
    (in the last bits of XLA's sums) on the size of the program it trains in, so a baseline made
    on an 8-core laptop must split exactly as on a 2-core CI runner. ``workers`` only decides how
    many of the programs train at once.
    """
    plan = group_by_structure(run.specs, run.max_parallel, data.n_features, data.n_classes, engine.plan_programs())
    threads = threads or program_threads(run, plan)
    workers = run.workers or memory_bounded(engine.concurrency(threads), plan, run.specs, data)
    return plan, workers


def program_threads(run: Run, plan: Sequence[Sequence[int]]) -> int | None:
    """The XLA threads each program of ``plan`` trains with (``backends.program_threads``): what
    the header records, since they decide a trial's last bits."""
    return backends.program_threads(run.backend, len(plan))


def memory_bounded(workers: int, plan: Sequence[Sequence[int]], specs: Sequence[TrialSpec], data: Dataset) -> int:
    """At most as many programs at once as the memory available holds: each worker process holds
    its own copy of the data on the device and its program's trials (``trial_bytes``); never more
    workers than programs."""
    arrays = (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test)
    data_bytes = sum(int(a.nbytes) for a in arrays)
    program_bytes = max(
        sum(trial_bytes(specs[i], data.n_features, data.n_classes) for i in members) for members in plan
    )
    available = available_memory()
    if available is not None:
        workers = min(workers, max(1, int(0.8 * available) // (data_bytes + program_bytes + PROCESS_BYTES)))
    return max(1, min(workers, len(plan)))


#: A worker process's own memory besides data and trials: Python, JAX and XLA's runtime (measured:
#: a spawned worker that imported dnnbench and started XLA held ~350 MB resident).
PROCESS_BYTES = 400 * 1024**2


def available_memory() -> int | None:
    """Bytes the OS can give without swapping (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def data_key(config: DataConfig, data: Dataset) -> dict[str, Any]:
    return {"source": data.source, "val_split": config.val_split, "sizes": data.sizes}


def execute(
    run: Run,
    data: Dataset,
    *,
    on_result: Callable[[results.TrialResult], None] | None = None,
    on_epoch: EpochCallback | None = None,
    on_group: Callable[[int, int, Sequence[TrialSpec]], None] | None = None,
    on_status: backends.StatusCallback | None = None,
    groups: Sequence[Sequence[int]] | None = None,
    threads: int | None = None,
) -> list[results.TrialResult]:
    """Train every trial of ``run`` on ``data``; results in the order of ``run.specs``.

    ``groups``: the indices of each compiled program's trials, when they must be as another run
    had them (resume); by default ``chunks_of(run, data)``. ``threads``: each program's XLA
    threads, when they must be another run's (its header's); by default ``program_threads``. The
    plan is made here, once; the backend (``run.backend``: local threads or a Ray cluster) only
    trains its programs and hands each back as it finishes. ``on_group``, ``on_epoch`` and
    ``on_status`` (on a cluster) are called one at a time (from the backend's threads);
    ``on_result`` from the calling thread, group by group, in group order whatever finishes first.
    On Ctrl-C or an error the backend stops, the groups that finished meanwhile are emitted, and
    the exception propagates.
    """
    planned, workers = chunks_of(run, data, threads)
    threads = threads or program_threads(run, planned)
    groups = [list(g) for g in groups] if groups is not None else planned
    thresholds = run.thresholds
    if run.data.label_noise > 0:  # wrong labels cap the reachable training accuracy
        ceiling = thresholds.underfit_train_acc * (1.0 - run.data.label_noise)
        thresholds = dataclasses.replace(thresholds, underfit_train_acc=ceiling)
    key = data_key(run.data, data)
    out: dict[int, results.TrialResult] = {}
    group_specs = [[run.specs[i] for i in members] for members in groups]
    finished: dict[int, backends.Outcome] = {}  # trained, not yet emitted
    emitted: set[int] = set()

    def emit(g: int) -> None:
        output = finished.pop(g)
        emitted.add(g)
        for j, i in enumerate(groups[g]):
            out[i] = (
                _error_result(group_specs[g][j], key, output)
                if isinstance(output, Exception)
                else _result(output, j, key, run, data, thresholds)
            )
            if on_result:
                on_result(out[i])

    execution = backends.start(
        run.backend,
        group_specs,
        data,
        workers=workers,
        threads=threads,
        on_group=on_group,
        on_epoch=on_epoch,
        on_status=on_status,
    )
    try:
        next_group = 0  # results go out in group order: a results file's rows do not depend on timing
        for g, outcome in execution.finished():
            finished[g] = outcome
            while next_group in finished:
                emit(next_group)
                next_group += 1
    except BaseException:
        finished.update(execution.stop())  # groups that finished meanwhile are kept, in order
        with contextlib.suppress(Exception):  # e.g. the output that failed fails again: the first error is the news
            for g in sorted(finished):
                if g not in emitted:
                    emit(g)
        raise
    finally:
        execution.close()
    return [out[i] for i in range(len(run.specs))]


def _result(
    output: engine.GroupOutput, j: int, key: dict[str, Any], run: Run, data: Dataset, thresholds: diagnosis.Thresholds
) -> results.TrialResult:
    result = results.from_group(output, j, key, len(output.specs))
    result.extra["optimizer_origin"] = optim.origin(result.spec.optimizer)
    if optim.at_fallback(result.spec.optimizer, result.spec.learning_rate):
        result.extra["lr_fallback"] = True  # no default rate anywhere: the table's caption says to tune it
    target = run.target(result.spec) if callable(run.target) else run.target
    if target is not None:
        result.extra["target"] = targets.time_to_target(result.history, result.timing, target)
    result.params = engine.trial_params(output, j)
    result.graphdef = output.graphdef
    restored = (result.extra.get("early_stopping") or {}).get("restored_epoch")  # the engine's own best epoch
    result.diagnosis = diagnosis.diagnose(
        result.history, result.status, spec=result.spec, data=run.data, thresholds=thresholds, restored=restored
    )
    return result


def _error_result(spec: TrialSpec, key: dict[str, Any], exc: Exception) -> results.TrialResult:
    message = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
    report = getattr(exc, "report", None) or traceback.format_exc(limit=3)
    return results.TrialResult(
        id=results.trial_id(spec, key),
        spec=spec,
        status="error",
        metrics={},
        history={},
        best_epoch=0,
        stopped_epoch=None,
        diverged_epoch=None,
        timing={},
        extra={"optimizer_origin": optim.origin(spec.optimizer), "error": message, "traceback": report},
    )
