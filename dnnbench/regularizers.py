"""The overfitting remedies of the recipe (SEED.md section 2) as named comparison methods.

``dnnbench regularizers`` trains the same task, seeds and initial weights once per method. Every
method is a ``Regularization`` derived from the same base, so the methods differ only in numbers
(L1/L2 strength, dropout rate, noise, shift, early-stopping flag) and train together in ONE
compiled program. The defaults below are chosen so that the lesson is visible on digits: with a
quarter of the training set and 40 epochs the unregularized network overfits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dnnbench.config import Regularization, TrialSpec
from dnnbench.errors import InputError
from dnnbench.job import Job

METHODS = ("none", "l1", "l2", "dropout", "early_stopping", "augment", "all")
IMAGE_ONLY = ("augment",)


@dataclass(frozen=True)
class Strengths:
    """The strength each method uses (``all`` combines l2, dropout, early stopping, augment)."""

    l1: float = 1e-4
    l2: float = 1e-3
    dropout: float = 0.5
    patience: int = 5
    augment_shift: int = 1
    augment_noise: float = 0.05


def given_strengths(reg: Regularization) -> Strengths:
    """The strengths exactly as given in ``reg`` (0 included)."""
    return Strengths(l1=reg.l1, l2=reg.l2, dropout=reg.dropout, patience=reg.patience,
                     augment_shift=reg.augment_shift, augment_noise=reg.augment_noise)


def method_regularization(method: str, base: Regularization, s: Strengths) -> Regularization:
    """``base`` with the remedy ``method`` switched on at strength ``s``."""
    plain = dataclasses.replace(base, l1=0.0, l2=0.0, dropout=0.0, early_stopping=False,
                                augment_shift=0, augment_noise=0.0)
    if method == "none":
        return plain
    if method == "l1":
        return dataclasses.replace(plain, l1=s.l1)
    if method == "l2":
        return dataclasses.replace(plain, l2=s.l2)
    if method == "dropout":
        return dataclasses.replace(plain, dropout=s.dropout)
    if method == "early_stopping":
        return dataclasses.replace(plain, early_stopping=True, patience=s.patience)
    if method == "augment":
        return dataclasses.replace(plain, augment_shift=s.augment_shift, augment_noise=s.augment_noise)
    if method == "all":
        return dataclasses.replace(plain, l2=s.l2, dropout=s.dropout, early_stopping=True, patience=s.patience,
                                   augment_shift=s.augment_shift, augment_noise=s.augment_noise)
    raise InputError(f"unknown regularizer {method!r}; valid: {', '.join(METHODS)}")


def parse_methods(text: str | None, image_like: bool) -> list[str]:
    """``--methods`` (comma-separated); by default every method, ``augment`` only for images."""
    if text is None:
        return [m for m in METHODS if image_like or m not in IMAGE_ONLY]
    given = [n.strip() for n in text.split(",")]
    if "" in given and any(given):
        raise InputError(f"--methods {text!r} has an empty name; separate names with single commas")
    names = list(dict.fromkeys(n for n in given if n))
    twice = sorted({n for n in names if given.count(n) > 1})
    if twice:
        raise InputError(f"--methods names {', '.join(twice)} more than once")
    if not names:
        raise InputError(f"--methods names nothing; valid: {', '.join(METHODS)}")
    for name in names:
        if name not in METHODS:
            raise InputError(f"unknown regularizer {name!r}; valid: {', '.join(METHODS)}")
    return names


def method_specs(methods: Sequence[str], base: TrialSpec, seeds: Sequence[int], strengths: Strengths,
                 image_like: bool) -> tuple[TrialSpec, ...]:
    """One trial per method and seed, tagged ``regularizer=<method>``."""
    specs = []
    for method in methods:
        reg = method_regularization(method, base.reg, strengths)
        if not image_like and reg.augment_shift:
            reg = dataclasses.replace(reg, augment_shift=0, augment_noise=reg.augment_noise or strengths.augment_noise)
        for seed in seeds:
            specs.append(dataclasses.replace(base, seed=seed, reg=reg, tags=(("regularizer", method),)))
    return tuple(specs)


def comparison_specs(job: Job, methods: str | None, optimizer: str, lr: float | None,
                     hyperparams: dict[str, Any] | None = None, strengths: Strengths | None = None,
                     ) -> tuple[list[str], Strengths, tuple[TrialSpec, ...]]:
    """``dnnbench regularizers``' trials: the methods, their strengths and one trial per method
    and seed. ``strengths``: exactly these (the CLI, whose option defaults are ``Strengths()``, so
    an explicit 0 is kept); by default those of ``job.reg``, a 0 there meaning the default (a
    suite's ``[regularization]``, whose own defaults are 0)."""
    image_like = image_data(job)
    names = parse_methods(methods, image_like)
    if strengths is None:
        r, default = job.reg, Strengths()
        strengths = Strengths(
            l1=r.l1 or default.l1, l2=r.l2 or default.l2, dropout=r.dropout or default.dropout,
            patience=r.patience, augment_shift=r.augment_shift or default.augment_shift,
            augment_noise=r.augment_noise or default.augment_noise,
        )
    base = job.trial(optimizer, lr, hyperparams)
    if "early_stopping" in names or "all" in names:
        if job.data.val_split == 0:
            raise InputError("early stopping needs a validation set; use --val-split > 0 or leave it out of --methods")
    return names, strengths, method_specs(names, base, job.seeds, strengths, image_like)


def image_data(job: Job) -> bool:
    """Whether the data are single-channel images (augmentation by shifts makes sense)."""
    if job.data.path:
        return True  # checked against the loaded data by the engine; a clear error if not
    name = job.data.dataset.split(":")[0]
    return name in ("digits", "mnist", "fashion-mnist")
