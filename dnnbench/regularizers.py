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

from dnnbench.config import Regularization, TrialSpec
from dnnbench.errors import InputError

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
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
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
