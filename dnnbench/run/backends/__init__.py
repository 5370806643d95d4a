"""Backends: where a run's compiled programs train. The plan is not theirs to make.

The runner cuts a run into programs once (``runner.chunks_of``: which trials form each compiled
program, the same on every machine); a backend only executes that list and hands each program's
outcome back as it finishes, in any order. The runner writes rows in group order. The backends:

- ``processes`` (``backends.processes``): a pool of worker processes started for the run, ``--workers``
  programs at once, each worker with its own XLA of ``--threads`` threads;
- ``threads`` (``backends.local``): threads of this process, one XLA client whose executions run on
  their calling threads (synchronous dispatch, see ``train.threads``);
- ``local`` (the default): ``processes`` for a run of much training or of many programs, else
  ``threads`` (the rules and their measurements: ``dnnbench.run.schedule``). The numbers are the
  same on each;
- ``ray`` (``backends.ray``): one Ray task per program on a Ray cluster (``--backend ray``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from dnnbench.config import TrialSpec
from dnnbench.errors import InputError
from dnnbench.run import schedule
from dnnbench.run.backends.base import (
    NAMES,
    RAY_MISSING,
    EpochCallback,
    Execution,
    GroupCallback,
    Outcome,
    Settings,
    Status,
    StatusCallback,
)

__all__ = [
    "NAMES",
    "RAY_MISSING",
    "EpochCallback",
    "Execution",
    "GroupCallback",
    "Outcome",
    "Settings",
    "Status",
    "StatusCallback",
    "session",
    "start",
]


def session(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """What a backend holds for a whole command, taken before anything is written: the Ray cluster,
    joined (a cluster that cannot be reached is one line, and no results file is left behind);
    nothing for the local backends."""
    if settings.backend == "ray":
        from dnnbench.train import threads

        if threads.is_auto():  # a cluster's nodes differ in cores: its programs' numbers would too
            raise InputError("--threads auto is for runs on this machine; give --backend ray a number: --threads N")
        import dnnbench.run.backends.ray as ray

        return ray.session(settings)
    return contextlib.nullcontext()


def program_threads(settings: Settings, programs: int) -> int | None:
    """The XLA threads each of a run's ``programs`` programs trains with, as its header records:
    ``--threads`` as this process runs XLA (None: not sized by dnnbench); with ``--threads auto``,
    the cores shared out between the programs (``threads.for_programs``) where worker processes can
    train them, else this process's own."""
    from dnnbench.train import threads

    current = threads.current()
    if not threads.is_auto() or current is None or settings.backend == "threads" or not _main_can_be_reimported():
        return current
    return threads.for_programs(programs)


def start(
    settings: Settings,
    programs: Sequence[Sequence[TrialSpec]],
    data: Any,
    *,
    workers: int,
    threads: int | None = None,
    on_group: GroupCallback | None = None,
    on_epoch: EpochCallback | None = None,
    on_status: StatusCallback | None = None,
) -> Execution:
    """Start training ``programs`` (each a compiled program's trials) on ``data``, each with
    ``threads`` XLA threads (``program_threads``; None: this process's). ``on_status`` (programs
    queued / running / finished, nodes in use) is called by the Ray backend only: the local
    backend's running programs are its progress bars."""
    if settings.backend == "ray":
        import dnnbench.run.backends.ray as ray

        return ray.start(settings, programs, data, on_group=on_group, on_epoch=on_epoch, on_status=on_status)
    if trains_in(settings, programs, data, workers, threads) == "processes":
        import dnnbench.run.backends.processes as processes

        return processes.ProcessExecution(programs, data, workers, on_group, on_epoch, threads=threads)
    import dnnbench.run.backends.local as local

    return local.LocalExecution(programs, data, workers, on_group, on_epoch)


def trains_in(
    settings: Settings, programs: Sequence[Sequence[TrialSpec]], data: Any, workers: int, threads: int | None = None
) -> str:
    """Where ``start`` trains ``programs`` off a Ray cluster: ``"processes"`` or ``"threads"``
    (``local`` chooses by ``schedule.wants_processes``; a pool needs two workers and two programs).
    Programs of another thread count than this process's XLA (``--threads auto``) go to processes."""
    from dnnbench.train import threads as xla_threads

    if threads is not None and threads != xla_threads.current() and settings.backend != "threads":
        return "processes"
    if settings.backend == "threads" or workers < 2 or len(programs) < 2:
        return "threads"
    if settings.backend == "local":
        costs = [schedule.program_cost(specs, data) for specs in programs]
        if not schedule.wants_processes(costs, workers):
            return "threads"
    return "processes" if _main_can_be_reimported() else "threads"


def _main_can_be_reimported() -> bool:
    """A spawned worker imports the parent's ``__main__`` script again: safe for the ``dnnbench``
    command, ``python -m``, an interactive session, or a script that guards its work with
    ``if __name__ == "__main__":``; a script that trains at import would train again in each worker."""
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:  # interactive, -c, or python -m
        return True
    try:
        with open(path, encoding="utf-8", errors="replace") as source:
            text = source.read()
    except OSError:
        return False
    return "__name__" in text and "__main__" in text
