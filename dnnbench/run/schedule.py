"""Where a run's programs train on this machine: on threads of this process or in worker processes
(how many at once stays ``runner.chunks_of``'s: one per ``--threads`` cores). Nothing here changes a
number: the plan (which trials form each program) is the run's, the same on every machine, and
every program trains on ``--threads`` XLA threads wherever it runs. Figures behind each rule:
docs/performance.md (issue 20).

Two measurements decide it (2026-12-06, the 2-core development machine, ``--threads 1``):

- **Threads of one process do not train at once.** XLA's CPU client has one pool of ``--threads``
  threads per process, and its larger kernels (random bits, transcendental loops, the training
  step's) run on that pool: two MNIST-sized programs on two threads took 9.4 s for what each does
  alone in 3.8-4.6 s, while two worker processes trained side by side at 3.4 s per epoch each
  (3.2 s alone). Two digits programs of the main job took 1.50-1.55 s on two threads for 0.75-0.85 s
  each alone (2026-12-07). Threads still win a run of little training: the driver trains alone
  until a worker process has started (it imports JAX: about a second of a core).
- **No more programs at once than cores.** Three MNIST-sized Adam programs as processes on 2 cores
  kept the throughput of two within 2% in their steady epochs (4 lost 30%: their working sets no
  longer share the 32 MB cache), so a third worker looked like a way to even out the end of a run
  of five (two, two, then one alone beside an idle core). Whole runs said otherwise: the five
  optimizers x 3 epochs took 51.2-52.3 s with 3 workers against 48.0-48.7 s with 2 (compile cache
  off; 95-97 s of CPU against 80-83 s: XLA's threads of three processes compete for two cores),
  and 41.2-44.1 s against 43.2-44.0 s with the cache filled. So the workers stay one per
  ``--threads`` cores.

And one way to even out the end of a run in the pool: **a program's steps may train in two
workers**, its first steps at the start of the run, its last ones (``engine.Progress`` handed
over) at the end, where a worker would otherwise idle beside the last program (McNaughton's
wrap-around rule, at any step, inside an epoch too). Five MNIST-sized programs of 3 epochs on 2
workers: 7.5 epochs' time (9 unsplit, 8 at epoch boundaries). Each step is the same loop body in
either worker, so the same numbers.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from typing import Any

from dnnbench.config import TrialSpec
from dnnbench.data import Dataset

#: FLOP per second one core gives one program, to estimate training time only (the MNIST-sized
#: MLP on one XLA thread ran at 57-63 GFLOP/s; digits' small layers run slower, so estimates err low).
CORE_FLOPS = 5e10

#: A local run whose programs would keep one core busy this many seconds or more (estimated at
#: ``CORE_FLOPS``) trains in worker processes. The driver is one of the workers and trains from the
#: start, so the pool costs only the time until a worker process has started (about a second) on a
#: core that would idle: the main job (5 digits programs, 6.5 s estimated, 4 s trained) took
#: 4.3-5.0 s in processes against 5.2-6.1 s on threads, whole processes with the store filled
#: (2026-12-07, alternating). Below this, the run is over about when a worker would be ready.
PROCESSES_FROM_SECONDS = 2.0

#: A local run of more than this many programs per worker trains in worker processes whatever its
#: size: tracing and lowering each program is Python under one GIL on threads (``tune`` of 4
#: optimizers on digits, 64 programs: threads 80.1 s, processes 55.1 s).
PROCESSES_FROM = 3


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


def steps_per_epoch(specs: Sequence[TrialSpec], data: Dataset) -> int:
    """A program's training steps per epoch (its trials share the batch size and training share)."""
    from dnnbench.data import with_train_fraction

    spec = specs[0]
    return len(with_train_fraction(data, spec.structure.train_fraction).y_train) // spec.train.batch_size


def wants_processes(costs: Sequence[float], workers: int) -> bool:
    """Whether the local backend trains these programs in worker processes (see the module's
    docstring): when there is a second core to gain and either the training or the number of
    programs is large enough to pay for starting the pool."""
    if workers < 2 or len(costs) < 2:
        return False
    return len(costs) > PROCESSES_FROM * workers or sum(costs) / CORE_FLOPS >= PROCESSES_FROM_SECONDS


#: What handing a program's last epochs to another worker costs, in FLOP of training: that worker
#: loads its executables from the store (~0.2 s) or, with the compile cache off, compiles them
#: (~2 s for an MNIST-sized program); one second of a core is the middle.
RESUME_FLOP = CORE_FLOPS * 1.0


#: How long a worker process takes to start, in seconds: it is spawned and imports JAX and dnnbench
#: (0.9-1.0 s of a core measured on the 2-core machine). The driver, one of the workers
#: (``backends.processes``), trains meanwhile.
WORKER_START_SECONDS = 1.0


def worker_starts(workers: int, driver_trains: bool, spawned_ago: float = 0.0) -> list[float]:
    """When each of ``workers`` starts training, in FLOP of one core: the driver at once, worker
    processes once started (``WORKER_START_SECONDS`` after they were spawned, ``spawned_ago``
    seconds ago where they were spawned early: ``run.pool``)."""
    later = max(0.0, WORKER_START_SECONDS - spawned_ago) * CORE_FLOPS
    return [0.0 if driver_trains and w == 0 else later for w in range(workers)]


def order(costs: Sequence[float], first: dict[int, int]) -> list[int]:
    """The order the pool is handed programs: those whose first steps train apart (``first``)
    first, then the others; each longest first, so that the last program to start is short."""
    by_cost = sorted(range(len(costs)), key=lambda g: -costs[g])
    return [g for g in by_cost if g in first] + [g for g in by_cost if g not in first]


def finish_time(
    costs: Sequence[float],
    steps: Sequence[int],
    workers: int,
    first: dict[int, int],
    starts: Sequence[float] = (),
) -> float:
    """When ``workers`` would finish the programs (``costs`` in FLOP, ``steps`` training steps
    each) taken in ``order`` from one queue, program ``g`` of ``first`` training its first
    ``first[g]`` steps, its others queued at the end once those are done (a ``RESUME_FLOP``
    more). In FLOP of one core, from when the first worker starts; ``starts``: when each worker
    starts (default: all at once)."""
    queue = deque((g, first.get(g, steps[g]), g in first) for g in order(costs, first))
    later: list[tuple[float, int, int]] = []  # (ready at, program, steps left): the second parts
    free = sorted(starts) if starts else [0.0] * workers  # when each worker is free next (a heap)
    end = 0.0
    while queue or later:
        now = heapq.heappop(free)
        if not queue and later[0][0] > now:
            now = later[0][0]  # idle until a first part ends
        while later and later[0][0] <= now:  # queued at the end, in the order they became ready
            ready, g, left = heapq.heappop(later)
            queue.append((g, left, False))
        g, n, is_first = queue.popleft()
        done = now + n * costs[g] / steps[g] + (0.0 if is_first or g not in first else RESUME_FLOP)
        if is_first:
            heapq.heappush(later, (done, g, steps[g] - n))
        heapq.heappush(free, done)
        end = max(end, done)
    return end


#: The least share of a run's time a split must save to be taken. The costs are estimates: the main
#: job's five digits programs on two workers that start together would save 4% on paper by
#: splitting one, and took 4.6-5.1 s so against 3.9-4.7 s unsplit (2026-12-07): handing over cost
#: more than estimated (0.3 s) and the programs were less equal than their FLOP.
SPLIT_SAVING = 0.05


def first_steps(
    costs: Sequence[float],
    epochs: Sequence[int],
    steps_per_epoch: Sequence[int],
    workers: int,
    starts: Sequence[float] = (),
) -> dict[int, int]:
    """Programs whose steps train in two workers, and how many steps (counted from the program's
    first) the first one trains. ``starts``: when each worker starts, in FLOP (``worker_starts``;
    default: all at once).

    McNaughton's rule splits the programs that would start last: first at epoch boundaries
    (``_first_epochs``), then each split point is moved step by step, inside an epoch too
    (``engine.train_part``), while that helps, and the last programs to start that were not split
    are tried split too. Five programs of three epochs on two workers so end together, in 7.5
    epochs' time, where epoch boundaries left one worker alone for a whole epoch (8; 9 unsplit).
    Taken if it saves at least ``SPLIT_SAVING`` of the run: empty where every worker has a
    program to the end anyway."""
    if workers < 2 or len(costs) <= workers:
        return {}
    steps = [e * s for e, s in zip(epochs, steps_per_epoch, strict=True)]
    no_split = finish_time(costs, steps, workers, {}, starts)
    first = {g: k * steps_per_epoch[g] for g, k in _first_epochs(costs, epochs, workers, starts).items()}
    best = finish_time(costs, steps, workers, first, starts)
    last_to_start = [g for g in order(costs, {}) if steps[g] > 1]
    for _ in range(2):
        improved = False
        for g in list(first) + [g for g in last_to_start[-workers:] if g not in first]:
            if g not in first:  # one more split: a coarse pass over its steps first
                for k in _some(range(1, steps[g])):
                    time = finish_time(costs, steps, workers, {**first, g: k}, starts)
                    if _shorter(time, best):
                        first, best, improved = {**first, g: k}, time, True
                if g not in first:
                    continue
            stride = max(1, steps_per_epoch[g] // 2)
            while stride >= 1:  # halving: the finish time is piecewise linear in the split point
                moved = False
                for k in (first[g] - stride, first[g] + stride):
                    if 1 <= k < steps[g]:
                        time = finish_time(costs, steps, workers, {**first, g: k}, starts)
                        if _shorter(time, best):
                            first, best, moved, improved = {**first, g: k}, time, True, True
                if not moved:
                    stride //= 2
        if not improved:
            break
    return first if best <= (1.0 - SPLIT_SAVING) * no_split else {}


def _shorter(time: float, best: float) -> bool:
    """``time`` shorter than ``best`` by more than the rounding of summing a queue's parts (a split
    that gains nothing is not taken for the last bits of a float)."""
    return time < best * (1.0 - 1e-9)


def _first_epochs(
    costs: Sequence[float], epochs: Sequence[int], workers: int, starts: Sequence[float] = ()
) -> dict[int, int]:
    """Programs whose epochs train in two workers, and how many epochs the first one trains, at
    epoch boundaries (``first_steps`` then moves the points inside epochs).

    Here the programs McNaughton's rule splits are the last ``m`` to start (``m`` < ``workers``),
    each split at the same fraction of its epochs, and the ``m`` and fraction that
    ``finish_time`` finds shortest win; then each split point, or one more split, is moved while
    that helps (McNaughton's points are staggered). Several at once: on 8 workers, 12 programs of
    3 epochs finish in 5 epochs' time instead of 6, where no single split helps."""
    best_first: dict[int, int] = {}
    best = finish_time(costs, epochs, workers, best_first, starts)
    last_to_start = [g for g in order(costs, {}) if epochs[g] > 1]
    for m in _some(range(1, min(workers, len(last_to_start) + 1))):
        split = last_to_start[-m:]
        fractions = {i / epochs[g] for g in split for i in range(1, epochs[g])}
        for fraction in _some(sorted(fractions)):
            first = {g: max(1, min(epochs[g] - 1, round(fraction * epochs[g]))) for g in split}
            time = finish_time(costs, epochs, workers, first, starts)
            if time < best:
                best_first, best = first, time
    # then each split program's own point, or one more split, one at a time while that helps
    # (McNaughton's points are staggered: 4 programs on 3 workers finish in 4 epochs' time so,
    # in 5 at one fraction)
    for _ in range(2):
        improved = False
        for g in list(best_first) + [g for g in last_to_start[-workers:] if g not in best_first]:
            for k in _some(range(1, epochs[g])):
                first = {**best_first, g: k}
                time = finish_time(costs, epochs, workers, first, starts)
                if time < best:
                    best_first, best, improved = first, time, True
        if not improved:
            break
    return best_first


def _some(values: Sequence[Any], most: int = 16) -> list[Any]:
    """At most ``most`` of ``values``, evenly spread (the search stays quick on 64 workers and
    100 epochs: a few hundred simulated queues)."""
    if len(values) <= most:
        return list(values)
    return [values[round(i * (len(values) - 1) / (most - 1))] for i in range(most)]
