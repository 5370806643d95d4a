"""How a run's programs share this machine: on threads of this process or in worker processes, and
how many at once. Nothing here changes a number: the plan (which trials form each program) is
``runner.chunks_of``'s, the same on every machine, and every program trains on ``--threads`` XLA
threads wherever it runs. Figures behind each rule: docs/performance.md (issue 20).

Two measurements decide it (2026-12-06, the 2-core development machine, ``--threads 1``):

- **Threads of one process do not train at once.** XLA's CPU client has one pool of ``--threads``
  threads per process, and its larger kernels (random bits, transcendental loops, the training
  step's) run on that pool: two MNIST-sized programs on two threads took 9.4 s for what each does
  alone in 3.8-4.6 s, while two worker processes trained side by side at 3.4 s per epoch each
  (3.2 s alone). Threads still win a run of little training, which does not pay for starting
  the pool (spawning workers that import JAX: ~2-3 s).
- **One program more than cores costs ~2%, two more ~30%.** Adam epochs of the MNIST-sized MLP,
  as processes at once on 2 cores: 2 at once 3.3-3.5 s each, 3 at once 5.0-5.3 s (the same
  throughput within 2%), 4 at once 9.3-11.1 s and 5 at once 12.8-15.1 s (their working sets no
  longer share the 32 MB cache). So a run of 5 equal programs on 2 cores, which leaves a core idle
  while the fifth trains alone (3 rounds), trains 3 at once instead (2.5 rounds' time).
"""

from __future__ import annotations

from collections.abc import Sequence

from dnnbench.config import TrialSpec
from dnnbench.data import Dataset

#: FLOP per second one core gives one program, to estimate training time only (the MNIST-sized
#: MLP on one XLA thread ran at 57-63 GFLOP/s; digits' small layers run slower, so estimates err low).
CORE_FLOPS = 5e10

#: A local run whose programs would keep one core busy this many seconds or more trains in worker
#: processes: starting the pool (~2-3 s) then costs less than the second core gains (the main job,
#: ~4 s of training, stays on threads: 8.2-8.5 s there, 9.0-9.5 s in processes).
PROCESSES_FROM_SECONDS = 10.0

#: A local run of more than this many programs per worker trains in worker processes whatever its
#: size: tracing and lowering each program is Python under one GIL on threads (``tune`` of 4
#: optimizers on digits, 64 programs: threads 80.1 s, processes 55.1 s).
PROCESSES_FROM = 3

#: Programs at once beyond the cores: one (measured above: 2%; two cost 30%).
EXTRA_WORKERS = 1

#: What one program more than cores costs in throughput, rounded up from the 2% measured, so that
#: an extra worker is only taken where it shortens the run by more than that.
OVERSUBSCRIBED_LOSS = 0.05


def program_cost(specs: Sequence[TrialSpec], data: Dataset) -> float:
    """A program's work in FLOP: training (6 per weight per sample: forward, backward, update) and
    each epoch's evaluation (2 per weight per sample of the training subset, validation and test
    sets), for every trial of it. Early stopping can only make it less."""
    from dnnbench.train.models import weight_count  # imports JAX: not at ``dnnbench --help``

    spec = specs[0]
    weights = weight_count(data.n_features, spec.model.hidden, data.n_classes)
    n_train = len(data.y_train)
    evaluated = (spec.train.train_eval_samples or n_train) if n_train else 0
    evaluated = min(evaluated, n_train) + len(data.y_val) + len(data.y_test)
    per_epoch = 6.0 * weights * n_train + 2.0 * weights * evaluated
    return float(len(specs) * spec.train.epochs * per_epoch)


def wants_processes(costs: Sequence[float], workers: int) -> bool:
    """Whether the local backend trains these programs in worker processes (see the module's
    docstring): when there is a second core to gain and either the training or the number of
    programs is large enough to pay for starting the pool."""
    if workers < 2 or len(costs) < 2:
        return False
    return len(costs) > PROCESSES_FROM * workers or sum(costs) / CORE_FLOPS >= PROCESSES_FROM_SECONDS


def makespan(costs: Sequence[float], workers: int, slots: int) -> float:
    """Modelled wall time (in cost units) of ``workers`` processes sharing ``slots`` cores' worth of
    XLA threads, each taking the longest program left when it is free. Programs running at once
    share the slots equally; more of them than slots lose ``OVERSUBSCRIBED_LOSS`` of throughput."""
    queue = sorted(costs, reverse=True)
    running: list[float] = []  # work left of each running program
    clock = 0.0
    while queue or running:
        while queue and len(running) < workers:
            running.append(queue.pop(0))
        rate = min(1.0, slots / len(running)) * (1.0 - OVERSUBSCRIBED_LOSS if len(running) > slots else 1.0)
        step = min(running) / rate
        clock += step
        running = [left - step * rate for left in running]
        running = [left for left in running if left > 1e-9 * max(costs)]
    return clock


def balanced_workers(costs: Sequence[float], slots: int, most: int) -> int:
    """How many worker processes train ``costs``' programs at once: ``slots`` (cores / threads), or
    up to ``EXTRA_WORKERS`` more (never more than ``most``, the memory's bound) where the modelled
    run is shorter. Five equal programs on 2 cores: 3 workers (2.5 rounds' time, not 3)."""
    slots = max(1, slots)
    best = max(1, min(slots, most, len(costs)))
    for workers in range(best + 1, min(slots + EXTRA_WORKERS, most, len(costs)) + 1):
        if makespan(costs, workers, slots) < makespan(costs, best, slots):
            best = workers
    return best
