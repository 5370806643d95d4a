"""The overfitting remedies of the recipe (SEED.md section 2) as named comparison methods.

``dnnbench regularizers`` trains the same task, seeds and initial weights once per method. Every
method is a ``Regularization`` derived from the same base, so the methods differ only in numbers
(L1/L2 strength, dropout rate, noise, shift, early-stopping flag) and train together in ONE
compiled program. ``augment`` is random shifts + Gaussian noise on image data and noise alone on
feature vectors. The command's data defaults (``DIGITS_DEMO``: label noise, half the training set)
make the lesson visible on the bundled digits, and apply to nothing else: other data are used as
given unless asked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dnnbench.config import DataConfig, Regularization, TrialSpec, Variation, trial_list
from dnnbench.errors import InputError
from dnnbench.experiments.job import Job

METHODS = ("none", "l1", "l2", "dropout", "early_stopping", "augment", "all")


@dataclass(frozen=True)
class DemoData:
    """What ``dnnbench regularizers`` does to the bundled digits unless told otherwise."""

    label_noise: float = 0.2
    train_fraction: float = 0.5


DIGITS_DEMO = DemoData()


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
    return Strengths(
        l1=reg.l1,
        l2=reg.l2,
        dropout=reg.dropout,
        patience=reg.patience,
        augment_shift=reg.augment_shift,
        augment_noise=reg.augment_noise,
    )


def method_regularization(method: str, base: Regularization, s: Strengths) -> Regularization:
    """``base`` with the remedy ``method`` switched on at strength ``s``."""
    plain = dataclasses.replace(
        base, l1=0.0, l2=0.0, dropout=0.0, early_stopping=False, augment_shift=0, augment_noise=0.0
    )
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
        return dataclasses.replace(
            plain,
            l2=s.l2,
            dropout=s.dropout,
            early_stopping=True,
            patience=s.patience,
            augment_shift=s.augment_shift,
            augment_noise=s.augment_noise,
        )
    raise InputError(f"unknown regularizer {method!r}; valid: {', '.join(METHODS)}")


def parse_methods(text: str | None) -> list[str]:
    """``--methods`` (comma-separated); by default every method."""
    if text is None:
        return list(METHODS)
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


def method_specs(
    methods: Sequence[str], base: TrialSpec, seeds: Sequence[int], strengths: Strengths
) -> tuple[TrialSpec, ...]:
    """One trial per method and seed, tagged ``regularizer=<method>`` (after the base's tags)."""
    variations = (
        Variation(reg=method_regularization(m, base.reg, strengths), tags=(("regularizer", m),)) for m in methods
    )
    return trial_list(base, variations, seeds)


def comparison_specs(
    job: Job,
    methods: str | None,
    optimizer: str,
    lr: float | None,
    hyperparams: dict[str, Any] | None = None,
    strengths: Strengths | None = None,
) -> tuple[list[str], Strengths, tuple[TrialSpec, ...]]:
    """``dnnbench regularizers``' trials: the methods, their strengths and one trial per method
    and seed. ``strengths``: exactly these (the CLI, whose option defaults are ``Strengths()``, so
    an explicit 0 is kept); by default those of ``job.reg``, a 0 there meaning the default (a
    suite's ``[regularization]``, whose own defaults are 0). On feature vectors the default shift
    is 0 (augment = noise); a shift asked for there is an error."""
    image_like = image_data(job.data)
    names = parse_methods(methods)
    if strengths is None:
        r, default = job.reg, Strengths()
        strengths = Strengths(
            l1=r.l1 or default.l1,
            l2=r.l2 or default.l2,
            dropout=r.dropout or default.dropout,
            patience=r.patience,
            augment_shift=r.augment_shift or (default.augment_shift if image_like else 0),
            augment_noise=r.augment_noise or default.augment_noise,
        )
    if strengths.augment_shift and not image_like and {"augment", "all"} & set(names):
        raise InputError(
            f"augment shift {strengths.augment_shift} needs image data, and "
            f"{job.data.path or job.data.dataset} holds feature vectors; leave --augment-shift out "
            f"(augment is then noise only)"
        )
    base = job.trial(optimizer, lr, hyperparams)
    if "early_stopping" in names or "all" in names:
        if job.data.val_split == 0:
            raise InputError("early stopping needs a validation set; use --val-split > 0 or leave it out of --methods")
    return names, strengths, method_specs(names, base, job.seeds, strengths)


def image_data(data: DataConfig) -> bool:
    """Whether the data are single-channel images (augmentation by shifts makes sense). An .npz
    is judged by the shape in its ``x_train`` header (not loaded); an unreadable one counts as
    images, so that loading it gives its own, clearer error."""
    if data.path:
        shape = _npz_shape(data.path)
        return shape is None or len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)
    return data.dataset.split(":")[0] in ("digits", "mnist", "fashion-mnist")


def _npz_shape(path: str) -> tuple[int, ...] | None:
    import zipfile

    from numpy.lib import format as npy

    try:
        with zipfile.ZipFile(path) as archive, archive.open("x_train.npy") as member:
            version = npy.read_magic(member)
            read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            return tuple(read(member)[0])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def augment_note(strengths: Strengths, image_like: bool) -> str:
    """What ``augment`` did, for the table's caption."""
    if image_like:
        return f"augment = random shifts of up to {strengths.augment_shift} px + noise std {strengths.augment_noise:g}"
    return f"augment = noise std {strengths.augment_noise:g} (feature vectors: no shifts)"


def data_note(job: Job) -> str:
    """One line: what was done to the training data (label noise, fraction), and why."""
    noise, fraction = job.data.label_noise, job.reg.train_fraction
    where = job.data.path or job.data.dataset
    if noise == 0 and fraction == 1:
        return f"Training data: {where} as given (no label noise, the full training set)."
    done = ([f"{noise:g} of its training labels replaced by a wrong class"] if noise else []) + (
        [f"training on a {fraction:g} fraction of its training set"] if fraction < 1 else []
    )
    demo = (
        job.data.path is None
        and job.data.dataset == "digits"
        and (noise, fraction) == (DIGITS_DEMO.label_noise, DIGITS_DEMO.train_fraction)
    )
    why = (
        (
            " (the digits demo's defaults, to make overfitting visible; --label-noise 0 --train-fraction 1 "
            "for the data as given)"
        )
        if demo
        else ""
    )
    return f"Training data: {where} with {' and '.join(done)}{why}."
