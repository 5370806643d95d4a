"""The local backend on processes: worker processes, each with its own XLA, and the driver itself.

Threads of one process share one XLA CPU client, hence one intra-op thread pool of ``--threads``
threads: with the default of one, every program's matmuls queue on that thread and the other cores
idle. Worker processes each start XLA with ``--threads`` threads (``dnnbench.train.threads``), so a
program's numbers are the ones it would get anywhere else with that many threads, and ``workers``
processes keep ``workers x threads`` cores busy.

- **The driver is one of the ``workers``** (``pool.DRIVER_TRAINS``) where its XLA runs the run's
  threads per program (always, but under ``--threads auto`` with a share of more than one): that
  XLA and its data are ready when the run begins, so one thread of it trains programs from the
  run's first second while the ``workers - 1`` worker processes start (spawned, each importing JAX:
  about a second of a core).
  Each process takes a program only once it has started, so no program waits in a process that is
  still importing while the driver could train it.
- The pool of worker processes is started once per run with the ``spawn`` method (forking a process
  that runs JAX can deadlock).
- The dataset is written once to shared memory (``/dev/shm`` where there is one) as ``.npy`` files
  that each worker memory-maps read-only: nothing is pickled per program.
- Programs are handed out longest first (trials x epochs x weights x samples) so that the last
  program to finish is a short one; where a worker would still idle beside the last programs, some
  programs' first steps train at the start of the run and their last ones, handed over as an
  ``engine.Progress``, at the end (``schedule.first_steps``; a split may fall inside an epoch): the
  same loop bodies, the same numbers.
- Workers compile their own executables and share them through the executable store: the
  persistent compile cache's, or, with that off, one in the run's data folder, so that what a
  worker needs after another built it (a program whose last epochs it trains) is loaded, not
  compiled again. They report each program's start and epochs on
  a queue that a driver thread turns into ``on_group`` / ``on_epoch`` calls, and stop at their
  next epoch once the run stops.
- A worker that dies (killed, out of memory) fails only the programs it was training: they become
  ``error`` rows; programs that had not started go to a fresh pool. Nothing waits forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dnnbench.config import TrialSpec
from dnnbench.data import Dataset
from dnnbench.run import pool, schedule
from dnnbench.run.backends.base import OnThisMachine, Outcome, Stopped, program_outcome
from dnnbench.train import engine
from dnnbench.train import threads as xla_threads

_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


class WorkerDied(RuntimeError):
    """The process training a program ended without an answer (killed, out of memory)."""


# --- the worker side -------------------------------------------------------------------------------


def _run_data(data: tuple[str, dict[str, Any], int | None]) -> Dataset:
    """In a worker: the run's dataset, memory-mapped from the files the driver wrote (not copied),
    and XLA started with the run's threads per program (the driver's ``--threads``, or what
    ``--threads auto`` gave the programs): both at the run's first task in this worker
    (``pool.initialize`` only imported JAX, and deferred XLA until now)."""
    data_dir, meta, threads = data
    xla_threads.start(threads)
    if pool.context.get("data_dir") != data_dir:
        engine.share_executables(Path(data_dir))  # with the compile cache off: the run's processes share them
        arrays = {name: np.load(Path(data_dir) / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
        pool.context.update(data_dir=data_dir, data=Dataset(**arrays, **meta))
    return pool.context["data"]


def _started(data: tuple[str, dict[str, Any], int | None]) -> int:
    """A worker's first task of a run: it returns once the worker has started (imported JAX,
    started XLA, mapped the data)."""
    _run_data(data)
    return os.getpid()


def _train_program(
    program: int,
    specs: list[TrialSpec],
    start: Any,
    until_step: int | None,
    data: tuple[str, dict[str, Any], int | None],
) -> Outcome:
    """Train one program in a worker (``_train``) on the run's ``data`` (the driver's files)."""
    return _train(program, specs, start, until_step, _run_data(data), pool.context["events"], pool.context["stop"])


def _train(
    program: int, specs: list[TrialSpec], start: Any, until_step: int | None, data: Dataset, events: Any, stop: Any
) -> Outcome:
    """Train one program, in a worker or the driver; its output (parameters as NumPy arrays) or the
    exception that failed it, with ``.report``. Bad input (``DnnbenchError``) is raised: it stops
    the run. Its start, epochs and end go to ``events``; it stops at its next epoch once ``stop``
    is set.

    ``start`` / ``until_step``: only some of its steps (``engine.train_part``); then an
    ``engine.Progress`` comes back unless the program ended."""
    import jax

    from dnnbench.run.backends.ray import _portable

    events.put(("start" if start is None else "resume", program, os.getpid()))

    def each_epoch(epoch: int, metrics: dict[str, np.ndarray]) -> None:
        if stop.is_set():
            raise Stopped
        events.put(("epoch", program, epoch, metrics))

    output: Outcome = None
    try:
        output = program_outcome(specs, data, each_epoch, start=start, until_step=until_step)
    finally:  # "end" once the program ended (its epochs shown before its row); "paused" after a part
        events.put(("paused" if isinstance(output, engine.Progress) else "end", program, os.getpid()))
    if isinstance(output, engine.Progress):
        return output
    if isinstance(output, Exception):
        return _portable(output)
    return dataclasses.replace(output, params=jax.device_get(output.params))


# --- the driver side -------------------------------------------------------------------------------


def _shared_dir() -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="dnnbench-data-", dir=base))


class _Direct(NamedTuple):
    """Where the driver's own training sends its events: straight to the execution (``put``), not
    through a queue whose write lock a worker process could die holding."""

    put: Callable[[tuple], None]


class _Task(NamedTuple):
    """A program (or, with ``start`` / ``until_step``, some of its steps) waiting for a worker; its
    outcome arrives on ``future`` wherever it trains."""

    program: int
    start: engine.Progress | None
    until_step: int | None
    future: Future


class ProcessExecution(OnThisMachine):
    """``backends.Execution`` on the driver and a pool of spawned worker processes.

    Each worker is a slot: a thread of the driver that takes the next queued task and trains it,
    in the driver (``pool.DRIVER_TRAINS``) or through the pool in its worker process; a process slot
    takes its first task once its worker has started. The queue, not the pool, decides the order.
    """

    def __init__(self, *args: Any, threads: int | None = None, **kwargs: Any) -> None:
        #: each program's XLA threads; the driver trains too only where its own XLA has as many
        self.threads = xla_threads.current() if threads is None else threads
        self.driver_trains = pool.DRIVER_TRAINS and self.threads == xla_threads.current()
        super().__init__(*args, **kwargs)

    def begin(self, data: Dataset, workers: int) -> None:
        self.workers = max(1, min(workers, len(self.programs)))
        self.data = data
        self.processes = self.workers - (1 if self.driver_trains else 0)  # worker processes
        # the pool spawned before JAX was imported (``pool.start_early``), else a new one; either way
        # its workers start XLA at their first task, with the programs' threads (``data_ref``)
        workers_pool = pool.adopt(self.processes) or pool.spawn(max(1, self.processes))
        self.events, self.stopping = workers_pool.events, workers_pool.stop
        self.data_dir = _shared_dir()
        try:
            for name in _ARRAYS:
                np.save(self.data_dir / f"{name}.npy", np.ascontiguousarray(getattr(data, name)))
        except BaseException:  # /dev/shm full, Ctrl-C: the run never began, so nothing of it stays
            shutil.rmtree(self.data_dir, ignore_errors=True)
            pool.terminate(workers_pool)
            raise
        engine.share_executables(self.data_dir)  # the workers too (``_run_data``): what one built, others load
        meta = {"name": data.name, "n_classes": data.n_classes, "image_shape": data.image_shape, "source": data.source}
        # what a worker maps the dataset from, and its XLA's threads
        self.data_ref = (str(self.data_dir), meta, self.threads)
        costs = [schedule.program_cost(specs, data) for specs in self.programs]
        epochs = [specs[0].train.epochs for specs in self.programs]
        steps = [schedule.steps_per_epoch(specs, data) for specs in self.programs]
        #: programs whose first steps train apart, and how many (their others follow in any worker)
        spawned_ago = time.monotonic() - workers_pool.spawned
        starts = schedule.worker_starts(self.workers, self.driver_trains, spawned_ago)
        self.first = schedule.first_steps(costs, epochs, steps, self.workers, starts)
        self.order = schedule.order(costs, self.first)  # those first, then longest first
        self.ended: set[int] = set()
        self.failure: BaseException | None = None
        self.ended_changed = threading.Condition(self.lock)
        # the queue of tasks and the slots that take them (``tasks`` guards both)
        self.tasks = threading.Condition()
        self.queue: deque[_Task] = deque()
        self.closing = False
        self.pool: ProcessPoolExecutor | None = None
        self.broken: ProcessPoolExecutor | None = None  # the pool that broke: its slots take no more tasks
        self.solo: ProcessPoolExecutor | None = None  # a pool of one, for a program run again alone
        self.slots: list[threading.Thread] = []
        self.pending: dict[Future, int] = {}
        #: each pool's event queue and the thread that reads it; the queues of pools that broke
        self.listeners: list[tuple[Any, threading.Thread]] = []
        self.poisoned: set[int] = set()
        self.events_of: dict[ProcessPoolExecutor, Any] = {workers_pool.executor: self.events}
        self._listen_to(self.events)
        for g in self.order:
            self._enqueue(g, None, self.first.get(g))
        if self.driver_trains:
            self._add_slot(self._driver_slot, "driver")
        if self.processes >= 1:
            self._start_slots(workers_pool.executor)
        else:
            pool.terminate(workers_pool)

    # the queue and the slots ------------------------------------------------------------------

    def _enqueue(self, g: int, start: engine.Progress | None, until_step: int | None) -> None:
        future: Future = Future()
        self.pending[future] = g
        with self.tasks:
            self.queue.append(_Task(g, start, until_step, future))
            self.tasks.notify()

    def _next_task(self, executor: ProcessPoolExecutor | None = None) -> _Task | None:
        """The next queued task for a slot (waits for one); None once the run stops or closes, or
        for a process slot whose pool broke or was replaced."""
        with self.tasks:
            while True:
                if self.stopping.is_set() or self.closing:
                    return None
                if executor is not None and (executor is not self.pool or executor is self.broken):
                    return None
                while self.queue:
                    task = self.queue.popleft()
                    if task.future.set_running_or_notify_cancel():
                        return task
                self.tasks.wait()

    def _add_slot(self, target: Any, name: str, *args: Any) -> None:
        slot = threading.Thread(target=target, args=args, name=f"dnnbench-{name}", daemon=True)
        slot.start()
        self.slots.append(slot)

    def _driver_slot(self) -> None:
        here = _Direct(self._dispatch)  # the driver's events go straight to the callbacks
        while (task := self._next_task()) is not None:
            specs = self.programs[task.program]
            try:
                task.future.set_result(
                    _train(task.program, specs, task.start, task.until_step, self.data, here, self.stopping)
                )
            except BaseException as exc:  # noqa: BLE001 -- Stopped, bad input: the driver's finished() raises it
                task.future.set_exception(exc)

    def _process_slot(self, executor: ProcessPoolExecutor) -> None:
        try:
            executor.submit(_started, self.data_ref).result()  # its worker has started
            started = True
        except BaseException:  # noqa: BLE001 -- it died starting (or the run ended first): see below
            started = False
        while (task := self._next_task(executor)) is not None:
            try:
                if not started:
                    raise BrokenProcessPool("a worker process died as it started")
                specs = self.programs[task.program]
                trained = executor.submit(
                    _train_program, task.program, specs, task.start, task.until_step, self.data_ref
                )
                task.future.set_result(trained.result())
            except BaseException as exc:  # noqa: BLE001 -- handed to the driver's finished()
                if isinstance(exc, BrokenProcessPool):
                    with self.tasks:
                        self.broken = executor
                    self._broke(executor)
                task.future.set_exception(exc)

    def _start_slots(self, executor: ProcessPoolExecutor) -> None:
        """Make ``executor`` the run's pool, with a slot for each worker process (the slots of the
        pool it replaces end)."""
        with self.tasks:
            old, self.pool = self.pool, executor
            self.tasks.notify_all()
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        for _ in range(self.processes):
            self._add_slot(self._process_slot, "worker", executor)

    def _spawn(self, workers: int) -> ProcessPoolExecutor:
        """A new pool for this run, after a worker died: its workers stop with the run, and report
        on a queue of their own, since the dead worker may have died holding the old queue's write
        lock (a process killed while it sends an event), which would block every other writer."""
        spawned = pool.spawn(workers, None, self.stopping)
        self.events_of[spawned.executor] = spawned.events
        self._listen_to(spawned.events)
        return spawned.executor

    def _broke(self, executor: ProcessPoolExecutor) -> None:
        """``executor`` broke (a worker died): its queue is never written to, nor waited for, again."""
        events = self.events_of.get(executor)
        if events is not None:
            self.poisoned.add(id(events))

    def _resume(self, g: int, progress: engine.Progress) -> None:
        """Queue program ``g``'s last steps behind everything else (any worker takes them)."""
        self._enqueue(g, progress, None)

    # progress ---------------------------------------------------------------------------------

    def _listen_to(self, events: Any) -> None:
        listener = threading.Thread(target=self._listen, args=(events,), name="dnnbench-events", daemon=True)
        listener.start()
        self.listeners.append((events, listener))

    def _listen(self, events: Any) -> None:
        """Turn a pool's events into ``on_group`` / ``on_epoch`` calls (``_dispatch``)."""
        while True:
            item = events.get()
            if item is None:
                return
            self._dispatch(item)

    def _dispatch(self, item: tuple) -> None:
        """One event, from a pool's queue or from the driver's own training (which calls this
        directly, never through a queue a worker shares), turned into a callback, one at a time."""
        kind, g = item[0], item[1]
        with self.lock:
            try:
                self._handle(kind, g, item)
            except BaseException as exc:  # noqa: BLE001 -- e.g. Ctrl-C in a callback: the driver raises it
                self.failure = self.failure or exc
            finally:
                if kind == "end":
                    self.ended.add(g)
                    self.ended_changed.notify_all()

    def _handle(self, kind: str, g: int, item: tuple) -> None:
        if kind == "start" and self.on_group is not None:
            self.on_group(g, len(self.programs), self.programs[g])
        elif kind == "epoch" and self.on_epoch is not None:
            self.on_epoch(g, item[2], item[3])

    def _await_end(self, g: int) -> None:
        """Wait (briefly) until the listener has shown what the worker sent before program ``g``'s
        outcome came back, so its epochs are shown before its row."""
        with self.ended_changed:
            self.ended_changed.wait_for(lambda: g in self.ended, timeout=5)

    # Execution --------------------------------------------------------------------------------

    def finished(self) -> Iterator[tuple[int, Outcome]]:
        while self.pending:
            done, _ = wait(list(self.pending), timeout=0.25, return_when=FIRST_COMPLETED)
            if self.failure is not None:  # a progress callback failed (or was interrupted): so does the run
                raise self.failure
            broken: list[int] = []
            for future in done:
                g = self.pending.pop(future)
                try:
                    outcome = future.result()  # a DnnbenchError (bad input) stops the run
                except BrokenProcessPool:
                    broken.append(g)
                    continue
                if isinstance(outcome, engine.Progress):  # its first epochs: the rest at the end
                    if not self.stopping.is_set():
                        self._resume(g, outcome)
                    continue
                self._await_end(g)
                self.yielded.add(g)
                yield g, outcome
            if broken:
                yield from self._recover(broken)

    def _recover(self, broken: list[int]) -> Iterator[tuple[int, Outcome]]:
        """A worker died, and with it the pool. Which program killed it is not known (the pool ends
        every worker), so the programs that were in the pool run again, whole, one at a time, each in
        a pool of its own: the one that dies again becomes ``error`` rows, the others their rows.
        The queued programs go on in the driver and in a fresh pool."""
        for g in sorted(broken):
            if self.stopping.is_set():
                return
            self.solo = self._spawn(1)
            try:
                outcome = self.solo.submit(_train_program, g, self.programs[g], None, None, self.data_ref).result()
            except BrokenProcessPool:
                self._broke(self.solo)
                outcome = WorkerDied(
                    "the worker process training this program died (killed, or out of memory); it died again "
                    "when run alone"
                )
                outcome.report = "worker process died twice"  # type: ignore[attr-defined]
            else:
                self._await_end(g)
            finally:
                self.solo.shutdown(wait=True)
                self.solo = None
            self.yielded.add(g)
            yield g, outcome
        if self.processes >= 1:
            self._start_slots(self._spawn(self.processes))

    def stop(self) -> dict[int, Outcome]:
        self.stopping.set()  # running programs stop at their next epoch
        with self.tasks:
            queued = list(self.queue)
            self.queue.clear()
            self.tasks.notify_all()
        for task in queued:  # cancelled, and waiters told (what an executor does with a future it drops)
            if task.future.cancel():
                task.future.set_running_or_notify_cancel()
        kept: dict[int, Outcome] = {}
        if self.pending:
            wait(list(self.pending), timeout=60)
        for future, g in self.pending.items():
            if future.done() and not future.cancelled() and g not in self.yielded:
                with contextlib.suppress(BaseException):
                    outcome = future.result()
                    if not isinstance(outcome, engine.Progress):  # part-trained: no rows (resume trains it again)
                        kept[g] = outcome
        self.pending.clear()
        return kept

    def close(self) -> None:
        with self.tasks:
            self.closing = True
            self.tasks.notify_all()
        for executor in (self.pool, self.solo):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        self.pool = self.solo = None
        for slot in self.slots:
            slot.join()
        for events, listener in self.listeners:
            if id(events) in self.poisoned:  # its listener waits on it for ever (a daemon thread)
                continue
            events.cancel_join_thread()  # whatever happens to this sentinel, never wait for it at exit
            events.put(None)
            listener.join(timeout=5)
        engine.share_executables(None)
        shutil.rmtree(self.data_dir, ignore_errors=True)
