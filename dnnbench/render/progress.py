"""Live training progress on stderr (rich): one bar per compiled program that is training.

Disabled (every method a no-op) when stderr is not a terminal, with ``--quiet`` or ``--json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dnnbench.errors import printable
from dnnbench.render.tables import make_console

if TYPE_CHECKING:
    from rich.progress import Progress


class TrainingProgress:
    """Live progress on stderr: one bar per compiled group, epochs done, current val accuracy.
    Groups that train at once show their bars at once (the runner calls in from its workers,
    one call at a time).

    Disabled (all methods no-ops) when stderr is not a terminal, with ``--quiet`` or ``--json``.
    """

    def __init__(self, run: object, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._tasks: dict[int, Any] = {}
        self._status_task: Any = None

    def __enter__(self) -> TrainingProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}", markup=False),  # names from files: text, not markup
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}", markup=False),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}", markup=False),
                console=make_console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def on_group(self, index: int, total: int, specs: Sequence) -> None:
        if self._progress is None:
            return
        first = specs[0]
        label = f"[{index + 1}/{total}] {first.optimizer}"
        if first.tags:
            label += " " + ",".join(str(value) for value in dict(first.tags).values())
        label = printable(label + f" ×{len(specs)} trials")  # an optimizer or tag may hold ESC, BEL, ...
        self._tasks[index] = self._progress.add_task(
            label, total=first.train.epochs, status="compiling…", unit="epochs"
        )

    def on_status(self, status: Any) -> None:
        """On a cluster (``backends.Status``): one line above the bars, programs finished of all,
        how many run and wait, and the nodes in use."""
        if self._progress is None:
            return
        total = status.finished + status.running + status.queued
        text = (
            f"{status.running} running · {status.queued} queued · "
            f"{status.nodes_in_use} of {status.nodes} node{'s' if status.nodes != 1 else ''} in use"
        )
        if self._status_task is None:
            self._status_task = self._progress.add_task("cluster", total=total, unit="programs finished", status=text)
        self._progress.update(self._status_task, completed=status.finished, status=text)

    def on_epoch(self, group: int, epoch: int, metrics: dict) -> None:
        task = self._tasks.get(group)
        if self._progress is None or task is None:
            return
        val = metrics.get("val_acc")
        status = ""
        if val is not None and len(val) and not all(v != v for v in val):
            status = f"val acc {max(v for v in val if v == v):.4f} (best trial)"
        self._progress.update(task, completed=epoch + 1, status=status)
