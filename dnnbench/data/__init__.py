"""Datasets: load by name or file, validate, split train/validation/test.

``load(DataConfig)`` returns a ``Dataset`` of numpy arrays with samples flattened to vectors.
Image data stays ``uint8`` here; the engine scales it to [0, 1] once it is on the device, so a
dataset the size of MNIST costs a quarter of the host memory a float copy would. The validation
set is carved out of the training data with a fixed permutation (independent of trial seeds, so
every trial validates on the same samples); the test set is never used for any decision.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnbench.config import DataConfig
from dnnbench.data import sources
from dnnbench.errors import InputError, one_of

#: The split permutation's seed: fixed, so the validation set never depends on a trial's seed.
SPLIT_SEED = 20_170_501


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train / validation / test arrays (samples flattened) and what they are."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, int] | None
    source: str

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary (for results headers)."""
        return {
            "name": self.name,
            "source": self.source,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "dtype": str(self.x_train.dtype),
            **self.sizes,
        }


def dataset_names() -> tuple[str, ...]:
    return tuple(sources.CATALOG)


def load(config: DataConfig, *, progress: bool = False) -> Dataset:
    """Load ``config.path`` (an npz file) or the dataset named ``config.dataset``; split it."""
    if config.path is not None:
        raw = sources.load_npz(Path(config.path))
    else:
        name, _, options = config.dataset.partition(":")
        if name not in sources.CATALOG:
            raise one_of("dataset", config.dataset, dataset_names())
        raw = sources.load_named(name, options, data_dir=config.data_dir, verify=config.verify, progress=progress)
    data = split(raw, config.val_split)
    return with_label_noise(data, config.label_noise)


def with_label_noise(data: Dataset, fraction: float) -> Dataset:
    """Replace ``fraction`` of the training labels by a different, random class.

    Validation and test labels stay clean. Noisy labels are what a network can only memorise,
    so they make overfitting -- and what each remedy does against it -- plainly visible.
    """
    if fraction <= 0:
        return data
    rng = np.random.default_rng(SPLIT_SEED + 1)
    y = data.y_train.copy()
    flip = rng.random(len(y)) < fraction
    y[flip] = (y[flip] + rng.integers(1, data.n_classes, flip.sum())) % data.n_classes
    return dataclasses.replace(data, y_train=y.astype(y.dtype), source=f"{data.source} (label noise {fraction:g})")


def split(raw: sources.RawData, val_split: float) -> Dataset:
    """Flatten samples and carve ``val_split`` of the training set out as validation."""
    x_train = raw.x_train.reshape(len(raw.x_train), -1)
    x_test = raw.x_test.reshape(len(raw.x_test), -1)
    n = len(x_train)
    n_val = int(round(val_split * n)) if val_split > 0 else 0
    if val_split > 0 and n_val == 0:
        n_val = 1
    if n - n_val < 1:
        raise InputError(f"val split {val_split} leaves no training samples out of {n}")
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    val_idx, train_idx = np.sort(order[:n_val]), order[n_val:]
    return Dataset(
        name=raw.name,
        x_train=x_train[train_idx],
        y_train=raw.y_train[train_idx],
        x_val=x_train[val_idx],
        y_val=raw.y_train[val_idx],
        x_test=x_test,
        y_test=raw.y_test,
        n_classes=raw.n_classes,
        image_shape=raw.image_shape,
        source=raw.source,
    )


def with_train_fraction(data: Dataset, fraction: float) -> Dataset:
    """The first ``fraction`` of the (already shuffled) training set: a learning-curve point."""
    if fraction >= 1.0:
        return data
    keep = max(1, int(round(fraction * len(data.y_train))))
    return dataclasses.replace(data, x_train=data.x_train[:keep], y_train=data.y_train[:keep])
