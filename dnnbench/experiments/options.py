"""Option parsing: command-line text -> validated values and a ``Job``. No Typer here, no JAX work.

The Typer layer (``cli``) hands the raw option values over; everything that needs more than a
type conversion -- comma lists, ``name=value`` pairs, ``2e`` warmups -- is parsed here, once,
with one ``InputError`` naming the option and the bad text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dnnbench import optim
from dnnbench.analysis import targets
from dnnbench.config import MAX_SEED, MAX_SEEDS, DataConfig, ModelConfig, Regularization, TrainConfig
from dnnbench.errors import InputError
from dnnbench.experiments import regularizers
from dnnbench.experiments.job import HpSetting, Job
from dnnbench.run.backends import Settings as BackendSettings


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """``--dataset``, ``--data``, ``--data-dir``, ``--no-verify``, ``--val-split``, ``--label-noise``
    as given (``label_noise`` None: the command's "not given", see ``job_from_cli``)."""

    dataset: str
    data: Path | None
    data_dir: Path | None
    no_verify: bool
    val_split: float
    label_noise: float | None


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """``--hidden`` (text: ``500,500``), ``--activation``, ``--residual``, ``--precision`` as given."""

    hidden: str
    activation: str
    residual: bool
    precision: str


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """How the trials train (schedule included) and where, and what they record: the options as given."""

    loss: str
    epochs: int
    batch_size: int
    train_eval_samples: int
    seeds: int
    seed: int
    max_parallel: int | None
    workers: int | None
    hp: Sequence[str] | None
    schedule: str
    warmup: str | None  # text: 0.1 (a fraction of training) or 2e (epochs)
    decay_to: float | None
    step_every: float | None
    step_factor: float
    target: str | None
    backend: str
    ray_address: str | None
    ray_max_retries: int


@dataclasses.dataclass(frozen=True)
class RegOptions:
    """The regularization options as given (``augment_shift`` and ``train_fraction`` None: the
    command's "not given", see ``job_from_cli``)."""

    l1: float
    l2: float
    dropout: float
    dropout_mode: str
    early_stopping: bool
    monitor: str
    patience: int
    min_delta: float
    augment_shift: int | None
    augment_noise: float
    train_fraction: float | None
    weight_decay: float
    clip_norm: float | None


def job_from_cli(
    *,
    data: DataOptions,
    model: ModelOptions,
    train: TrainOptions,
    reg: RegOptions,
    schedule_varied: bool = False,
) -> Job:
    """The ``Job`` of the shared options of every training command, checked in one order (the first
    bad option is the one named). ``None`` is a command's "not given": a ``label_noise`` or
    ``train_fraction`` is then the digits demo's on the bundled digits and none (the data as given)
    on any other data; an ``augment_shift`` is the regularizers' default on image data and 0 on
    feature vectors. ``schedule_varied``: ``sweep --vary schedule=...`` (see ``make_schedule``)."""
    demo = regularizers.DIGITS_DEMO if data.data is None and data.dataset == "digits" else None
    label_noise = data.label_noise
    if label_noise is None:
        label_noise = demo.label_noise if demo else 0.0
    train_fraction = reg.train_fraction
    if train_fraction is None:
        train_fraction = demo.train_fraction if demo else 1.0
    seeds, seed = train.seeds, train.seed
    if not 0 < seeds <= MAX_SEEDS:
        raise InputError(f"seeds must be a positive integer up to {MAX_SEEDS}, got {seeds}")
    if not 0 <= seed or seed + seeds - 1 > MAX_SEED:
        raise InputError(f"seeds {seed}..{seed + seeds - 1} must lie in [0, {MAX_SEED}]")
    if train.max_parallel is not None and train.max_parallel <= 0:
        raise InputError(f"max parallel must be a positive integer, got {train.max_parallel}")
    if train.workers is not None and train.workers <= 0:
        raise InputError(f"workers must be a positive integer, got {train.workers}")
    train_config = TrainConfig(
        epochs=train.epochs, batch_size=train.batch_size, loss=train.loss, train_eval_samples=train.train_eval_samples
    )
    sched = make_schedule(
        train.schedule, train.warmup, train.decay_to, train.step_every, train.step_factor, kind_varied=schedule_varied
    )
    sched.check_epochs(train_config.epochs)
    data_config = DataConfig(
        dataset=data.dataset,
        path=str(data.data) if data.data else None,
        val_split=data.val_split,
        data_dir=str(data.data_dir) if data.data_dir else None,
        verify=not data.no_verify,
        label_noise=label_noise,
    )
    augment_shift = reg.augment_shift
    if augment_shift is None:
        augment_shift = regularizers.Strengths().augment_shift if regularizers.image_data(data_config) else 0
    return Job(
        data=data_config,
        model=ModelConfig(
            hidden=parse_hidden(model.hidden),
            activation=model.activation,
            residual=model.residual,
            precision=model.precision,
        ),
        train=train_config,
        # RegOptions holds Regularization's fields as given: only the two "not given"s are decided here
        reg=Regularization(
            **{**dataclasses.asdict(reg), "augment_shift": augment_shift, "train_fraction": train_fraction}
        ),
        seeds=tuple(range(seed, seed + seeds)),
        max_parallel=train.max_parallel,
        workers=train.workers,
        schedule=sched,
        hp=parse_hp(train.hp or ()),
        target=targets.parse_target(train.target),
        backend=BackendSettings(train.backend, train.ray_address, train.ray_max_retries),
    )


def parse_hidden(text: str) -> tuple[int, ...]:
    """``--hidden 500,500`` -> ``(500, 500)``; an empty part (``16,,16``) is an error, not skipped."""
    parts = [part.strip() for part in text.split(",")]
    if not all(re.fullmatch(r"\d+", part) for part in parts):
        raise InputError(f"--hidden must be comma-separated positive integers like 500,500, got {text!r}")
    return tuple(int(part) for part in parts)


def parse_names(text: str, what: str = "optimizers") -> list[str]:
    """A comma-separated list of names (``--optimizers``); each is named once (a file spec in one
    spelling: ``./x.py:f`` is ``x.py:f``)."""
    names = [optim.user.normalized(n.strip()) for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(f"--{what} names nothing")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"--{what} names {', '.join(repeated)} twice")
    return names


#: ``--optimizers all``: every optimizer that runs here (``optim.every``).
ALL = "all"


def check_optimizers(names: Sequence[str]) -> list[str]:
    """Each optimizer spec resolved (loaded, its signature read) -- an ``InputError`` for the first
    that cannot be. ``all`` stands for every optimizer that runs here, in ``optim.every``'s order;
    names given beside it run too, in their place (``all,optax.adam``), each spec once."""
    if ALL in names:
        runnable, _ = optim.every()
        names = list(dict.fromkeys(spec for name in names for spec in (runnable if name == ALL else (name,))))
    for name in names:
        optim.resolve_spec(name)
    return list(names)


def parse_lr(text: str | None, optimizers: Sequence[str]) -> dict[str, float | None]:
    """``--lr``: one number for all (``0.01``) or per optimizer (``adam=1e-3,sgd=0.1``).

    Two numbers for all (``1,2``) or two for one optimizer (``adam=1,adam=2``) are errors: which
    one was meant is not ours to guess.
    """
    lrs: dict[str, float | None] = dict.fromkeys(optimizers)
    if text is None or not text.strip():
        return lrs
    seen: set[str] = set()
    items = [item.strip() for item in text.split(",")]
    for item in items:
        name, sep, value = item.rpartition("=")
        name = optim.user.normalized(name.strip())
        if sep and name not in optimizers:
            raise InputError(f"--lr names optimizer {name!r}, which is not being run ({', '.join(optimizers)})")
        if not sep and len(items) > 1:
            raise InputError(
                f"--lr {text!r}: give one number for every optimizer or name=number pairs (adam=1e-3,sgd=0.1)"
            )
        key = name if sep else "*"
        if key in seen:
            raise InputError(f"--lr gives {name!r} two learning rates" if sep else "--lr gives two learning rates")
        seen.add(key)
        try:
            number = optim.definition.as_number(value, "--lr")
        except InputError:
            raise InputError(f"--lr expects a number or name=number, got {item!r}") from None
        if not number > 0:
            raise InputError(f"--lr: a learning rate must be positive, got {number!r}")
        for target in [name] if sep else optimizers:
            lrs[target] = number
    return lrs


def parse_hp(items: Sequence[str]) -> tuple[HpSetting, ...]:
    """``--hp b1=0.95`` (every optimizer that has b1) / ``--hp adam.b1=0.95`` (one optimizer).

    The optimizer part may itself hold dots (``optax.adam.b1``, ``my_opt.py:make.b1``); the
    hyperparameter is the part after the last dot. Values stay text until the optimizer's
    signature says their type (``apply_hp``).
    """
    out: list[HpSetting] = []
    for item in items:
        target, name, value = optim.split_setting(item, "--hp", "NAME=VALUE or OPTIMIZER.NAME=VALUE")
        if any(t == target and n == name for t, n, _ in out):
            raise InputError(f"--hp sets {target + '.' if target else ''}{name} twice")
        out.append((target, name, value))
    return tuple(out)


def apply_hp(hp: Sequence[HpSetting], optimizers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per optimizer, the hyperparameters ``--hp`` gives it.

    An untargeted setting applies to every optimizer whose signature has that name and must
    apply to at least one; a targeted one must name an optimizer of the run that has it, or a part
    of a wrapped one (``lookahead.sync_period`` and ``adam.b1`` set ``lookahead(adam)``'s).
    """
    out: dict[str, dict[str, Any]] = {name: {} for name in optimizers}
    targeted: list[tuple[str, str, Any]] = []
    for target, name, value in hp:
        if name == "learning_rate":
            raise InputError("--hp learning_rate: set learning rates with --lr")
        if target:
            for spec, key in targeted_keys(target, name, optimizers, "--hp"):
                targeted.append((spec, key, value))
            continue
        having = [(spec, key) for spec in optimizers for key in optim.setting_keys(spec, "", name)]
        if not having:
            raise InputError(f"--hp {name}: none of {', '.join(optimizers)} has a hyperparameter {name!r}")
        for spec, key in having:
            out[spec].setdefault(key, value)
    # targeted settings win over untargeted ones, whatever their order on the command line
    for spec, key, value in targeted:
        out[spec][key] = value
    return out


def targeted_keys(target: str, name: str, optimizers: Sequence[str], option: str) -> list[tuple[str, str]]:
    """(optimizer, hyperparameter) pairs that ``TARGET.NAME`` sets: ``name`` of optimizer ``target``,
    and ``target.name`` of every wrapped optimizer with such a part. ``InputError`` when none."""
    if target in optimizers and name not in optim.resolve_spec(target).param:
        valid = ", ".join(optim.resolve_spec(target).param) or "none besides learning_rate"
        raise InputError(f"{option} {target}.{name}: {target} has no hyperparameter {name!r}; valid: {valid}")
    found = [(spec, key) for spec in optimizers for key in optim.setting_keys(spec, target, name)]
    if found:
        return found
    for spec in optimizers:  # a part of a wrapped optimizer, but not one of its settings
        part = [key for key in optim.resolve_spec(spec).param if key.startswith(f"{target}.")]
        if part:
            raise InputError(
                f"{option} {target}.{name}: {spec} has no hyperparameter {target}.{name}; valid: {', '.join(part)}"
            )
    raise InputError(f"{option} {target}.{name}: optimizer {target!r} is not being run ({', '.join(optimizers)})")


def parse_warmup(text: str | None) -> tuple[float | None, bool]:
    """``--warmup 0.1`` (a fraction of training) or ``--warmup 2e`` (epochs) -> (value, in_epochs)."""
    if text is None or not text.strip():
        return None, False
    text = text.strip()
    epochs = re.fullmatch(r"(\d+(?:\.\d*)?)\s*e(?:pochs?)?", text)
    if epochs:
        return float(epochs.group(1)), True
    try:
        return float(text), False
    except ValueError:
        raise InputError(f"--warmup expects a fraction of training (0.1) or epochs (2e), got {text!r}") from None


#: The schedule kinds each option shapes (``--warmup`` shapes every kind).
SHAPED_BY = {
    "decay_to": ("linear", "cosine", "warmup_cosine", "exponential"),
    "step_every": ("step",),
    "step_factor": ("step",),
}


def make_schedule(
    kind: str,
    warmup: str | float | None,
    decay_to: float | None,
    step_every: float | None,
    step_factor: float,
    kind_varied: bool = False,
) -> optim.Schedule:
    """The ``Schedule`` of ``--schedule`` and its options (``--warmup`` may be text: ``2e``). An
    option the kind ignores (``--decay-to`` with ``constant``) is an error naming both, unless the
    kind is varied (``sweep --vary schedule=...``: the option is for the kinds that use it)."""
    given = {"decay_to": decay_to is not None, "step_every": step_every is not None, "step_factor": step_factor != 0.1}
    for option, kinds in SHAPED_BY.items():
        if given[option] and not kind_varied and kind not in kinds:
            raise InputError(
                f"--{option.replace('_', '-')} and --schedule {kind}: a {kind} schedule has no "
                f"{option.replace('_', ' ')} (it shapes {', '.join(kinds)}); drop one of them"
            )
    value, in_epochs = parse_warmup(warmup) if isinstance(warmup, str) or warmup is None else (float(warmup), False)
    return optim.Schedule(
        kind=kind,
        warmup=value,
        warmup_epochs=in_epochs,
        decay_to=decay_to,
        step_every=step_every,
        step_factor=step_factor,
    )
