"""The local backend on worker processes: the numbers of the in-process path, every program's
progress, a dead worker as an error row (never a hang), and Ctrl-C keeping what finished."""

from __future__ import annotations

import dataclasses
import errno
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.run import backends, pool, runner, schedule
from dnnbench.run.backends import processes
from dnnbench.train import engine

TRAIN = TrainConfig(epochs=2, batch_size=20)
POOL, THREADS = backends.Settings("processes"), backends.Settings("threads")


@pytest.fixture(scope="module")
def ds():
    return split(sources.load_synthetic(train=200, test=50, features=8, classes=3), 0.1)


@pytest.fixture()
def started(monkeypatch) -> dict[int, int]:
    """The pid of the process each program started in (from the workers' "start" events)."""
    pids: dict[int, int] = {}
    handle = processes.ProcessExecution._handle
    monkeypatch.setattr(
        processes.ProcessExecution,
        "_handle",
        lambda self, kind, g, item: (
            pids.setdefault(g, item[2]) if kind == "start" else None,
            handle(self, kind, g, item),
        ),
    )
    return pids


def comparison(optimizers=("sgd", "momentum", "adagrad", "adam"), seeds=(0, 1)) -> tuple[TrialSpec, ...]:
    return tuple(
        TrialSpec(optimizer=o, seed=s, model=ModelConfig(hidden=(16,)), train=TRAIN) for o in optimizers for s in seeds
    )


def _same_rows(a, b) -> None:
    assert [r.id for r in a] == [r.id for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.status == y.status
        assert x.metrics == y.metrics  # bit for bit: the same executables on the same XLA threads
        for name in x.history:
            np.testing.assert_array_equal(np.asarray(x.history[name]), np.asarray(y.history[name]))


def test_worker_processes_give_the_in_process_rows_bit_for_bit(ds):
    specs = comparison()
    in_process = runner.execute(runner.Run(specs, workers=2, backend=THREADS), ds)
    pooled = runner.execute(runner.Run(specs, workers=2, backend=POOL), ds)
    _same_rows(pooled, in_process)
    assert all(r.status == "ok" for r in pooled)


def test_every_program_reports_its_start_and_each_epoch_in_order(ds):
    specs = comparison(seeds=(0,))
    started, epochs = [], {}
    runner.execute(
        runner.Run(specs, workers=2, backend=POOL),
        ds,
        on_group=lambda g, n, members: started.append((g, n, [s.optimizer for s in members])),
        on_epoch=lambda g, epoch, metrics: epochs.setdefault(g, []).append(epoch),
    )
    assert sorted(g for g, _, _ in started) == [0, 1, 2, 3]
    assert {n for _, n, _ in started} == {4}
    assert epochs == {g: [0, 1] for g in range(4)}


def test_programs_are_handed_out_longest_first(ds):
    short = TrialSpec(optimizer="sgd", model=ModelConfig(hidden=(8,)), train=TRAIN)
    long = dataclasses.replace(short, model=ModelConfig(hidden=(64, 64)))
    costs = [schedule.program_cost([s], ds) for s in (short, long)]
    assert costs[1] > costs[0]


def test_a_program_split_between_two_workers_gives_the_same_rows_and_progress_once(ds, monkeypatch):
    """Three equal programs of three epochs on two workers: one trains its first steps at the
    start and its last at the end, in whichever worker is free (an ``engine.Progress`` between,
    here inside its second epoch). Programs this small are split only when handing over is free
    (here by hand: it costs about a second, more than they train)."""
    specs = tuple(
        dataclasses.replace(s, train=TrainConfig(epochs=3, batch_size=20))
        for s in comparison(("sgd", "momentum", "adam"), seeds=(0,))
    )
    costs = [schedule.program_cost([s], ds) for s in specs]
    steps = [schedule.steps_per_epoch([s], ds) for s in specs]
    assert steps == [len(ds.y_train) // 20] * 3
    assert schedule.first_steps(costs, [3, 3, 3], steps, 2) == {}  # handing over would cost more than it saves
    monkeypatch.setattr(schedule, "RESUME_FLOP", 0.0)
    monkeypatch.setattr(schedule, "WORKER_START_SECONDS", 0.0)  # the driver's head start: none here
    (split,) = schedule.first_steps(costs, [3, 3, 3], steps, 2).values()  # the plan splits one
    assert abs(split - 3 * steps[0] / 2) <= 1 and split % steps[0]  # half its steps: inside an epoch
    handed_over = []
    resume = processes.ProcessExecution._resume
    monkeypatch.setattr(
        processes.ProcessExecution,
        "_resume",
        lambda self, g, progress: (handed_over.append(progress), resume(self, g, progress)),
    )
    started, epochs = [], {}
    pooled = runner.execute(
        runner.Run(specs, workers=2, backend=POOL),
        ds,
        on_group=lambda g, n, members: started.append(g),
        on_epoch=lambda g, epoch, metrics: epochs.setdefault(g, []).append(epoch),
    )
    assert sorted(started) == [0, 1, 2]  # each program's start once, the split one's too
    assert epochs == {g: [0, 1, 2] for g in range(3)}
    # one program's first half came back, part-way through its second epoch
    assert [(p.epochs_done, p.steps_into_epoch) for p in handed_over] == [divmod(split, steps[0])]
    _same_rows(pooled, runner.execute(runner.Run(specs, workers=2, backend=THREADS), ds))
    assert [r.status for r in pooled] == ["ok"] * 3


def test_with_the_cache_off_the_runs_processes_share_executables_in_its_folder(ds, monkeypatch):
    """The run's data folder holds the executables its processes built (each compiled once per run
    where another process finds it), and goes with them; the driver shares nothing afterwards."""
    monkeypatch.setenv(engine.COMPILE_CACHE_ENV, "off")
    monkeypatch.setattr(engine, "_EXECUTABLES", {})  # the driver builds as a new process would
    removed: dict[Path, list[str]] = {}
    remove = processes.shutil.rmtree

    def rmtree(path, **kwargs):
        removed[Path(path)] = sorted(p.suffix for p in Path(path).glob("executables/*"))
        remove(path, **kwargs)

    monkeypatch.setattr(processes.shutil, "rmtree", rmtree)
    pooled = runner.execute(runner.Run(comparison(("sgd", "adam"), seeds=(0,)), workers=2, backend=POOL), ds)
    assert [r.status for r in pooled] == ["ok", "ok"]
    assert list(removed.values()) == [[".bin"] * 5]  # the weight init, each program's optimizer init and epoch
    assert not any(folder.exists() for folder in removed)
    assert engine._RUN_STORE is None


def test_a_run_whose_data_cannot_be_written_leaves_nothing_behind(ds, tmp_path, monkeypatch):
    """/dev/shm full: the error reaches the caller (the CLI's one line), with no folder, no pool and
    no shared executables left of the run."""
    monkeypatch.setattr(processes, "_shared_dir", lambda: Path(tempfile.mkdtemp(dir=tmp_path)))
    written = []

    def save(path, array):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path)
        with open(path, "wb") as f:
            np.lib.format.write_array(f, array)

    monkeypatch.setattr(processes.np, "save", save)
    terminated = []
    terminate = pool.terminate
    monkeypatch.setattr(pool, "terminate", lambda p: (terminated.append(p), terminate(p)))
    with pytest.raises(OSError, match="No space left"):
        runner.execute(runner.Run(comparison(seeds=(0,)), workers=2, backend=POOL), ds)
    assert len(written) == 1
    assert list(tmp_path.iterdir()) == []
    assert len(terminated) == 1
    assert engine._RUN_STORE is None


WAITS_IN_THE_DRIVER = """
import multiprocessing, threading, time
from pathlib import Path
import optax

FLAG = Path(__file__).with_suffix(".started")

def make(learning_rate=0.1):
    if threading.current_thread().name == "dnnbench-driver":  # the driver's worker, building its program
        deadline = time.monotonic() + 120
        while not FLAG.exists() and time.monotonic() < deadline:  # until a worker process has one
            time.sleep(0.05)
    elif multiprocessing.current_process().name != "MainProcess":
        FLAG.touch()
    return optax.sgd(learning_rate)
"""


def test_the_driver_trains_beside_the_worker_processes(ds, tmp_path, started):
    """With two workers the driver is one of them: it takes the first program at once, and the
    worker process, once started, the other (here the driver waits for it, so that both train).
    The rows are those of the threads, bit for bit."""
    path = tmp_path / "waits.py"
    path.write_text(WAITS_IN_THE_DRIVER)
    specs = tuple(
        TrialSpec(optimizer=f"{path}:make", seed=seed, model=ModelConfig(hidden=(16,)), train=TRAIN) for seed in (0, 1)
    )
    programs = [[specs[0]], [specs[1]]]
    execution = processes.ProcessExecution(programs, ds, 2)
    try:
        outcomes = dict(execution.finished())
    finally:
        execution.stop()
        execution.close()
    assert sorted(outcomes) == [0, 1]
    assert os.getpid() in started.values()  # the driver trained one
    assert len(set(started.values())) == 2  # and a worker process the other
    assert all(isinstance(o, engine.GroupOutput) for o in outcomes.values())
    path.with_suffix(".started").unlink()
    _same_rows(
        runner.execute(runner.Run(specs, workers=2, backend=POOL), ds),
        runner.execute(runner.Run(specs, workers=2, backend=THREADS), ds),
    )


DIES_IN_A_WORKER = """
import multiprocessing, os, signal
import optax

def make(learning_rate=0.1, *, die=False):
    if die and multiprocessing.current_process().name != "MainProcess":
        os.kill(os.getpid(), signal.SIGKILL)  # a worker killed while it builds this program
    return optax.sgd(learning_rate)
"""


def test_a_dead_worker_fails_only_its_program_and_the_run_goes_on(ds, tmp_path, monkeypatch):
    monkeypatch.setattr(pool, "DRIVER_TRAINS", False)  # the killer must land in a worker process
    path = tmp_path / "killer.py"
    path.write_text(DIES_IN_A_WORKER)
    good = comparison(("sgd", "adam"), seeds=(0,))
    killer = TrialSpec(
        optimizer=f"{path}:make", hyperparams=(("die", True),), model=ModelConfig(hidden=(16,)), train=TRAIN
    )
    rows = runner.execute(runner.Run((*good, killer), workers=2, backend=POOL), ds)
    assert [r.status for r in rows] == ["ok", "ok", "error"]
    assert "worker process" in rows[2].extra["error"]
    _same_rows(rows[:2], runner.execute(runner.Run(good, workers=2, backend=THREADS), ds))


DIES_HOLDING_THE_EVENTS_LOCK = """
import multiprocessing, os, signal
import optax

def make(learning_rate=0.1, *, die=False):
    if die and multiprocessing.current_process().name != "MainProcess":
        from dnnbench.run import pool
        pool.context["events"]._wlock.acquire()  # as if killed while it sends an event
        os.kill(os.getpid(), signal.SIGKILL)
    return optax.sgd(learning_rate)
"""


def test_a_worker_that_dies_holding_its_queues_lock_does_not_hang_the_run(ds, tmp_path, monkeypatch):
    """The pools that retry its programs report on queues of their own: the old one's write lock is
    never released (it hung the run: the retried programs' workers could not send, nor exit)."""
    monkeypatch.setattr(pool, "DRIVER_TRAINS", False)
    path = tmp_path / "killer.py"
    path.write_text(DIES_HOLDING_THE_EVENTS_LOCK)
    good = comparison(("sgd", "adam"), seeds=(0,))
    killer = TrialSpec(
        optimizer=f"{path}:make", hyperparams=(("die", True),), model=ModelConfig(hidden=(16,)), train=TRAIN
    )
    rows: list = []
    run = threading.Thread(
        target=lambda: rows.extend(runner.execute(runner.Run((*good, killer), workers=2, backend=POOL), ds)),
        daemon=True,
    )
    run.start()
    run.join(timeout=300)  # a hang fails here instead of holding up the suite
    assert not run.is_alive()
    assert [r.status for r in rows] == ["ok", "ok", "error"]
    _same_rows(rows[:2], runner.execute(runner.Run(good, workers=2, backend=THREADS), ds))


def test_ctrl_c_stops_the_workers_and_keeps_what_finished(ds):
    specs = comparison(seeds=(0,))
    kept = []

    def interrupt(g, epoch, metrics):
        if len(kept) >= 1 and epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.execute(runner.Run(specs, workers=1 + 1, backend=POOL), ds, on_result=kept.append, on_epoch=interrupt)
    assert 1 <= len(kept) < len(specs)
    # in group order; a group that finished while an earlier one was still training is kept too
    # (the runner keeps every finished group, so --resume trains only what is missing)
    positions = [specs.index(r.spec) for r in kept]
    assert positions == sorted(set(positions)) and positions[0] == 0


def test_the_default_backend_pools_processes_for_many_programs_and_threads_for_a_few(ds):
    from dnnbench.run.backends import local

    specs = comparison(optimizers=("sgd",), seeds=(0,))
    many, few = [specs] * (schedule.PROCESSES_FROM * 2 + 1), [specs] * (schedule.PROCESSES_FROM * 2)
    for programs, kind in ((many, processes.ProcessExecution), (few, local.LocalExecution)):
        execution = backends.start(backends.Settings(), programs, ds, workers=2)
        try:
            assert type(execution) is kind
        finally:
            execution.stop()
            execution.close()
    # one worker has nothing to share: threads whatever the count
    execution = backends.start(backends.Settings(), many, ds, workers=1)
    try:
        assert type(execution) is local.LocalExecution
    finally:
        execution.stop()
        execution.close()


def test_programs_with_other_threads_than_the_driver_train_in_worker_processes_only(ds, started):
    """``--threads auto`` can give a run's programs another thread count than the driver's XLA runs:
    the driver then trains none of them, and every worker process starts XLA with theirs."""
    from dnnbench.train import threads

    theirs = (threads.current() or 1) + 1
    execution = processes.ProcessExecution([[s] for s in comparison(seeds=(0,))[:3]], ds, 2, threads=theirs)
    try:
        outcomes = dict(execution.finished())
        assert execution.pool is not None
        assert execution.pool.submit(threads.current).result() == min(theirs, threads.cores())
    finally:
        execution.stop()
        execution.close()
    assert sorted(outcomes) == [0, 1, 2] and all(isinstance(o, engine.GroupOutput) for o in outcomes.values())
    assert os.getpid() not in started.values() and len(set(started.values())) == 2  # two worker processes
