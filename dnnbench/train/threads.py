"""XLA's CPU threads: a fixed number per process, so that numbers do not depend on the machine.

XLA's CPU client sizes its thread pools to the cores the process may use when the client starts,
and some of its kernels split a reduction by that pool (measured with jaxlib 0.10.2: the bias
gradients of the reference MLP differ in the last bits between 1 and 2 threads; over 20 epochs
such bits can reach the third decimal). A baseline made on an 8-core laptop and checked on a
2-core CI runner, or a program trained on a Ray node of another size, would then disagree.

So every dnnbench process starts XLA with ``threads`` (``--threads``, ``$DNNBENCH_THREADS``,
default ``DEFAULT``) cores allowed, then allows every thread all cores again: a pool of that many
threads that the OS places freely. Runs with the same ``threads`` on the same kind of CPU give the
same numbers on any machine and backend; parallelism comes from programs training at once
(``--workers``, Ray tasks). More threads speed up a run of a single large program.

``--threads auto`` gives each program of a run cores / programs threads (at least one): all of
them to a run of one program, one each where there are as many programs as cores. The numbers are
then those of any run with that many threads, which the header records, so they depend on the
machine's cores; the default stays 1. The driver's own XLA keeps ``DEFAULT``: where the share is
one thread it trains as usual, else worker processes train the programs
(``run.backends.program_threads``). A worker process of the pool defers its XLA (``defer``) until
a run's first task tells it the programs' threads (``start``).

Linux only (``sched_setaffinity``); elsewhere XLA keeps its own pool size, and headers say
``threads: null``. Started by importing ``dnnbench.optim`` (every path that trains imports it
before JAX computes anything); once JAX has started, the size is fixed for the process.
"""

from __future__ import annotations

import contextlib
import os

from dnnbench.errors import InputError

DEFAULT = 1
ENV = "DNNBENCH_THREADS"
AUTO = "auto"  # cores / programs per program, decided once a run's plan is known
_started: list[int | None] = []  # [threads] once this process started XLA (None: not sized by us)
_deferred: list[bool] = []  # [True] in a pool worker until a run tells it its threads (``start``)


def requested() -> int:
    """``$DNNBENCH_THREADS``, else ``DEFAULT``; with ``auto``, ``DEFAULT`` (this process's own XLA:
    each program's share is decided with the plan)."""
    text = os.environ.get(ENV, "").strip()
    if not text or text.lower() == AUTO:
        return DEFAULT
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"${ENV} must be a positive integer or {AUTO}, got {text!r}") from None
    return check(value)


def is_auto() -> bool:
    """Whether ``--threads auto`` (or ``$DNNBENCH_THREADS=auto``) was asked for."""
    return os.environ.get(ENV, "").strip().lower() == AUTO


def for_programs(programs: int) -> int:
    """``--threads auto``'s threads per program for a run of ``programs`` programs: the cores
    shared out, at least one each."""
    return max(1, cores() // max(1, programs))


def check(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"threads must be a positive integer or {AUTO}, got {value!r}")
    return value


def parse(text: str | int) -> int | str:
    """``--threads``' value: a positive integer, or ``auto``."""
    if isinstance(text, str) and text.strip().lower() == AUTO:
        return AUTO
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise InputError(f"--threads must be a positive integer or {AUTO}, got {text!r}") from None
    if value < 1:
        raise InputError(f"--threads must be a positive integer or {AUTO}, got {value}")
    return value


def defer() -> None:
    """In a worker process spawned before its run's plan (``run.pool``): start no XLA (``ensure``
    does nothing) until ``start`` gives the threads of the programs it will train."""
    _deferred.append(True)


def start(threads: int | None) -> int | None:
    """In a worker process: start XLA with ``threads`` (None: ``requested()``), once; the threads
    it has. An error if it already runs another number (a worker serves one run's programs)."""
    if threads is not None and not _started:
        os.environ[ENV] = str(threads)
    _deferred.clear()
    have = ensure()
    if threads is not None and have is not None and have != min(threads, cores()):
        raise RuntimeError(f"this worker's XLA runs {have} threads, its run's programs {threads}")
    return have


def ensure() -> int | None:
    """Start XLA with ``requested()`` threads unless it started already (or waits for ``start``);
    the threads it has (None: JAX was started before dnnbench could size it, or the OS cannot pin,
    or not yet)."""
    if _started:
        return _started[0]
    if _deferred:
        return None
    threads = requested()
    import jax
    from jax._src import xla_bridge  # no public "has JAX started?" (jax.extend.backend has none)

    if xla_bridge.backends_are_initialized() or not hasattr(os, "sched_setaffinity"):
        _started.append(None)
        return None
    # Programs train at once from threads of this process (the local backend). With async dispatch,
    # XLA queues a CPU device's executions on one runner, so they take turns; executed by their
    # calling threads (XLA releases the GIL) they run together (figures: docs/performance.md). Our
    # epochs are one call each, so there is nothing for async dispatch to run ahead of.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[:threads] if threads < len(allowed) else allowed)
    try:
        jax.devices()  # the client and its pools start now, sized to the cores allowed
    finally:
        for thread in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(thread), allowed)
    _started.append(min(threads, len(allowed)))  # a pool is at most as large as the cores
    return _started[0]


def cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use(threads: int | str | None) -> None:
    """Ask for ``threads`` (``--threads``: a number or ``auto``) in this process, before XLA starts;
    an error once it started with another number."""
    if threads is None:
        return
    threads = parse(threads) if isinstance(threads, str) else check(threads)
    if threads == AUTO:  # each program's threads are decided with the plan: any XLA here will do
        os.environ[ENV] = AUTO
        return
    # what ensure() would have made of it: a pool is at most as large as the cores
    if _started and _started[0] is not None and _started[0] != min(threads, len(os.sched_getaffinity(0))):
        raise InputError(
            f"XLA already runs with {_started[0]} threads in this process; --threads {threads} needs a new process"
        )
    os.environ[ENV] = str(threads)


def current() -> int | None:
    """The threads XLA runs with in this process (starting it if needed)."""
    return ensure()
