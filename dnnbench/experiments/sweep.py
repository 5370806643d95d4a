"""Sweeps: vary any knob of a trial over a cartesian product of values.

``--vary KEY=V1,V2,...`` names a factor and its levels: a knob of ``FACTORS``, a schedule
number (``warmup``, ``decay_to``, ...), or any optimizer hyperparameter -- ``b1`` (every swept
optimizer that has it) or ``adam.b1`` (that optimizer's trials only). Every combination of levels becomes a
trial per seed, tagged with its levels as JSON scalars (``{"lr": 0.01, "depth": 8, "activation": "relu"}``;
a level that is not one value, ``hidden=8x8`` or ``warmup=2e``, is tagged with its text). Trials whose
levels differ only in numbers (lr, l1, l2, dropout, noise, ...) share a structure and so train
together in one compiled program; for one seed they also share the batch order, and the initial
weights wherever the shapes allow (the initial weights depend on the seed and layer sizes only).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dnnbench import optim
from dnnbench.config import TagValue, TrialSpec, Variation, trial_list
from dnnbench.errors import InputError


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _hidden(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("x"))


def _set_model(field: str) -> Callable[[TrialSpec, Any], TrialSpec]:
    return lambda spec, value: dataclasses.replace(spec, model=dataclasses.replace(spec.model, **{field: value}))


def _set_train(field: str) -> Callable[[TrialSpec, Any], TrialSpec]:
    return lambda spec, value: dataclasses.replace(spec, train=dataclasses.replace(spec.train, **{field: value}))


def _set_reg(field: str) -> Callable[[TrialSpec, Any], TrialSpec]:
    return lambda spec, value: dataclasses.replace(spec, reg=dataclasses.replace(spec.reg, **{field: value}))


def _set_lr(spec: TrialSpec, value: float) -> TrialSpec:
    return dataclasses.replace(spec, hyperparams=(*dict(spec.hyperparams, learning_rate=value).items(),))


def _set_schedule(field: str) -> Callable[[TrialSpec, Any], TrialSpec]:
    def apply(spec: TrialSpec, value: Any) -> TrialSpec:
        changes = {field: value}
        if field == "warmup":  # "0.1" (a fraction of training) or "2e" (epochs)
            changes["warmup"], changes["warmup_epochs"] = value
        return dataclasses.replace(spec, schedule=dataclasses.replace(spec.schedule, **changes))

    return apply


def _warmup(text: str) -> tuple[float | None, bool]:
    from dnnbench.experiments.options import parse_warmup

    try:
        return parse_warmup(text)
    except InputError as exc:
        raise ValueError(str(exc)) from None


def _set_hyperparam(target: str, name: str) -> Callable[[TrialSpec, Any], TrialSpec]:
    """Set hyperparameter ``name`` on trials of ``target`` (every optimizer that has it when ""),
    or of its part ``target`` in a wrapped optimizer (``lookahead.sync_period``, ``adam.b1``)."""

    def apply(spec: TrialSpec, value: str) -> TrialSpec:
        keys = optim.setting_keys(spec.optimizer, target, name)
        if not keys:
            if not target or spec.optimizer != target:
                return spec  # adam.b1 leaves the other optimizers' trials alone; parse_vary checked some has it
            raise InputError(f"optimizer {spec.optimizer!r} has no hyperparameter {name!r}")
        return dataclasses.replace(spec, hyperparams=(*dict(spec.hyperparams, **dict.fromkeys(keys, value)).items(),))

    return apply


def _clip_norm(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "off") else float(text)


def _set_optimizer(spec: TrialSpec, value: str) -> TrialSpec:
    # A new optimizer starts from its own defaults; a swept lr (applied after) overrides them.
    return dataclasses.replace(spec, optimizer=value, hyperparams=())


@dataclass(frozen=True)
class Factor:
    """One sweepable knob: how to parse a level and how to apply it to a trial."""

    parse: Callable[[str], Any]
    apply: Callable[[TrialSpec, Any], TrialSpec]
    help: str
    order: int = 1  # optimizer first, so that a swept lr lands on the swept optimizer


FACTORS: dict[str, Factor] = {
    "optimizer": Factor(str, _set_optimizer, "optimizer name", order=0),
    "lr": Factor(float, _set_lr, "learning rate"),
    "batch_size": Factor(int, _set_train("batch_size"), "minibatch size"),
    "epochs": Factor(int, _set_train("epochs"), "training epochs"),
    "loss": Factor(str, _set_train("loss"), "ce | mse"),
    "activation": Factor(str, _set_model("activation"), "activation function"),
    "hidden": Factor(_hidden, _set_model("hidden"), "hidden widths joined by x, e.g. 500x500"),
    "depth": Factor(int, lambda spec, depth: spec, "number of hidden layers, each --width wide"),
    "residual": Factor(_bool, _set_model("residual"), "true | false"),
    "l1": Factor(float, _set_reg("l1"), "L1 strength"),
    "l2": Factor(float, _set_reg("l2"), "L2 strength"),
    "dropout": Factor(float, _set_reg("dropout"), "dropout rate"),
    "dropout_mode": Factor(str, _set_reg("dropout_mode"), "inverted | scale-at-test"),
    "early_stopping": Factor(_bool, _set_reg("early_stopping"), "true | false"),
    "patience": Factor(int, _set_reg("patience"), "early-stopping patience"),
    "augment_shift": Factor(int, _set_reg("augment_shift"), "pixels"),
    "augment_noise": Factor(float, _set_reg("augment_noise"), "noise std"),
    "train_fraction": Factor(float, _set_reg("train_fraction"), "fraction of the training set"),
    "weight_decay": Factor(float, _set_reg("weight_decay"), "decoupled weight decay (--weight-decay)"),
    "clip_norm": Factor(_clip_norm, _set_reg("clip_norm"), "global gradient norm, or none (--clip-norm)"),
    "schedule": Factor(str, _set_schedule("kind"), "constant | linear | cosine | warmup_cosine | step | exponential"),
    "warmup": Factor(_warmup, _set_schedule("warmup"), "a fraction of training (0.1) or epochs (2e)"),
    "decay_to": Factor(float, _set_schedule("decay_to"), "final factor of the schedule"),
    "step_every": Factor(float, _set_schedule("step_every"), "epochs between steps"),
    "step_factor": Factor(float, _set_schedule("step_factor"), "factor of each step"),
}
_HP_KEY = re.compile(r"(?:(?P<target>.+)\.)?(?P<name>[A-Za-z_]\w*)")


def factor(key: str) -> Factor:
    """The factor ``key`` names: a knob, or an optimizer hyperparameter (``b1``, ``adam.b1``)."""
    if key in FACTORS:
        return FACTORS[key]
    match = _HP_KEY.fullmatch(key)
    if match is None:
        raise InputError(
            f"--vary: unknown key {key!r}; valid keys: {', '.join(FACTORS)}, or an optimizer "
            "hyperparameter (b1, adam.b1)"
        )
    return Factor(str, _set_hyperparam(match["target"] or "", match["name"]), "hyperparameter value")


ALIASES = {
    "learning_rate": "lr",
    "batch-size": "batch_size",
    "train-fraction": "train_fraction",
    "dropout-mode": "dropout_mode",
    "early-stopping": "early_stopping",
    "augment-shift": "augment_shift",
    "augment-noise": "augment_noise",
}


def parse_vary(items: Sequence[str], optimizer: str = "adam") -> dict[str, list[tuple[str, Any]]]:
    """``["lr=0.1,0.01", "activation=relu,sigmoid"]`` -> ``{factor: [(label, value), ...]}``.

    ``optimizer``: the sweep's optimizer when it is not swept; a hyperparameter key must belong
    to it (or to one of the swept optimizers)."""
    factors: dict[str, list[tuple[str, Any]]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if key not in FACTORS and "." in key:  # a file spec in one spelling (./x.py:f.b is x.py:f.b)
            target, _, name = key.rpartition(".")
            key = f"{optim.user.normalized(target)}.{name}"
        if not sep or not values.strip():
            raise InputError(f"--vary expects KEY=V1,V2,..., got {item!r}")
        found = factor(key)
        if key in factors:
            raise InputError(f"--vary names {key!r} twice; give all its values in one --vary")
        levels = []
        for text in (v.strip() for v in values.split(",")):
            text = optim.user.normalized(text) if key == "optimizer" else text
            try:
                levels.append((text, found.parse(text)))
            except ValueError:
                raise InputError(f"--vary {key}: bad value {text!r} ({found.help})") from None
        if len({label for label, _ in levels}) != len(levels):
            raise InputError(f"--vary {key}: repeated value in {values!r}")
        if key == "optimizer":
            for label, _ in levels:
                optim.resolve_spec(label)
        factors[key] = levels
    if not factors:
        raise InputError(f"sweep needs at least one --vary KEY=V1,V2; valid keys: {', '.join(FACTORS)}")
    optimizers = [label for label, _ in factors.get("optimizer", [])] or [optimizer]
    for key in factors:
        target, _, name = key.rpartition(".")
        if key in FACTORS:
            continue
        if not target and not any(optim.setting_keys(o, "", name) for o in optimizers):
            raise InputError(
                f"--vary: unknown key {key!r}, not a hyperparameter of {', '.join(optimizers)} either; "
                f"valid keys: {', '.join(FACTORS)}, or an optimizer hyperparameter (b1, adam.b1)"
            )
        if target:
            from dnnbench.experiments.options import targeted_keys

            targeted_keys(target, name, optimizers, "--vary")
    if "depth" in factors and "hidden" in factors:
        raise InputError("--vary depth and --vary hidden both set the layers; vary one of them")
    _check_repeats(factors, optimizers)
    return factors


def _check_repeats(factors: dict[str, list[tuple[str, Any]]], optimizers: Sequence[str]) -> None:
    """Beside ``--vary optimizer``, a varied hyperparameter must belong to every swept optimizer:
    the trials of one that lacks it would repeat once per level -- identical trials under
    different tags, counted in the main effects."""
    if "optimizer" not in factors:
        return
    for key in factors:
        if key in FACTORS:
            continue
        target, _, name = key.rpartition(".")
        lacking = [o for o in optimizers if not _sets(o, target, name)]
        if lacking:
            raise InputError(
                f"--vary {key} and --vary optimizer: {key} does not apply to {', '.join(lacking)}, whose trials "
                f"would repeat once per {key} value (and count in the main effects); sweep {key} over the "
                "optimizers it applies to"
            )


def _sets(spec: str, target: str, name: str) -> bool:
    """Whether ``[TARGET.]NAME`` names a hyperparameter of optimizer ``spec``: its own ``name``, or
    in a wrapped optimizer its part ``target``'s (``adam.b1`` in ``lookahead(adam)``), or without
    a target any part's."""
    params = optim.resolve_spec(spec).param
    if not target or target == spec:
        return name in params or (not target and any(key.rpartition(".")[2] == name for key in params))
    return f"{target}.{name}" in params


def shadowed(factors: dict[str, list[tuple[str, Any]]], optimizers: Sequence[str]) -> list[str]:
    """The rule for a key that names a training knob and an optimizer's hyperparameter too
    (``warmup``, ``epochs``): it varies the knob; one line per such key, to print."""
    lines = []
    for key in factors:
        if key not in FACTORS or key in ("optimizer", "lr"):
            continue
        having = [o for o in optimizers if _sets(o, "", key)]
        if having:
            lines.append(
                f"--vary {key} varies the training option --{key.replace('_', '-')}, not the hyperparameter "
                f"{key!r} of {', '.join(having)}; vary that one as --vary {having[0]}.{key}=..."
            )
    return lines


def sweep_specs(
    factors: dict[str, list[tuple[str, Any]]],
    base: TrialSpec,
    seeds: Sequence[int],
    width: int,
    lr: float | None = None,
    hyperparams: dict[str, dict[str, Any]] | None = None,
) -> tuple[TrialSpec, ...]:
    """The cartesian product of the factors' levels, every combination once per seed.

    ``hyperparams``: per optimizer, the values ``--hp`` gives it (a swept optimizer gets its own).
    Each spec is validated as it is built (an ``InputError`` names the bad combination).
    """
    names = sorted(factors, key=lambda k: (factor(k).order, list(factors).index(k)))
    specs: list[TrialSpec] = []
    for combo in itertools.product(*(factors[name] for name in names)):
        spec = base
        try:
            for name, (_, value) in zip(names, combo, strict=True):
                if name == "depth":
                    spec = _set_model("hidden")(spec, (width,) * value)
                else:
                    spec = factor(name).apply(spec, value)
                if name == "optimizer":  # its own --hp values, and --lr (for every swept optimizer) unless swept
                    given = Variation(
                        hyperparams=(hyperparams or {}).get(value, {}), lr=None if "lr" in factors else lr
                    )
                    (spec,) = trial_list(spec, [given])
            # re-validate: the hyperparameters of a swept optimizer, the lr on it
            spec = dataclasses.replace(spec)
        except InputError as exc:
            levels = ", ".join(f"{n}={label}" for n, (label, _) in zip(names, combo, strict=True))
            raise InputError(f"--vary combination {levels}: {exc}") from None
        chosen = dict(zip(names, combo, strict=True))
        tags = tuple((name, tag_value(*chosen[name])) for name in factors)
        specs += trial_list(spec, [Variation(tags=tags)], seeds)
    return tuple(specs)


def tag_value(label: str, value: Any) -> TagValue:
    """A level as its trial's tag: the parsed number, flag or name, so rows keep the type; a
    hyperparameter level (parsed per optimizer, so still text here) reads as a number when it is one."""
    if isinstance(value, (bool, int, float)):
        return value
    if not isinstance(value, str):
        return label  # a tuple (hidden 8x8, warmup 2e): its text is the one value that names it
    if re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    try:
        number = float(value)
    except ValueError:
        return {"true": True, "false": False}.get(value.strip().lower(), value)
    return number if math.isfinite(number) else value


def levels_label(trial_tags: dict[str, TagValue], factors: Sequence[str]) -> str:
    return " ".join(f"{name}={trial_tags[name]}" for name in factors)
