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
  (3.2 s alone). Threads still win a run of little training, which does not pay for starting
  the pool (spawning workers that import JAX: ~2-3 s).
- **No more programs at once than cores.** Three MNIST-sized Adam programs as processes on 2 cores
  kept the throughput of two within 2% in their steady epochs (4 lost 30%: their working sets no
  longer share the 32 MB cache), so a third worker looked like a way to even out the end of a run
  of five (two, two, then one alone beside an idle core). Whole runs said otherwise: the five
  optimizers x 3 epochs took 51.2-52.3 s with 3 workers against 48.0-48.7 s with 2 (compile cache
  off; 95-97 s of CPU against 80-83 s: XLA's threads of three processes compete for two cores),
  and 41.2-44.1 s against 43.2-44.0 s with the cache filled. So the workers stay one per
  ``--threads`` cores.
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
