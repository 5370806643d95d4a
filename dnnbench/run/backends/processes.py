"""The local backend on processes: a pool of worker processes, each with its own XLA.

Threads of one process share one XLA CPU client, hence one intra-op thread pool of ``--threads``
threads: with the default of one, every program's matmuls queue on that thread and the other cores
idle. Worker processes each start XLA with ``--threads`` threads (``dnnbench.train.threads``), so a
program's numbers are the ones it would get anywhere else with that many threads, and ``workers``
processes keep ``workers x threads`` cores busy.

- The pool is started once per run with the ``spawn`` method (forking a process that runs JAX can
  deadlock), ``workers`` processes at most.
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

import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from dnnbench.config import TrialSpec
from dnnbench.data import Dataset
from dnnbench.run import schedule
from dnnbench.run.backends.base import OnThisMachine, Outcome, Stopped, program_outcome
from dnnbench.train import engine

_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


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

    arrays = {name: np.load(Path(data_dir) / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    _worker.update(data=Dataset(**arrays, **meta), events=events, stop=stop)


def _train_program(program: int, specs: list[TrialSpec], start: Any = None, until: int | None = None) -> Outcome:
    """Train one program in a worker; its output (parameters as NumPy arrays) or the exception that
    failed it, with ``.report``. Bad input (``DnnbenchError``) is raised: it stops the run.

    ``start`` / ``until``: only some of its epochs (``engine.train_part``); then an
    ``engine.Progress`` comes back unless the program ended."""
    import jax

    from dnnbench.run.backends.ray import _portable

    events, stop = _worker["events"], _worker["stop"]
    events.put(("start" if start is None else "resume", program, os.getpid()))

    def each_epoch(epoch: int, metrics: dict[str, np.ndarray]) -> None:
        if stop.is_set():
            raise Stopped
        events.put(("epoch", program, epoch, metrics))

    output: Outcome = None
    try:
        output = program_outcome(specs, _worker["data"], each_epoch, start=start, until=until)
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


class ProcessExecution(OnThisMachine):
    """``backends.Execution`` on a pool of spawned worker processes."""

    def begin(self, data: Dataset, workers: int) -> None:
        self.workers = max(1, min(workers, len(self.programs)))
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
        self.first = schedule.first_epochs(costs, epochs, self.workers)
        self.order = schedule.order(costs, self.first)  # those first, then longest first
        self.running: dict[int, int] = {}  # program -> worker pid, from the workers' events
        self.started: set[int] = set()
        self.ended: set[int] = set()
        self.failure: BaseException | None = None
        self.ended_changed = threading.Condition(self.lock)
        self.pending: dict[Future, int] = {}
        self.done: dict[int, Outcome] = {}
        self.pool: ProcessPoolExecutor | None = None
        self.listener = threading.Thread(target=self._listen, name="dnnbench-events", daemon=True)
        self.listener.start()
        self._submit(self.order)

    # the pool ---------------------------------------------------------------------------------

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=self.context,
            initializer=_init_worker,
            initargs=(str(self.data_dir), self.meta, self.events, self.stopping),
        )

    def _submit(self, groups: Sequence[int], workers: int | None = None) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool(workers or self.workers)
        for g in groups:
            until = self.first.get(g) if workers is None else None  # a program run alone runs whole
            self.pending[self.pool.submit(_train_program, g, self.programs[g], None, until)] = g

    def _resume(self, g: int, progress: engine.Progress) -> None:
        """Queue program ``g``'s last epochs behind everything else (any worker takes them)."""
        assert self.pool is not None
        self.pending[self.pool.submit(_train_program, g, self.programs[g], progress)] = g

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
        if kind == "start":
            self.running[g] = item[2]
            self.started.add(g)
            if self.on_group is not None:
                self.on_group(g, len(self.programs), self.programs[g])
        elif kind == "resume":
            self.running[g] = item[2]
        elif kind == "epoch" and self.on_epoch is not None:
            self.on_epoch(g, item[2], item[3])
        elif kind in ("end", "paused"):
            self.running.pop(g, None)

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
        every worker), so the programs that were training run again one at a time, each in a pool of
        its own: the one that dies again becomes ``error`` rows, the others their rows. The programs
        that had not started go on in a fresh pool."""
        unfinished = broken + list(self.pending.values())
        self.pending.clear()
        with self.lock:
            suspects = sorted({g for g in unfinished if g in self.started} - self.yielded)
            self.running.clear()
        if not suspects:  # nobody had started: the pool died on its own; run them alone too
            suspects = sorted(set(unfinished))
        for g in suspects:
            if self.stopping.is_set():
                return
            self._submit([g], workers=1)
            [future] = list(self.pending)
            try:
                outcome = future.result()
            except BrokenProcessPool:
                outcome = WorkerDied(
                    "the worker process training this program died (killed, or out of memory); it died again "
                    "when run alone"
                )
                outcome.report = "worker process died twice"  # type: ignore[attr-defined]
            else:
                self._await_end(g)
            finally:
                self.pending.clear()
            self.yielded.add(g)
            yield g, outcome
        rest = [g for g in self.order if g in unfinished and g not in suspects]
        if rest:
            self._submit(rest)

    def stop(self) -> dict[int, Outcome]:
        self.stopping.set()  # running programs stop at their next epoch
        kept: dict[int, Outcome] = {}
        for future in list(self.pending):
            future.cancel()
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
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.events.put(None)
        self.listener.join(timeout=5)
        shutil.rmtree(self.data_dir, ignore_errors=True)
