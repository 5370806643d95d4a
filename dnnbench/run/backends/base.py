"""What every backend shares: the settings, the callbacks, the ``Execution`` protocol.

Apart from ``backends/__init__`` (which picks a backend) so that the backends import these
without importing the package that imports them.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dnnbench.config import TrialSpec
from dnnbench.errors import DnnbenchError, InputError

if TYPE_CHECKING:
    from dnnbench.data import Dataset

#: What a program ends as: its output (``engine.GroupOutput``) or the exception that failed it,
#: carrying ``.report`` (a short traceback) where one was taken. Such a program's trials become
#: ``error`` rows; every other program's rows are kept.
Outcome = Any
GroupCallback = Callable[[int, int, Sequence[TrialSpec]], None]  # (program, programs, its trials)
EpochCallback = Callable[[int, int, dict[str, np.ndarray]], None]  # (program, epoch, metrics)


@dataclass(frozen=True)
class Status:
    """Where a run's programs are, for progress on a cluster: each program is queued, running
    or finished; the nodes in use are those running a program now."""

    finished: int
    running: int
    queued: int
    nodes_in_use: int
    nodes: int  # alive nodes of the cluster when the run started


StatusCallback = Callable[[Status], None]

NAMES = ("local", "processes", "threads", "ray")
RAY_MISSING = "Ray is not installed: pip install 'dnnbench[ray]'"


@dataclass(frozen=True)
class Settings:
    """Where a run trains: ``--backend``, and for Ray ``--ray-address`` / ``--ray-max-retries``."""

    backend: str = "local"
    ray_address: str | None = None  # None: $RAY_ADDRESS, else a cluster on this machine, else a new one
    ray_max_retries: int = 2  # a task whose worker process or node died runs again this many times

    def __post_init__(self) -> None:
        if self.backend not in NAMES:
            raise InputError(f"unknown backend {self.backend!r}; valid: {', '.join(NAMES)}")
        if self.ray_max_retries < 0:
            raise InputError(f"ray max retries must be 0 or more, got {self.ray_max_retries!r}")
        if self.ray_address is not None and self.backend != "ray":
            raise InputError("--ray-address goes with --backend ray")
        if self.ray_address is not None:
            ray_host_port("--ray-address", self.ray_address)
        if self.backend == "ray" and importlib.util.find_spec("ray") is None:  # say so before anything runs
            raise InputError(RAY_MISSING)


def ray_host_port(option: str, address: str) -> tuple[str, int] | None:
    """The host and port of a Ray address (``HOST:PORT``, ``ray://HOST:PORT``); None for ``auto``
    and ``local``; ``InputError`` naming ``option`` for anything else."""
    text = address.strip()
    if text in ("auto", "local"):
        return None
    match = re.fullmatch(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", text)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise InputError(
            f"{option} {address!r} is not a Ray address: give the HOST:PORT a cluster's head prints "
            "(`ray start --head`), ray://HOST:PORT, auto or local"
        )
    return match.group(1).strip("[]"), int(match.group(2))


class Stopped(Exception):
    """Raised inside a worker between epochs once the run is stopping (Ctrl-C or an error)."""


def program_outcome(
    specs: Sequence[TrialSpec],
    data: Any,
    on_epoch: Callable[[int, dict[str, np.ndarray]], None] | None,
    compile_s: float = 0.0,
    start: Any = None,
    until_step: int | None = None,
) -> Outcome:
    """Train one program (``engine.train_group``): its output, or the exception that failed it with
    ``.report`` (a short traceback), so that its trials become error rows and the other programs'
    are kept. Bad input (``DnnbenchError``) and ``Stopped`` are raised: they end the run.

    ``start`` / ``until_step``: train only part of its steps (``engine.train_part``); an
    ``engine.Progress`` comes back where it did not end."""
    from dnnbench.train import engine  # JAX starts where a program trains, not where backends are picked

    try:
        if start is None and until_step is None:
            return engine.train_group(specs, data, on_epoch=on_epoch, compile_s=compile_s)
        return engine.train_part(
            specs, data, on_epoch=on_epoch, compile_s=compile_s, start=start, until_step=until_step
        )
    except (DnnbenchError, Stopped):
        raise
    except Exception as exc:  # noqa: BLE001 -- one failing program must not sink the others
        exc.report = traceback.format_exc(limit=3)  # type: ignore[attr-defined]
        return exc


class OnThisMachine:
    """What the backends of this machine (threads, processes) share: the run's programs, the
    progress callbacks (called one at a time, under ``lock``) and the programs whose outcome was
    handed back. ``begin`` starts training them, ``workers`` at a time."""

    def __init__(
        self,
        programs: Sequence[Sequence[TrialSpec]],
        data: Dataset,
        workers: int,
        on_group: GroupCallback | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        self.programs = [list(specs) for specs in programs]
        self.on_group, self.on_epoch = on_group, on_epoch
        self.lock = threading.Lock()
        self.yielded: set[int] = set()
        self.begin(data, workers)

    def begin(self, data: Dataset, workers: int) -> None:
        raise NotImplementedError


class Execution(Protocol):
    """Programs being trained. ``finished`` blocks and yields ``(program index, outcome)`` as each
    ends; ``stop`` (on Ctrl-C or an error) cancels what is queued or running and returns the
    outcomes that finished but were not yielded yet; ``close`` releases what ``start`` took."""

    def finished(self) -> Iterator[tuple[int, Outcome]]: ...

    def stop(self) -> dict[int, Outcome]: ...

    def close(self) -> None: ...
