"""The local backend on processes: worker processes, each with its own XLA, and the driver itself.

Threads of one process share one XLA CPU client, hence one intra-op thread pool of ``--threads``
threads: with the default of one, every program's matmuls queue on that thread and the other cores
idle. Worker processes each start XLA with ``--threads`` threads (``dnnbench.train.threads``), so a
program's numbers are the ones it would get anywhere else with that many threads, and ``workers``
processes keep ``workers x threads`` cores busy.

- **The driver is one of the ``workers``** (``TRAIN_IN_DRIVER``): its XLA, started with the same
  ``--threads``, and its data are ready when the run begins, so one thread of it trains programs from
  the run's first second while the ``workers - 1`` worker processes start (spawned, each importing
  JAX: about a second of a core). Each process takes a program only once it has started, so no
  program waits in a process that is still importing while the driver could train it.
- The pool of worker processes is started once per run with the ``spawn`` method (forking a process
  that runs JAX can deadlock).
- The dataset is written once to shared memory (``/dev/shm`` where there is one) as ``.npy`` files
  that each worker memory-maps read-only: nothing is pickled per program.
- Programs are handed out longest first (trials x epochs x weights x samples) so that the last
  program to finish is a short one; where a worker would still idle beside the last programs, some
  programs' first epochs train at the start of the run and their last ones, handed over as an
  ``engine.Progress``, at the end (``schedule.first_epochs``): the same calls, the same numbers.
- Workers compile their own executables (the persistent compile cache, when on, is shared through
  the environment), report each program's start and epochs on a queue that a driver thread turns
  into ``on_group`` / ``on_epoch`` calls, and stop at their next epoch once the run stops.
- A worker that dies (killed, out of memory) fails only the programs it was training: they become
  ``error`` rows; programs that had not started go to a fresh pool. Nothing waits forever.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import gc
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dnnbench.config import TrialSpec
from dnnbench.data import Dataset
from dnnbench.run import schedule
from dnnbench.run.backends.base import OnThisMachine, Outcome, Stopped, program_outcome
from dnnbench.train import engine

_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")

#: Whether the driver trains programs too, as one of the run's workers (see the module's docstring).
#: The tests of a dying worker turn it off, so that their program cannot land in the driver.
TRAIN_IN_DRIVER = True


class WorkerDied(RuntimeError):
    """The process training a program ended without an answer (killed, out of memory)."""


# --- the worker side -------------------------------------------------------------------------------

_worker: dict[str, Any] = {}  # this worker's dataset, event queue and stop flag (set by _init_worker)


def _init_worker(data_dir: str, meta: dict[str, Any], events: Any, stop: Any) -> None:
    """Runs once in each new worker: XLA starts here with the driver's ``--threads`` (inherited
    through ``$DNNBENCH_THREADS``), and the dataset is memory-mapped, not copied."""
    from dnnbench import optim  # noqa: F401 -- starts XLA sized by dnnbench.train.threads

    # Ctrl-C reaches the whole process group: the driver alone handles it, and stops the workers
    # through ``stop`` at their next epoch, so what finished meanwhile is kept.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker that ends skips the garbage collector's last passes over JAX's objects (as the
    # ``dnnbench`` program does, ``cli.app.run``): 0.33 s of every run's end measured, 0.01 s frozen.
    atexit.register(_freeze_objects)

    arrays = {name: np.load(Path(data_dir) / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    _worker.update(data=Dataset(**arrays, **meta), events=events, stop=stop)


def _freeze_objects() -> None:
    gc.disable()
    gc.freeze()


def _started() -> int:
    """A worker's first task: it returns once the worker has started (``_init_worker`` ran)."""
    return os.getpid()


def _train_program(
    program: int,
    specs: list[TrialSpec],
    start: Any = None,
    until: int | None = None,
    context: dict[str, Any] | None = None,
) -> Outcome:
    """Train one program in a worker (or, with ``context``, in the driver); its output (parameters
    as NumPy arrays) or the exception that failed it, with ``.report``. Bad input
    (``DnnbenchError``) is raised: it stops the run.

    ``start`` / ``until``: only some of its epochs (``engine.train_part``); then an
    ``engine.Progress`` comes back unless the program ended."""
    import jax

    from dnnbench.run.backends.ray import _portable

    context = _worker if context is None else context
    events, stop = context["events"], context["stop"]
    events.put(("start" if start is None else "resume", program, os.getpid()))

    def each_epoch(epoch: int, metrics: dict[str, np.ndarray]) -> None:
        if stop.is_set():
            raise Stopped
        events.put(("epoch", program, epoch, metrics))

    output: Outcome = None
    try:
        output = program_outcome(specs, context["data"], each_epoch, start=start, until=until)
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


class _Task(NamedTuple):
    """A program (or, with ``start`` / ``until``, some of its epochs) waiting for a worker; its
    outcome arrives on ``future`` wherever it trains."""

    program: int
    start: engine.Progress | None
    until: int | None
    future: Future


class ProcessExecution(OnThisMachine):
    """``backends.Execution`` on the driver and a pool of spawned worker processes.

    Each worker is a slot: a thread of the driver that takes the next queued task and trains it,
    in the driver (``TRAIN_IN_DRIVER``) or through the pool in its worker process; a process slot
    takes its first task once its worker has started. The queue, not the pool, decides the order.
    """

    def begin(self, data: Dataset, workers: int) -> None:
        self.workers = max(1, min(workers, len(self.programs)))
        self.data = data
        self.context = multiprocessing.get_context("spawn")
        self.events = self.context.Queue()
        self.stopping = self.context.Event()
        self.data_dir = _shared_dir()
        for name in _ARRAYS:
            np.save(self.data_dir / f"{name}.npy", np.ascontiguousarray(getattr(data, name)))
        self.meta = {"name": data.name, "n_classes": data.n_classes, "image_shape": data.image_shape}
        self.meta["source"] = data.source
        costs = [schedule.program_cost(specs, data) for specs in self.programs]
        epochs = [specs[0].train.epochs for specs in self.programs]
        #: programs whose first epochs train apart, and how many (their others follow in any worker)
        starts = schedule.worker_starts(self.workers, TRAIN_IN_DRIVER)
        self.first = schedule.first_epochs(costs, epochs, self.workers, starts)
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
        self.listener = threading.Thread(target=self._listen, name="dnnbench-events", daemon=True)
        self.listener.start()
        for g in self.order:
            self._enqueue(g, None, self.first.get(g))
        if TRAIN_IN_DRIVER:
            self._add_slot(self._driver_slot, "driver")
        self._start_pool()

    # the queue and the slots ------------------------------------------------------------------

    def _enqueue(self, g: int, start: engine.Progress | None, until: int | None) -> None:
        future: Future = Future()
        self.pending[future] = g
        with self.tasks:
            self.queue.append(_Task(g, start, until, future))
            self.tasks.notify()

    def _next_task(self, pool: ProcessPoolExecutor | None = None) -> _Task | None:
        """The next queued task for a slot (waits for one); None once the run stops or closes, or
        for a process slot whose pool broke or was replaced."""
        with self.tasks:
            while True:
                if self.stopping.is_set() or self.closing:
                    return None
                if pool is not None and (pool is not self.pool or pool is self.broken):
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
        context = {"data": self.data, "events": self.events, "stop": self.stopping}
        while (task := self._next_task()) is not None:
            try:
                task.future.set_result(
                    _train_program(task.program, self.programs[task.program], task.start, task.until, context)
                )
            except BaseException as exc:  # noqa: BLE001 -- Stopped, bad input: the driver's finished() raises it
                task.future.set_exception(exc)

    def _process_slot(self, pool: ProcessPoolExecutor) -> None:
        try:
            pool.submit(_started).result()  # the worker has imported JAX and mapped the data
            started = True
        except BaseException:  # noqa: BLE001 -- it died starting (or the run ended first): see below
            started = False
        while (task := self._next_task(pool)) is not None:
            try:
                if not started:
                    raise BrokenProcessPool("a worker process died as it started")
                trained = pool.submit(_train_program, task.program, self.programs[task.program], task.start, task.until)
                task.future.set_result(trained.result())
            except BaseException as exc:  # noqa: BLE001 -- handed to the driver's finished()
                if isinstance(exc, BrokenProcessPool):
                    with self.tasks:
                        self.broken = pool
                task.future.set_exception(exc)

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=self.context,
            initializer=_init_worker,
            initargs=(str(self.data_dir), self.meta, self.events, self.stopping),
        )

    def _start_pool(self) -> None:
        """A fresh pool of the workers that are processes, and a slot for each (the old pool's
        slots end)."""
        processes = self.workers - (1 if TRAIN_IN_DRIVER else 0)
        if processes < 1:
            return
        old, pool = self.pool, self._new_pool(processes)
        with self.tasks:
            self.pool = pool
            self.tasks.notify_all()
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        for _ in range(processes):
            self._add_slot(self._process_slot, "worker", pool)

    def _resume(self, g: int, progress: engine.Progress) -> None:
        """Queue program ``g``'s last epochs behind everything else (any worker takes them)."""
        self._enqueue(g, progress, None)

    # progress ---------------------------------------------------------------------------------

    def _listen(self) -> None:
        """Turn the workers' events into ``on_group`` / ``on_epoch`` calls, one at a time."""
        while True:
            item = self.events.get()
            if item is None:
                return
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
            self.solo = self._new_pool(1)
            try:
                outcome = self.solo.submit(_train_program, g, self.programs[g]).result()
            except BrokenProcessPool:
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
        self._start_pool()

    def stop(self) -> dict[int, Outcome]:
        self.stopping.set()  # running programs stop at their next epoch
        with self.tasks:
            queued = list(self.queue)
            self.queue.clear()
            self.tasks.notify_all()
        for task in queued:
            task.future.cancel()
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
        for pool in (self.pool, self.solo):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self.pool = self.solo = None
        for slot in self.slots:
            slot.join()
        self.events.put(None)
        self.listener.join(timeout=5)
        shutil.rmtree(self.data_dir, ignore_errors=True)
