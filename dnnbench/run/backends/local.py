"""The local backend: a run's programs on threads of this process.

Programs compile ahead on a few threads and train ``workers`` at a time (threads: XLA runs
outside the GIL, but their larger kernels take turns on the process's one pool of ``--threads``
XLA threads, so a run of much training goes to worker processes: ``run.schedule``). ``on_group``
and ``on_epoch`` are called from the worker threads, one at a time. A program's numbers do not
depend on what runs beside it. On ``stop`` the workers stop at their next epoch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

import numpy as np

from dnnbench.config import TrialSpec
from dnnbench.data import Dataset
from dnnbench.run.backends.base import OnThisMachine, Outcome, Stopped, program_outcome
from dnnbench.train import engine, threads


class LocalExecution(OnThisMachine):
    """``backends.Execution`` on a compile pool and a train pool of threads."""

    def begin(self, data: Dataset, workers: int) -> None:
        self.data = data
        self.stopping = threading.Event()
        self.compiler = ThreadPoolExecutor(
            max_workers=min(len(self.programs), threads.cores(), 4), thread_name_prefix="compile"
        )
        self.trainer = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="train")
        self.futures: dict[Future, int] = {}
        compiled = [self.compiler.submit(_prepare, specs, data) for specs in self.programs]
        self.futures = {self.trainer.submit(self._train, g, compiled[g]): g for g in range(len(self.programs))}

    def _train(self, g: int, compiled: Future) -> Outcome:
        specs = self.programs[g]
        if self.stopping.is_set():
            raise Stopped
        if self.on_group is not None:
            with self.lock:
                self.on_group(g, len(self.programs), specs)

        def each_epoch(epoch: int, metrics: dict[str, np.ndarray]) -> None:
            if self.stopping.is_set():
                raise Stopped
            if self.on_epoch is not None:
                with self.lock:
                    self.on_epoch(g, epoch, metrics)

        compile_s = compiled.result()  # never raises: _prepare leaves a failure to program_outcome
        if self.stopping.is_set():
            raise Stopped
        return program_outcome(specs, self.data, each_epoch, compile_s=compile_s)

    def finished(self) -> Iterator[tuple[int, Outcome]]:
        for future in as_completed(self.futures):
            g = self.futures[future]
            outcome = future.result()  # a DnnbenchError (bad input) stops the run
            self.yielded.add(g)
            yield g, outcome

    def stop(self) -> dict[int, Outcome]:
        self.stopping.set()  # the workers stop at their next epoch
        self.trainer.shutdown(wait=True, cancel_futures=True)
        return {
            g: future.result()
            for future, g in self.futures.items()
            if g not in self.yielded and future.done() and not future.cancelled() and future.exception() is None
        }

    def close(self) -> None:
        self.trainer.shutdown(wait=True, cancel_futures=True)
        self.compiler.shutdown(wait=True, cancel_futures=True)


def _prepare(specs: list[TrialSpec], data: Dataset) -> float:
    """Compile a group's programs ahead of training; the seconds spent. A group that fails here
    fails again, reported, in training."""
    try:
        return engine.prepare(specs, data)
    except Exception:  # noqa: BLE001 -- train_group raises it again and reports it per trial
        return 0.0
