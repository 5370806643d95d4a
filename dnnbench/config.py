"""Frozen, validated configuration: what a trial is, split into static structure and numbers.

A trial's *structure* (layer sizes, activation, optimizer kind, batch size, epochs, ...) decides
the compiled program; its *numbers* (learning rate and other optimizer hyperparameters, seed,
L1/L2 strength, dropout rate, noise, early-stopping patience) are arrays fed to that program, so
trials that differ only in numbers train together under one ``jax.vmap``. ``TrialSpec.structure``
is the grouping key. Every dataclass validates itself on construction and raises ``InputError``
naming the field and the bad value; derive new configs with ``dataclasses.replace``. Every
experiment's trials are one ``trial_list``: a base trial, its ``Variation``s, the seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dnnbench import optim
from dnnbench.errors import InputError, one_of

ACTIVATION_NAMES = ("relu", "sigmoid", "tanh", "gelu", "elu", "leaky_relu", "selu", "swish", "linear")
LOSSES = {
    "ce": "categorical cross-entropy of the softmax output",
    "mse": "mean squared error of the softmax output against the one-hot target",
}
LOSS_ALIASES = {
    "cross-entropy": "ce",
    "crossentropy": "ce",
    "categorical_crossentropy": "ce",
    "mean_squared_error": "mse",
}
#: Early stopping's monitors: ``results.metrics.VALIDATION``, which this bottom layer cannot import (results
#: sits above config); tests/results/test_metrics.py keeps the two equal.
MONITORS = ("val_loss", "val_acc")
MAX_SEED = 2**32 - 1  # seeds travel to the device as uint32
MAX_SEEDS = 10_000
DROPOUT_MODES = ("inverted", "scale-at-test")
PRECISIONS = ("fp32", "bf16")
#: A tag's value: a JSON scalar kept as given, so a sweep's ``depth`` level 8 reads back as 8, not "8".
TagValue = str | int | float | bool


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _finite(name: str, value: Any, lo: float = 0.0, hi: float = math.inf, hi_open: bool = False) -> float:
    """``value`` as a number in [lo, hi] (or [lo, hi)) that float32, the device's type, holds: not
    so large that it overflows, not so small that it becomes 0."""
    number = optim.definition.as_number(value, name)
    if number < lo or number > hi or (hi_open and number >= hi):
        bound = f"[{lo:g}, {hi:g})" if hi_open else f"[{lo:g}, {hi:g}]"
        raise InputError(f"{name} must be in {bound}, got {value!r}")
    return number


def _check_tag(name: Any, value: Any) -> None:
    # a non-finite float would not survive strict JSON; anything else (a tuple, None) has no one column type
    if (
        not isinstance(name, str)
        or not isinstance(value, (str, int, float, bool))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise InputError(f"tag {name!r} must be a string, integer, finite number or true/false, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """The MLP: hidden layer widths, activation, residual skips, matmul precision."""

    hidden: tuple[int, ...] = (500, 500)
    activation: str = "relu"
    residual: bool = False
    precision: str = "fp32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not self.hidden:
            raise InputError("hidden must name at least one layer width, e.g. 500,500")
        for width in self.hidden:
            _positive_int("hidden size", width)
        if self.activation not in ACTIVATION_NAMES:
            raise one_of("activation", self.activation, ACTIVATION_NAMES)
        if self.precision not in PRECISIONS:
            raise one_of("precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class Regularization:
    """The overfitting remedies of the recipe, each off by default.

    ``l1``/``l2`` penalise the weight matrices only (biases are not penalised):
    ``loss + l1 * sum|W| + l2 * sum W^2``. ``dropout`` is the drop probability of every hidden
    layer's inputs. ``early_stopping`` watches ``monitor`` on the validation set after every
    epoch, stops after ``patience`` epochs without an improvement larger than ``min_delta`` and
    restores the best epoch's weights. ``augment_shift`` (pixels, image data only) and
    ``augment_noise`` (std of Gaussian noise) perturb every training batch. ``train_fraction``
    trains on that fraction of the training set.

    Two compositions with any optimizer, per-trial numbers like the rest: ``weight_decay``, decoupled
    decay of the weight matrices after the optimizer's step, ``theta -= lr * weight_decay * theta``
    (``optax.add_decayed_weights`` masked off the biases, as ``optax.adamw``); ``clip_norm``, the
    gradient clipped to that global norm before the optimizer (``optax.clip_by_global_norm``; None:
    not clipped).
    """

    l1: float = 0.0
    l2: float = 0.0
    dropout: float = 0.0
    dropout_mode: str = "inverted"
    early_stopping: bool = False
    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    augment_shift: int = 0
    augment_noise: float = 0.0
    train_fraction: float = 1.0
    weight_decay: float = 0.0
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        _finite("weight decay", self.weight_decay)
        if self.clip_norm is not None and not _finite("clip norm", self.clip_norm) > 0:
            raise InputError(f"clip norm must be a positive number (or unset: no clipping), got {self.clip_norm!r}")
        _finite("l1", self.l1)
        _finite("l2", self.l2)
        _finite("dropout", self.dropout, 0.0, 1.0, hi_open=True)
        if self.dropout_mode not in DROPOUT_MODES:
            raise one_of("dropout mode", self.dropout_mode, DROPOUT_MODES)
        if self.monitor not in MONITORS:
            raise one_of("early-stopping monitor", self.monitor, MONITORS)
        _positive_int("patience", self.patience)
        _finite("min_delta", self.min_delta)
        if isinstance(self.augment_shift, bool) or not isinstance(self.augment_shift, int) or self.augment_shift < 0:
            raise InputError(f"augment shift must be a whole number of pixels >= 0, got {self.augment_shift!r}")
        _finite("augment noise", self.augment_noise)
        if not 0.0 < _finite("train fraction", self.train_fraction, 0.0, 1.0):
            raise InputError(f"train fraction must be in (0, 1], got {self.train_fraction!r}")

    @property
    def numbers(self) -> dict[str, float]:
        """The per-trial numbers the compiled program reads as arrays."""
        return {
            "l1": self.l1,
            "l2": self.l2,
            "dropout": self.dropout,
            "early_stopping": float(self.early_stopping),
            "patience": float(self.patience),
            "min_delta": self.min_delta,
            "augment_noise": self.augment_noise,
            "augment_shift": float(self.augment_shift),
            "weight_decay": self.weight_decay,
            "clip_norm": math.inf if self.clip_norm is None else self.clip_norm,  # inf: the gradient unchanged
        }

    def as_dict(self) -> dict[str, Any]:
        """Its fields; ``weight_decay`` and ``clip_norm`` only when set, so a trial without them has
        the id it had before they existed."""
        out = dataclasses.asdict(self)
        for key, off in (("weight_decay", 0.0), ("clip_norm", None)):
            if out[key] == off:
                del out[key]
        return out


@dataclass(frozen=True)
class TrainConfig:
    """How long and in what steps to train, and on which loss."""

    epochs: int = 20
    batch_size: int = 100
    loss: str = "ce"
    #: Training metrics are measured in test mode on this many training samples (0 = all). The
    #: training set is shuffled once at the split, so they are a fixed random subset; 10,000 keep
    #: the accuracy's standard error near 0.3% while a 60,000-sample set costs 6x fewer passes.
    train_eval_samples: int = 10_000

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _positive_int("batch size", self.batch_size)
        if (
            isinstance(self.train_eval_samples, bool)
            or not isinstance(self.train_eval_samples, int)
            or self.train_eval_samples < 0
        ):
            raise InputError(f"train eval samples must be an integer >= 0 (0 = all), got {self.train_eval_samples!r}")
        loss = LOSS_ALIASES.get(self.loss, self.loss)
        if loss not in LOSSES:
            raise one_of("loss", self.loss, LOSSES)
        object.__setattr__(self, "loss", loss)


@dataclass(frozen=True)
class Structure:
    """Everything that decides the compiled program: trials with equal structures share one."""

    optimizer: str  # the optimizer spec (a built-in name, an optax name, file.py:factory, ...)
    hyperparam_names: tuple[str, ...]  # its numbers (vmapped), learning rate first
    optimizer_static: tuple[tuple[str, Any], ...]  # its static settings (part of the program)
    schedule: str  # the schedule's kind; its numbers are per trial
    model: ModelConfig
    train: TrainConfig
    dropout_mode: str
    monitor: str
    train_fraction: float


@dataclass(frozen=True)
class TrialSpec:
    """One trial: an optimizer with its hyperparameters and schedule, a seed, a model, a training
    plan, regularizers.

    ``optimizer`` is any optimizer spec (``dnnbench.optim``); ``hyperparams`` may name any of its
    hyperparameters and are completed with the spec's defaults. ``tags`` are free labels carried
    into the results row with their JSON types (e.g. ``{"regularizer": "l2", "depth": 8}``); they
    are part of the trial's id.
    """

    optimizer: str = "adam"
    hyperparams: tuple[tuple[str, Any], ...] = ()
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    reg: Regularization = field(default_factory=Regularization)
    tags: tuple[tuple[str, TagValue], ...] = ()
    schedule: optim.Schedule = field(default_factory=optim.Schedule)

    def __post_init__(self) -> None:
        object.__setattr__(self, "optimizer", optim.user.normalized(self.optimizer))  # one spelling, one id
        given = dict(self.hyperparams)
        lr = given.pop("learning_rate", None)
        full = optim.resolve(self.optimizer, lr, **given)
        object.__setattr__(self, "hyperparams", tuple(full.items()))
        self.schedule.check_epochs(self.train.epochs)
        object.__setattr__(self, "tags", tuple(dict(self.tags).items()))
        for name, value in self.tags:
            _check_tag(name, value)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")

    @property
    def learning_rate(self) -> float:
        return dict(self.hyperparams)["learning_rate"]

    @property
    def structure(self) -> Structure:
        opt = optim.resolve_spec(self.optimizer)
        values = dict(self.hyperparams)
        return Structure(
            optimizer=self.optimizer,
            hyperparam_names=tuple(opt.numbers(values)),
            optimizer_static=tuple(opt.static(values).items()),
            schedule=self.schedule.kind,
            model=self.model,
            train=self.train,
            dropout_mode=self.reg.dropout_mode,
            monitor=self.reg.monitor,
            train_fraction=self.reg.train_fraction,
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description: the full config of this trial."""
        return {
            "optimizer": self.optimizer,
            "hyperparams": dict(self.hyperparams),
            "seed": self.seed,
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "regularization": self.reg.as_dict(),
            "tags": dict(self.tags),
            "schedule": dataclasses.asdict(self.schedule),
        }


@dataclass(frozen=True)
class Variation:
    """What one entry of a trial list changes of the list's base trial (None: the base's).

    ``optimizer``: a new optimizer, which starts from its defaults. ``hyperparams``: the trial's
    values, completed by the optimizer's defaults (None: the base's values, or with a new optimizer
    its defaults); ``lr`` is set on top of them. ``tags`` follow the base's (a repeated name takes
    the variation's value).
    """

    optimizer: str | None = None
    lr: float | None = None
    hyperparams: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None
    model: ModelConfig | None = None
    train: TrainConfig | None = None
    reg: Regularization | None = None
    schedule: optim.Schedule | None = None
    tags: tuple[tuple[str, TagValue], ...] = ()


def trial_list(
    base: TrialSpec, variations: Iterable[Variation], seeds: Iterable[int] | None = None
) -> tuple[TrialSpec, ...]:
    """Every variation of ``base`` on every seed (``None``: the base's), variation by variation,
    the seeds innermost: the one order of every experiment's trials, so that a seed's trials stay
    paired (same initial weights, same batches) across whatever the variations change. Each trial
    is built -- and validated -- once."""
    seeds = (base.seed,) if seeds is None else tuple(seeds)
    out = []
    for variation in variations:
        changes = _changes(base, variation)
        out += [dataclasses.replace(base, **changes, seed=seed) for seed in seeds]
    return tuple(out)


def _changes(base: TrialSpec, v: Variation) -> dict[str, Any]:
    """The fields of ``base`` that ``v`` replaces, as ``dataclasses.replace`` takes them."""
    out = {k: value for k in ("optimizer", "model", "train", "reg", "schedule") if (value := getattr(v, k)) is not None}
    if v.optimizer is not None or v.hyperparams is not None or v.lr is not None:
        kept = base.hyperparams if v.optimizer is None else ()
        values = dict(kept if v.hyperparams is None else v.hyperparams)
        if v.lr is not None:
            values["learning_rate"] = v.lr
        out["hyperparams"] = tuple(values.items())
    if v.tags:
        out["tags"] = (*base.tags, *v.tags)
    return out


@dataclass(frozen=True)
class DataConfig:
    """Which data, and how much of the training set is held out for validation."""

    dataset: str = "digits"
    path: str | None = None
    val_split: float = 0.1
    data_dir: str | None = None
    verify: bool = True
    label_noise: float = 0.0  # fraction of TRAINING labels replaced by another class (fixed seed)

    def __post_init__(self) -> None:
        _finite("val split", self.val_split, 0.0, 1.0, hi_open=True)
        _finite("label noise", self.label_noise, 0.0, 1.0, hi_open=True)
