"""The pool of worker processes a local run trains in, which can be spawned before JAX is imported.

A training command knows at once whether its run may go to worker processes (the local backends,
two workers or more); the plan that decides comes only after the driver has imported JAX and loaded
the data, about a second later. Spawned first (``start_early``), the workers import JAX meanwhile,
on cores the driver leaves idle, and ``backends.processes`` adopts them (``adopt``); a run that
trains on threads ends them unused (``end``). Figures: docs/performance.md.

A worker imports JAX, Flax and Optax as it starts (``initialize``) but starts no XLA client until it
is given a run's first program (``backends.processes``), which says with how many threads: one that
is never used never touches a device, and an early worker serves a run whatever its programs'
threads (``--threads auto``).

Only the ``dnnbench`` program spawns workers early (``cli.app.run`` sets ``EARLY``): a process that
calls ``main`` itself, such as the test suite, would pay for workers it mostly never uses.

No JAX here: the driver imports this module before JAX.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

#: Whether the driver trains programs too, as one of a run's workers (``backends.processes``): a
#: run of N workers spawns N-1 processes. The tests of a dying worker turn it off, so that their
#: program cannot land in the driver.
DRIVER_TRAINS = True

#: Whether training commands spawn their workers early (the ``dnnbench`` program only).
EARLY = False

#: At most this many workers are spawned early; a run that wants more spawns the others once its
#: plan is known. Bounds what a many-core machine spends on a run of a few programs.
EARLY_MOST = 7


@dataclass
class Pool:
    """Worker processes and what each was given when it was spawned: the queue its progress goes to
    and the flag that stops it."""

    executor: ProcessPoolExecutor
    events: Any
    stop: Any
    workers: int
    spawned: float = field(default_factory=time.monotonic)  # when (its processes start as tasks arrive)


def spawn(workers: int, events: Any = None, stop: Any = None) -> Pool:
    """A pool of up to ``workers`` processes (spawned, never forked: forking a process that runs JAX
    can deadlock), started as tasks arrive; each runs ``initialize`` first. ``events`` / ``stop``:
    those of an earlier pool of the same run, else new ones."""
    context = multiprocessing.get_context("spawn")
    events = context.Queue() if events is None else events
    stop = context.Event() if stop is None else stop
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=initialize, initargs=(events, stop)
    )
    return Pool(executor, events, stop, workers)


def default_workers() -> int:
    """How many programs a local run trains at once by default, as far as it is known before JAX
    starts: one per ``--threads`` cores (``engine.concurrency``, which the plan's memory bound may
    lower)."""
    from dnnbench.train import threads

    return max(1, threads.cores() // threads.requested())


# --- spawned early -----------------------------------------------------------------------------

_early: list[Pool] = []  # the pool spawned early, until a run adopts it or the command ends


def start_early(workers: int) -> None:
    """Spawn the worker processes of a run of ``workers`` workers now (up to ``EARLY_MOST``), if
    allowed and there are any (the driver is one of the workers)."""
    processes = workers - (1 if DRIVER_TRAINS else 0)
    if not EARLY or processes < 1 or _early:
        return
    early = spawn(processes)
    for _ in range(min(processes, EARLY_MOST)):  # the pool spawns a process per task while none is idle
        early.executor.submit(os.getpid)
    _early.append(early)


def adopt(workers: int) -> Pool | None:
    """The pool spawned early, for a run of ``workers`` worker processes, if it can hold them (else
    it ends); None if there is none."""
    if not _early:
        return None
    early = _early.pop()
    if early.workers >= workers:
        return early
    terminate(early)
    return None


def end() -> None:
    """End the pool spawned early if no run adopted it."""
    while _early:
        terminate(_early.pop())


def terminate(pool: Pool) -> None:
    """End a pool's processes now, not waiting for them (one may still be importing JAX)."""
    executor = pool.executor
    stop_now = getattr(executor, "terminate_workers", None)  # Python 3.14
    if stop_now is not None:
        stop_now()
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())  # before 3.14: its own record
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)


# --- the worker side ---------------------------------------------------------------------------

#: This worker's event queue and stop flag (set by ``initialize``), and what
#: ``backends.processes`` keeps in it: the run's dataset, memory-mapped.
context: dict[str, Any] = {}


def initialize(events: Any, stop: Any) -> None:
    """Runs once in each new worker: the imports that take its start-up time (about a second of a
    core), without starting XLA: that waits for the run's first task, which says how many threads
    its programs have (``backends.processes``; importing ``dnnbench.optim`` as a task is unpickled
    would otherwise start it with the driver's ``--threads``)."""
    from dnnbench.train import threads  # no JAX

    threads.defer()
    # Ctrl-C reaches the whole process group: the driver alone handles it, and stops the workers
    # through ``stop`` at their next epoch, so what finished meanwhile is kept.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import flax.nnx  # noqa: F401
    import jax  # noqa: F401
    import optax  # noqa: F401

    # A worker that ends skips the garbage collector's last passes over JAX's objects (as the
    # ``dnnbench`` program does, ``cli.app.run``): 0.33 s of each pool's close measured, 0.01 s frozen.
    atexit.register(_freeze_objects)
    context.update(events=events, stop=stop)


def _freeze_objects() -> None:
    gc.disable()
    gc.freeze()
