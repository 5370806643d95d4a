"""Results as plain rows: one ``TrialResult`` per trial, JSON Lines on disk.

File format ``dnnbench/1``: the first line is ``{"type": "header", ...}`` (environment, command
line, full config), then one ``{"type": "trial", ...}`` line per trial. Epochs are numbered from
1 in every row. Losses are the data loss (cross-entropy or MSE) in test mode, without the L1/L2
penalty, so runs with and without regularization compare on one scale -- except
``history["step_loss"]``, the mean minibatch objective the optimizer saw during the epoch
(penalty, dropout and augmentation included).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from dnnbench.results.metrics import EPOCH, ROW_KEYS, SCHEMA

if TYPE_CHECKING:  # reading results files must not load JAX
    from dnnbench.config import TagValue, TrialSpec

#: Line types: one header, trial rows, and a closing summary over the trials (optional).
ROW_TYPES = ("header", "trial", "summary")
#: A training loss above this (or NaN / inf) marks a trial ``diverged``. Chance-level
#: cross-entropy on 10 classes is 2.3 and MSE is at most 2, so 1000 is unambiguous.
DIVERGENCE_LOSS = 1e3


def trial_id(spec: TrialSpec, data_key: dict[str, Any]) -> str:
    """A stable id from the trial's full config, seed and data: equal ids, equal experiments."""
    blob = json.dumps({"trial": spec.as_dict(), "data": data_key}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class TrialResult:
    """One finished trial: what ran, how it ended, its numbers. Plain data, no behaviour."""

    id: str
    spec: TrialSpec
    status: str
    metrics: dict[str, float]
    history: dict[str, list]
    best_epoch: int
    stopped_epoch: int | None
    diverged_epoch: int | None
    timing: dict[str, Any]  # seconds and rates, and counts (epochs_run, group_size, executable_trials)
    extra: dict[str, Any] = field(default_factory=dict)
    diagnosis: dict[str, Any] | None = None
    params: Any = None  # final weights (not serialised)
    graphdef: Any = None  # the model structure: nnx.merge(graphdef, params) is the trained model

    @property
    def optimizer(self) -> str:
        return self.spec.optimizer

    @property
    def tags(self) -> dict[str, TagValue]:
        return dict(self.spec.tags)

    def to_row(self) -> dict[str, Any]:
        row = {
            "type": "trial",
            "id": self.id,
            "optimizer": self.spec.optimizer,
            "hyperparams": dict(self.spec.hyperparams),
            "seed": self.spec.seed,
            **self.tags,
            "config": self.spec.as_dict(),
            "status": self.status,
            "metrics": self.metrics,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "diverged_epoch": self.diverged_epoch,
            "history": self.history,
            "timing": self.timing,
            **self.extra,
        }
        if self.diagnosis is not None:
            row["diagnosis"] = self.diagnosis
        return _json_safe(row)


def from_group(output: Any, index: int, data_key: dict[str, Any], n_trials: int) -> TrialResult:
    """The ``index``-th trial of an engine ``GroupOutput`` as a ``TrialResult``."""
    spec: TrialSpec = output.specs[index]
    hist = {name: output.history[name][:, index] for name in output.history}
    stop = int(output.stopped_epoch[index])
    early = spec.reg.early_stopping
    ran = stop + 1 if early and stop >= 0 else len(hist["train_loss"])
    history: dict[str, list] = {k: v[:ran].tolist() for k, v in hist.items()}

    bad = ~np.isfinite(hist["train_loss"][:ran]) | (hist["train_loss"][:ran] > DIVERGENCE_LOSS)
    bad |= ~np.isfinite(hist["step_loss"][:ran])
    diverged_epoch = int(np.argmax(bad)) + 1 if bad.any() else None

    val_acc = np.nan_to_num(hist["val_acc"][:ran], nan=-1.0)
    if early:
        final_index = int(output.best_epoch[index])
    else:
        final_index = ran - 1
    best_index = final_index if early else int(np.argmax(val_acc))
    metrics = {key: float(hist[key][final_index]) for key in EPOCH}
    metrics["best_val_acc"] = float(hist["val_acc"][best_index])
    extra: dict[str, Any] = {}
    if early:
        last_test = float(hist["test_acc"][ran - 1])
        extra["early_stopping"] = {
            "restored_epoch": final_index + 1,
            "last_epoch_test_acc": last_test,
            "restored_minus_last_test_acc": metrics["test_acc"] - last_test,
        }
    samples = output.samples_seen
    timing = {
        "compile_s": output.compile_s,
        "train_s": output.train_s,
        "samples_per_s": samples * n_trials / output.train_s if output.train_s > 0 else float("nan"),
        "group_size": n_trials,
        "epochs_run": ran,
        "steps_per_epoch": output.samples_seen // max(len(hist["train_loss"]), 1) // spec.train.batch_size,
    }
    return TrialResult(
        id=trial_id(spec, data_key),
        spec=spec,
        status="diverged" if diverged_epoch is not None else "ok",
        metrics=metrics,
        history=history,
        best_epoch=best_index + 1,
        stopped_epoch=stop + 1 if early and stop >= 0 else None,
        diverged_epoch=diverged_epoch,
        timing=timing,
        extra=extra,
    )


def _json_safe(value: Any) -> Any:
    """NaN / inf become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def environment() -> dict[str, Any]:
    """Versions, device and git commit: enough to say where numbers came from."""
    import flax
    import jax
    import jaxlib
    import optax

    import dnnbench

    device = jax.devices()[0]
    return {
        "dnnbench": dnnbench.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, cwd=Path(__file__).resolve().parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def header(config: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "header",
        "schema": SCHEMA,
        "environment": environment(),
        "command": sys.argv[:],
        "config": _json_safe(config),
        "data": _json_safe(data),
    }


class ResultsWriter:
    """Writes a header then trial lines, each flushed as it is written (survives interruption)."""

    def __init__(self, stream: IO[str], name: str = "stdout") -> None:
        self.stream = stream
        self.name = name

    def write(self, row: dict[str, Any]) -> None:
        from dnnbench.errors import OutputError

        line = json.dumps(_json_safe(row), allow_nan=False) + "\n"
        if self.stream.closed:  # a failed write closed it: the same one line, not a traceback
            raise OutputError(f"{self.name}: cannot write (closed after an earlier error)")
        try:
            self.stream.write(line)
            self.stream.flush()
        except OSError as exc:
            if self.stream is not sys.stdout:  # close now, so closing again later does not raise
                with contextlib.suppress(OSError):
                    self.stream.close()
            raise OutputError(f"{self.name}: cannot write ({exc.strerror or exc})") from None


def open_results(path: Path, *, append: bool = False) -> IO[str]:
    """Open ``path`` for writing (or appending) results, creating its folder; a clear error if it cannot.

    The caller has claimed and locked ``path`` (``output_files.claim`` / ``lock``) first."""
    from dnnbench.results.files import cannot_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 -- the caller closes it
    except OSError as exc:
        raise cannot_write(path, exc) from None


def read_results(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and trial rows of a results file, each validated (``reading``); ``DataError``
    naming file:line for anything malformed or impossible."""
    from dnnbench.errors import DataError
    from dnnbench.results import reading

    contents = reading.read(path, error=DataError, prefix="", missing=f"{path}: no such results file")
    return contents.header, [row for _, row in contents.trials]


#: Statuses of a finished trial: ``--resume`` keeps these and trains everything else again.
FINISHED = ("ok", "diverged")


def read_resumable(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """The header and trial rows of a results file to resume, and whether it is intact.

    Read as ``read_results`` reads (a torn last line is dropped; ``intact`` is False then, and
    with a summary line, which is stale once more trials come, so the file is rewritten without
    it). ``InputError`` when the file is missing or is not a valid ``dnnbench/1`` results file.
    """
    from dnnbench.errors import InputError
    from dnnbench.results import reading

    contents = reading.read(
        path,
        error=InputError,
        prefix="--resume: ",
        missing=f"--resume: {path} does not exist; nothing to resume (run once without --resume)",
    )
    return contents.header, [row for _, row in contents.trials], contents.intact


def from_row(row: dict[str, Any], spec: TrialSpec) -> TrialResult:
    """A results-file trial row back as a ``TrialResult`` of ``spec`` (no weights: they are not saved)."""
    return TrialResult(
        id=row["id"],
        spec=spec,
        status=row["status"],
        metrics={k: math.nan if v is None else v for k, v in (row.get("metrics") or {}).items()},
        history=dict(row.get("history") or {}),
        best_epoch=row.get("best_epoch") or 0,
        stopped_epoch=row.get("stopped_epoch"),
        diverged_epoch=row.get("diverged_epoch"),
        timing={k: math.nan if v is None else v for k, v in (row.get("timing") or {}).items()},
        extra={k: v for k, v in row.items() if k not in ROW_KEYS and k not in dict(spec.tags)},
        diagnosis=row.get("diagnosis"),
    )


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: never half a file."""
    from dnnbench.results.files import write_atomic

    write_atomic(path, text)
