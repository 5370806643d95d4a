"""The recipe's first question for every trial: underfitting or overfitting? And what next?

``diagnose(history, ...)`` labels a trial ``diverged``, ``underfitting``, ``still improving``,
``overfitting`` or ``good fit`` from its per-epoch history, keeps the numbers that decided it as
``evidence``, and lists the recipe's remedies in the recipe's order (SEED.md section 3 for
underfitting, section 2 for overfitting) as ready-to-paste dnnbench command lines.

The decision, with the ``Thresholds`` (all configurable):

1. ``diverged``: the trial's status says so (a loss became NaN / inf / > 1000).
2. Training accuracy below ``underfit_train_acc``: ``still improving`` if the monitored loss
   still falls by more than ``improving_rel`` per epoch over the last ``window`` epochs and its
   best epoch is the last one; otherwise ``underfitting``.
3. ``overfitting`` if the generalization gap (train acc - validation acc; test acc when there is
   no validation set) exceeds ``overfit_gap``, or the validation loss has risen by more than
   ``overfit_val_rise`` (relative) above its minimum, reached at least ``window`` epochs before the end.
4. ``still improving`` if the validation loss still falls as in 2.
5. ``good fit`` otherwise.
Test data is only reported, never used to decide, unless there is no validation set.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

import numpy as np

from dnnbench.config import TrialSpec
from dnnbench.optim import DEFAULTS

LABELS = ("underfitting", "overfitting", "good fit", "diverged", "still improving")


@dataclass(frozen=True)
class Thresholds:
    underfit_train_acc: float = 0.9
    overfit_gap: float = 0.05
    overfit_val_rise: float = 0.10
    improving_rel: float = 0.01
    window: int = 3


def _trend(losses: np.ndarray, window: int) -> float:
    """Mean relative change per epoch of ``losses`` over the last ``window`` epochs (< 0: falling)."""
    tail = losses[-(window + 1):]
    if len(tail) < 2 or not np.all(np.isfinite(tail)) or tail[0] == 0:
        return 0.0
    return float((tail[-1] - tail[0]) / abs(tail[0]) / (len(tail) - 1))


def diagnose(history: dict[str, list], status: str, *, spec: TrialSpec | None = None,
             base_command: list[str] | None = None, thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """``{"label", "evidence", "remedies"}`` for one trial's history (see the module doc)."""
    t = thresholds
    train_acc = np.asarray(history["train_acc"], float)
    train_loss = np.asarray(history["train_loss"], float)
    val_loss = np.asarray(history["val_loss"], float)
    val_acc = np.asarray(history["val_acc"], float)
    test_acc = np.asarray(history["test_acc"], float)
    has_val = bool(np.isfinite(val_acc).any())
    monitored = val_loss if has_val else train_loss
    last = len(train_acc) - 1
    evidence: dict[str, Any] = {
        "epochs": last + 1,
        "train_acc": _num(train_acc[last]),
        "train_loss": _num(train_loss[last]),
        "underfit_train_acc_threshold": t.underfit_train_acc,
    }
    if status == "diverged":
        bad = ~np.isfinite(train_loss) | (train_loss > 1e3)
        evidence["diverged_epoch"] = int(np.argmax(bad)) + 1 if bad.any() else None
        return _verdict("diverged", evidence, spec, base_command)

    gap_against = val_acc if has_val else test_acc
    gap = float(train_acc[last] - gap_against[last])
    trend = _trend(monitored, t.window)
    finite = np.where(np.isfinite(monitored), monitored, np.inf)
    best = int(np.argmin(finite))
    rise = float((monitored[last] - finite[best]) / abs(finite[best])) if finite[best] not in (0, np.inf) else 0.0
    evidence.update({
        "generalization_gap": gap,
        "gap_measured_on": "validation" if has_val else "test (no validation set)",
        "overfit_gap_threshold": t.overfit_gap,
        "monitored": "val_loss" if has_val else "train_loss",
        "loss_trend_per_epoch": trend,
        "trend_window": t.window,
        "improving_threshold": -t.improving_rel,
        "best_loss_epoch": best + 1,
        "last_epoch": last + 1,
        "loss_rise_from_best": rise,
        "overfit_val_rise_threshold": t.overfit_val_rise,
        "val_acc": _num(val_acc[last]) if has_val else None,
        "test_acc": _num(test_acc[last]),
    })
    improving = trend < -t.improving_rel and best == last
    if train_acc[last] < t.underfit_train_acc:
        label = "still improving" if improving else "underfitting"
    elif gap > t.overfit_gap or (has_val and rise > t.overfit_val_rise and last - best >= t.window):
        label = "overfitting"
    elif improving:
        label = "still improving"
    else:
        label = "good fit"
    return _verdict(label, evidence, spec, base_command)


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _verdict(label: str, evidence: dict[str, Any], spec: TrialSpec | None,
             base: list[str] | None) -> dict[str, Any]:
    return {"label": label, "evidence": evidence, "remedies": remedies(label, spec, base) if spec else []}


def command_for(spec: TrialSpec, data_args: list[str] | None = None) -> list[str]:
    """The ``dnnbench diagnose`` command line that reproduces ``spec``."""
    m, tr, r = spec.model, spec.train, spec.reg
    args = ["dnnbench", "diagnose", *(data_args or []), "--optimizer", spec.optimizer,
            "--lr", f"{spec.learning_rate:g}", "--hidden", ",".join(map(str, m.hidden)),
            "--activation", m.activation, "--loss", tr.loss, "--epochs", str(tr.epochs),
            "--batch-size", str(tr.batch_size), "--seed", str(spec.seed)]
    if m.residual:
        args.append("--residual")
    for name, value in (("--l1", r.l1), ("--l2", r.l2), ("--dropout", r.dropout),
                        ("--augment-noise", r.augment_noise)):
        if value:
            args += [name, f"{value:g}"]
    if r.augment_shift:
        args += ["--augment-shift", str(r.augment_shift)]
    if r.train_fraction < 1:
        args += ["--train-fraction", f"{r.train_fraction:g}"]
    if r.early_stopping:
        args += ["--early-stopping", "--patience", str(r.patience)]
    return args


def _with(base: list[str], flag: str, value: str | None = None) -> str:
    """``base`` with ``flag`` set to ``value`` (replaced if present), as one shell line."""
    args = list(base)
    if flag in args:
        i = args.index(flag)
        if value is None:
            return shlex.join(args)
        args[i + 1] = value
    else:
        args += [flag] if value is None else [flag, value]
    return shlex.join(args)


def remedies(label: str, spec: TrialSpec, base: list[str] | None = None) -> list[str]:
    """The recipe's next experiments for ``label``, in the recipe's order, as command lines."""
    base = base or command_for(spec)
    lr, m, tr, r = spec.learning_rate, spec.model, spec.train, spec.reg
    out: list[str] = []
    if label == "diverged":
        out.append(_with(base, "--lr", f"{lr / 10:g}"))
        if spec.optimizer != "adam":
            out.append(_with(_with(base, "--optimizer", "adam").split(), "--lr", f"{DEFAULTS['adam']['learning_rate']:g}"))
        return out
    if label in ("underfitting", "still improving"):
        # SEED.md section 3: hyperparameters (rate, epochs, batch size), activation, optimizer, network, loss.
        out.append(_with(base, "--epochs", str(tr.epochs * 2)))
        if label == "still improving":
            return out
        out.append(_with(base, "--lr", f"{lr * 10:g}"))
        if tr.batch_size > 16:
            out.append(_with(base, "--batch-size", str(max(tr.batch_size // 4, 1))))
        if m.activation in ("sigmoid", "tanh", "linear"):
            out.append(_with(base, "--activation", "relu"))
        if spec.optimizer != "adam":
            out.append(_with(_with(base, "--optimizer", "adam").split(), "--lr", f"{DEFAULTS['adam']['learning_rate']:g}"))
        if len(m.hidden) > 3 and not m.residual:
            out.append(_with(base, "--residual"))
        out.append(_with(base, "--hidden", ",".join(str(w * 2) for w in m.hidden)))
        if tr.loss == "mse":
            out.append(_with(base, "--loss", "ce"))
        return out
    if label == "overfitting":
        # SEED.md section 2: early stopping, L1/L2, dropout, more data.
        if not r.early_stopping:
            out.append(_with(_with(base, "--early-stopping").split(), "--patience", "5"))
        out.append(_with(base, "--l2", f"{(r.l2 * 10) if r.l2 else 1e-4:g}"))
        out.append(_with(base, "--l1", f"{(r.l1 * 10) if r.l1 else 1e-5:g}"))
        out.append(_with(base, "--dropout", "0.5" if r.dropout < 0.5 else f"{min(r.dropout + 0.1, 0.9):g}"))
        if r.train_fraction < 1:
            out.append(_with(base, "--train-fraction", "1"))
        out.append(_with(base, "--augment-noise", "0.1"))
        return out
    return out
