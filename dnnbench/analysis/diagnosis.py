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

An early-stopping trial keeps the weights of its restored (best) epoch, so it is judged there: the
gap and accuracy at that epoch, the trend up to it, no rise after it (it no longer uses those
epochs), and never ``still improving`` once it stopped. Its evidence says "stopped at epoch E,
restored epoch B".
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dnnbench import optim
from dnnbench.config import (
    DataConfig,
    ModelConfig,
    Regularization,
    TrainConfig,
    TrialSpec,
    Variation,
    trial_list,
)
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
    tail = losses[-(window + 1) :]
    if len(tail) < 2 or not np.all(np.isfinite(tail)) or tail[0] == 0:
        return 0.0
    return float((tail[-1] - tail[0]) / abs(tail[0]) / (len(tail) - 1))


def restored_epoch(history: dict[str, list], reg: Regularization) -> int:
    """The epoch (1-based) whose weights early stopping restores: the first that improved the
    monitored value by more than ``min_delta`` over every earlier one (the engine's rule)."""
    values = np.asarray(history[reg.monitor], float)
    sign = -1.0 if reg.monitor.endswith("_acc") else 1.0  # compare as a loss: lower is better
    best, best_index = np.inf, 0
    for i, value in enumerate(sign * values):
        if np.isfinite(value) and value < best - reg.min_delta:
            best, best_index = value, i
    return best_index + 1


def diagnose(
    history: dict[str, list],
    status: str,
    *,
    spec: TrialSpec | None = None,
    data: DataConfig | None = None,
    base_command: Sequence[str] | None = None,
    thresholds: Thresholds = Thresholds(),
    restored: int | None = None,
) -> dict[str, Any]:
    """``{"label", "evidence", "remedies"}`` for one trial's history (see the module doc).

    The remedies are commands for ``spec`` on ``data`` (or on the data options of
    ``base_command``, a ``command_for`` line). ``restored``: the epoch an early-stopping trial
    restored (default: found in the history by the monitor of ``spec``)."""
    base = data if data is not None else _data_part(base_command)
    t = thresholds
    train_acc = np.asarray(history["train_acc"], float)
    train_loss = np.asarray(history["train_loss"], float)
    val_loss = np.asarray(history["val_loss"], float)
    val_acc = np.asarray(history["val_acc"], float)
    test_acc = np.asarray(history["test_acc"], float)
    has_val = bool(np.isfinite(val_acc).any())
    monitored = val_loss if has_val else train_loss
    ran = len(train_acc)
    early = spec is not None and spec.reg.early_stopping and status != "diverged" and has_val
    if early:
        assert spec is not None
        restored = restored or restored_epoch(history, spec.reg)
        stopped = ran < spec.train.epochs
        # Judge the weights the trial kept: everything after the restored epoch is cut off.
        train_acc, train_loss, val_loss, val_acc, test_acc, monitored = (
            a[:restored] for a in (train_acc, train_loss, val_loss, val_acc, test_acc, monitored)
        )
    last = len(train_acc) - 1
    evidence: dict[str, Any] = {
        "epochs": ran,
        **(
            {
                "early_stopping": (f"stopped at epoch {ran}" if stopped else f"ran all {ran} epochs")
                + f", restored epoch {restored}",
                "judged_epoch": restored,
            }
            if early
            else {}
        ),
        "train_acc": _num(train_acc[last]),
        "train_loss": _num(train_loss[last]),
        "underfit_train_acc_threshold": t.underfit_train_acc,
    }
    if status == "diverged":
        bad = ~np.isfinite(train_loss) | (train_loss > 1e3)
        evidence["diverged_epoch"] = int(np.argmax(bad)) + 1 if bad.any() else None
        return _verdict("diverged", evidence, spec, base)

    gap_against = val_acc if has_val else test_acc
    gap = float(train_acc[last] - gap_against[last])
    trend = _trend(monitored, t.window)
    finite = np.where(np.isfinite(monitored), monitored, np.inf)
    best = int(np.argmin(finite))
    rise = float((monitored[last] - finite[best]) / abs(finite[best])) if finite[best] not in (0, np.inf) else 0.0
    evidence.update(
        {
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
        }
    )
    # A trial that stopped early is past improving: its monitor stopped getting better.
    improving = trend < -t.improving_rel and best == last and not (early and stopped)
    if train_acc[last] < t.underfit_train_acc:
        label = "still improving" if improving else "underfitting"
    elif gap > t.overfit_gap or (has_val and rise > t.overfit_val_rise and last - best >= t.window):
        label = "overfitting"
    elif improving:
        label = "still improving"
    else:
        label = "good fit"
    return _verdict(label, evidence, spec, base)


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _verdict(
    label: str, evidence: dict[str, Any], spec: TrialSpec | None, data: DataConfig | Sequence[str] | None
) -> dict[str, Any]:
    return {"label": label, "evidence": evidence, "remedies": remedies(label, spec, data) if spec else []}


def _text(value: Any) -> str:
    """``value`` as command-line text that reads back as the same value (shortest form)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def data_options(data: DataConfig) -> list[str]:
    """The data options of a command line that selects ``data`` (each one that is not the default)."""
    default = DataConfig()
    args = ["--data", data.path] if data.path else ["--dataset", data.dataset]
    if data.data_dir:
        args += ["--data-dir", data.data_dir]
    if not data.verify:
        args.append("--no-verify")
    for flag, value, usual in (
        ("--val-split", data.val_split, default.val_split),
        ("--label-noise", data.label_noise, default.label_noise),
    ):
        if value != usual:
            args += [flag, _text(value)]
    return args


def _data_part(command: Sequence[str] | None) -> list[str]:
    """The data options of a ``command_for`` line: everything between the command and ``--optimizer``."""
    if not command:
        return []
    args = list(command)
    return args[2 : args.index("--optimizer")] if "--optimizer" in args else args[2:]


def command_for(spec: TrialSpec, data: DataConfig | Sequence[str] | None = None) -> list[str]:
    """The ``dnnbench diagnose`` command line that reproduces ``spec`` on ``data``: its whole
    configuration, every option that differs from the command's default included. ``data`` may
    also be the data options themselves. The one builder of every suggested command."""
    m, tr, r, s = spec.model, spec.train, spec.reg, spec.schedule
    data_args = data_options(data) if isinstance(data, DataConfig) else list(data or [])
    args = [
        "dnnbench",
        "diagnose",
        *data_args,
        "--optimizer",
        spec.optimizer,
        "--lr",
        _text(float(spec.learning_rate)),
        "--hidden",
        ",".join(map(str, m.hidden)),
        "--activation",
        m.activation,
        "--loss",
        tr.loss,
        "--epochs",
        str(tr.epochs),
        "--batch-size",
        str(tr.batch_size),
        "--seed",
        str(spec.seed),
    ]
    dm, dt, dr, ds = ModelConfig(), TrainConfig(), Regularization(), optim.Schedule()
    for flag, value, default in (
        ("--residual", m.residual, dm.residual),
        ("--precision", m.precision, dm.precision),
        ("--train-eval-samples", tr.train_eval_samples, dt.train_eval_samples),
        ("--l1", r.l1, dr.l1),
        ("--l2", r.l2, dr.l2),
        ("--dropout", r.dropout, dr.dropout),
        ("--dropout-mode", r.dropout_mode, dr.dropout_mode),
        ("--early-stopping", r.early_stopping, dr.early_stopping),
        ("--monitor", r.monitor, dr.monitor),
        ("--patience", r.patience, dr.patience),
        ("--min-delta", r.min_delta, dr.min_delta),
        ("--augment-shift", r.augment_shift, dr.augment_shift),
        ("--augment-noise", r.augment_noise, dr.augment_noise),
        ("--train-fraction", r.train_fraction, dr.train_fraction),
        ("--weight-decay", r.weight_decay, dr.weight_decay),
        ("--clip-norm", r.clip_norm, dr.clip_norm),
        ("--schedule", s.kind, ds.kind),
        ("--decay-to", s.decay_to, ds.decay_to),
        ("--step-every", s.step_every, ds.step_every),
        ("--step-factor", s.step_factor, ds.step_factor),
    ):
        if value == default:
            continue
        args += [flag] if isinstance(value, bool) else [flag, _text(value)]
    if s.warmup is not None:
        warmup = np.format_float_positional(s.warmup, trim="-")
        args += ["--warmup", f"{warmup}e" if s.warmup_epochs else _text(float(s.warmup))]
    params = optim.resolve_spec(spec.optimizer).param
    for name, value in spec.hyperparams:
        if name != "learning_rate" and (name not in params or value != params[name].default):
            args += ["--hp", f"{name}={_text(value)}"]
    return args


def _rounded(value: float) -> float:
    """A suggested new value, to six significant digits (``0.0003 * 10``, not 0.0030000000000000005)."""
    return float(f"{value:.6g}")


def remedy_specs(label: str, spec: TrialSpec) -> list[TrialSpec]:
    """The recipe's next experiments for ``label``, in the recipe's order: each is ``spec`` with
    one remedy applied (switching the optimizer drops the old one's hyperparameters)."""
    return list(trial_list(spec, _remedies(label, spec)))


def _remedies(label: str, spec: TrialSpec) -> list[Variation]:
    """Each remedy of ``label`` as what it changes of ``spec`` (a new rate is rounded to six digits)."""
    lr, m, tr, r = spec.learning_rate, spec.model, spec.train, spec.reg
    replace = dataclasses.replace
    adam = Variation(optimizer="adam", lr=DEFAULTS["adam"]["learning_rate"])
    out: list[Variation] = []
    if label == "diverged":
        out.append(Variation(lr=_rounded(lr / 10)))
        if spec.optimizer != "adam":
            out.append(adam)
        return out
    if label in ("underfitting", "still improving"):
        # SEED.md section 3: hyperparameters (rate, epochs, batch size), activation, optimizer, network, loss.
        out.append(Variation(train=replace(tr, epochs=tr.epochs * 2)))
        if label == "still improving":
            return out
        out.append(Variation(lr=_rounded(lr * 10)))
        if tr.batch_size > 16:
            out.append(Variation(train=replace(tr, batch_size=max(tr.batch_size // 4, 1))))
        if m.activation in ("sigmoid", "tanh", "linear"):
            out.append(Variation(model=replace(m, activation="relu")))
        if spec.optimizer != "adam":
            out.append(adam)
        if len(m.hidden) > 3 and not m.residual:
            out.append(Variation(model=replace(m, residual=True)))
        out.append(Variation(model=replace(m, hidden=tuple(w * 2 for w in m.hidden))))
        if tr.loss == "mse":
            out.append(Variation(train=replace(tr, loss="ce")))
        return out
    if label == "overfitting":
        # SEED.md section 2: early stopping, L1/L2, dropout, more data.
        if not r.early_stopping:
            out.append(Variation(reg=replace(r, early_stopping=True, patience=5)))
        out.append(Variation(reg=replace(r, l2=_rounded(r.l2 * 10) if r.l2 else 1e-4)))
        out.append(Variation(reg=replace(r, l1=_rounded(r.l1 * 10) if r.l1 else 1e-5)))
        out.append(Variation(reg=replace(r, dropout=0.5 if r.dropout < 0.5 else _rounded(min(r.dropout + 0.1, 0.9)))))
        if r.train_fraction < 1:
            out.append(Variation(reg=replace(r, train_fraction=1.0)))
        out.append(Variation(reg=replace(r, augment_noise=0.1)))
    return out


def remedies(label: str, spec: TrialSpec, data: DataConfig | Sequence[str] | None = None) -> list[str]:
    """The recipe's next experiments for ``label`` as shell lines (``shlex.join``, quoted once)."""
    return [shlex.join(command_for(remedy, data)) for remedy in remedy_specs(label, spec)]
