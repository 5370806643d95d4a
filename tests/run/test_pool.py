"""The worker processes' pool: spawned before JAX only where allowed, adopted by the run that can
use it, ended (not waited for) otherwise; its workers start no XLA until a run gives them work."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.run import pool
from dnnbench.run.backends import processes
from dnnbench.train import engine, threads

#: Evaluated in a worker: whether its XLA client has started (a builtin, so that it pickles).
XLA_STARTED = "__import__('jax._src.xla_bridge', fromlist=['_']).backends_are_initialized()"


@pytest.fixture()
def early(monkeypatch):
    monkeypatch.setattr(pool, "EARLY", True)
    yield
    pool.end()


def _processes(executor) -> list:
    return list(executor._processes.values())  # the pool's own record (what pool.terminate ends)


def _ended(process, within: float = 30.0) -> bool:
    """Whether ``process`` ends within ``within`` seconds. Polled, not joined: the pool's own thread
    may reap the process first, and until that thread has recorded the exit code this thread's
    ``waitpid`` finds no child and ``join`` returns with ``exitcode`` still None (a CI failure)."""
    deadline = time.monotonic() + within
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.exitcode is not None


def test_nothing_is_spawned_early_unless_allowed(monkeypatch):
    monkeypatch.setattr(pool, "EARLY", False)
    pool.start_early(4)
    assert pool.adopt(3) is None


def test_a_pool_spawned_early_imports_jax_but_starts_no_xla(early):
    pool.start_early(3)  # the driver is one of the 3 workers: 2 processes
    spawned = pool.adopt(2)
    assert spawned is not None and spawned.workers == 2
    try:
        assert spawned.executor.submit(eval, XLA_STARTED).result() is False
        assert len({spawned.executor.submit(os.getpid).result() for _ in range(8)} - {os.getpid()}) >= 1
    finally:
        pool.terminate(spawned)


def test_a_worker_starts_no_xla_as_a_task_imports_dnnbench_until_told_its_threads(early):
    """``dnnbench.optim`` starts XLA as it is imported, and unpickling a run's task imports it: in a
    pool worker it waits (``threads.defer``) for the run's first task, which gives the programs'
    threads (``--threads auto`` may give them another number than the driver's)."""
    pool.start_early(2)
    spawned = pool.adopt(1)
    assert spawned is not None
    try:
        imported = "(__import__('dnnbench.optim'), " + XLA_STARTED + ")[1]"
        assert spawned.executor.submit(eval, imported).result() is False
        assert spawned.executor.submit(threads.start, 2).result() == min(2, threads.cores())
        assert spawned.executor.submit(threads.current).result() == min(2, threads.cores())
    finally:
        pool.terminate(spawned)


def test_a_pool_too_small_for_the_run_is_ended_and_an_unused_one_too(early):
    pool.start_early(2)  # one process
    [process] = _processes(pool._early[0].executor)
    assert pool.adopt(3) is None  # the run wants 3 worker processes: a new pool
    assert _ended(process)  # ended, not left importing
    pool.start_early(2)
    [process] = _processes(pool._early[0].executor)
    pool.end()
    assert _ended(process) and not pool._early


def test_a_run_adopts_the_pool_spawned_early_with_the_same_rows(early):
    ds = split(sources.load_synthetic(train=200, test=50, features=8, classes=3), 0.1)
    specs = tuple(
        TrialSpec(optimizer=o, model=ModelConfig(hidden=(16,)), train=TrainConfig(epochs=2, batch_size=20))
        for o in ("sgd", "momentum", "adam")
    )
    pool.start_early(2)
    spawned = pool._early[0]
    execution = processes.ProcessExecution([[s] for s in specs], ds, 2)
    try:
        assert execution.pool is spawned.executor and not pool._early
        outcomes = dict(execution.finished())
    finally:
        execution.stop()
        execution.close()
    assert sorted(outcomes) == [0, 1, 2]
    for g, spec in enumerate(specs):
        alone = engine.train_group([spec], ds)
        for name, values in alone.history.items():
            np.testing.assert_array_equal(outcomes[g].history[name], values)
