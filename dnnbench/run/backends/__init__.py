"""Backends: where a run's compiled programs train. The plan is not theirs to make.

The runner cuts a run into programs once (``runner.chunks_of``: which trials form each compiled
program, the same on every machine); a backend only executes that list and hands each program's
outcome back as it finishes, in any order. The runner writes rows in group order. Two backends:

- ``local`` (``backends.local``): threads of this process, ``--workers`` programs at once;
- ``ray`` (``backends.ray``): one Ray task per program on a Ray cluster (``--backend ray``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from dnnbench.config import TrialSpec
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
        import dnnbench.run.backends.ray as ray

        return ray.session(settings)
    return contextlib.nullcontext()


def start(
    settings: Settings,
    programs: Sequence[Sequence[TrialSpec]],
    data: Any,
    *,
    workers: int,
    on_group: GroupCallback | None = None,
    on_epoch: EpochCallback | None = None,
    on_status: StatusCallback | None = None,
) -> Execution:
    """Start training ``programs`` (each a compiled program's trials) on ``data``. ``on_status``
    (programs queued / running / finished, nodes in use) is called by the Ray backend only: the
    local backend's running programs are its progress bars."""
    if settings.backend == "ray":
        import dnnbench.run.backends.ray as ray

        return ray.start(settings, programs, data, on_group=on_group, on_epoch=on_epoch, on_status=on_status)
    import dnnbench.run.backends.local as local

    return local.start(programs, data, workers=workers, on_group=on_group, on_epoch=on_epoch)
