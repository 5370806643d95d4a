"""Where data comes from: the bundled digits, generated synthetic data, npz files, MNIST.

Each source returns ``RawData``: unsplit train/test arrays with integer labels. Validation of
user files happens here and raises ``DataError`` naming the file and the problem.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnnbench.errors import DataError, InputError

#: name -> what ``dnnbench datasets`` shows. Sizes of digits are after its fixed 80/20 split.
CATALOG: dict[str, dict[str, Any]] = {
    "digits": {
        "input_shape": (8, 8),
        "classes": 10,
        "train": 1437,
        "test": 360,
        "source": "scikit-learn's bundled UCI handwritten digits (load_digits)",
        "offline": True,
    },
    "synthetic": {
        "input_shape": ("features",),
        "classes": "classes",
        "train": "train",
        "test": "test",
        "source": "generated: Gaussian class clusters (synthetic:train=N,test=N,features=D,classes=C,seed=S)",
        "offline": True,
    },
    "mnist": {"input_shape": (28, 28), "classes": 10, "train": 60000, "test": 10000, "offline": False},
    "fashion-mnist": {"input_shape": (28, 28), "classes": 10, "train": 60000, "test": 10000, "offline": False},
}

#: 4 GB of float32: more than any test or benchmark needs, less than a crash.
MAX_SYNTHETIC_VALUES = 1_000_000_000
SYNTHETIC_DEFAULTS = {"train": 2000, "test": 500, "features": 64, "classes": 10, "seed": 0}


@dataclass(frozen=True, eq=False)
class RawData:
    """Unsplit data: samples of any shape, integer labels ``0..n_classes-1``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, int] | None
    source: str


def load_named(
    name: str, options: str = "", *, data_dir: str | None = None, verify: bool = True, progress: bool = False
) -> RawData:
    """Load the catalogued dataset ``name``; ``options`` are ``key=value`` pairs (synthetic only)."""
    if name == "digits":
        _no_options(name, options)
        return load_digits(data_dir)
    if name == "synthetic":
        return load_synthetic(**_parse_options(options))
    _no_options(name, options)
    import dnnbench.data.mnist as mnist  # lazy: pooch is only needed for downloads

    x_train, y_train, x_test, y_test = mnist.load_mnist_like(
        name, Path(data_dir) if data_dir else None, verify=verify, progress=progress
    )
    return RawData(name, x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32), 10, (28, 28), name)


def _no_options(name: str, options: str) -> None:
    if options:
        raise InputError(f"dataset {name!r} takes no options, got {options!r}")


def _parse_options(options: str) -> dict[str, int]:
    parsed: dict[str, int] = {}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in SYNTHETIC_DEFAULTS:
            raise InputError(f"bad synthetic option {item!r}; use key=value with keys {', '.join(SYNTHETIC_DEFAULTS)}")
        try:
            parsed[key] = int(value)
        except ValueError:
            raise InputError(f"synthetic option {key} must be an integer, got {value!r}") from None
    return parsed


def load_digits(data_dir: str | None = None) -> RawData:
    """scikit-learn's 1797 real 8x8 handwritten digits, scaled to [0, 1], split 80/20 stratified.

    The split arrays are kept in the data directory (one file per scikit-learn version), because
    importing scikit-learn costs more than the rest of a digits run's start-up (1.9 s of 10 s on
    the 2-core machine); the file holds exactly what scikit-learn's split gives.
    """
    info = CATALOG["digits"]
    cache = _digits_cache(data_dir)
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as f:
                x_train, y_train, x_test, y_test = (f[key] for key in _DIGITS_KEYS)
            if [len(x_train), len(y_train), len(x_test), len(y_test)] == [info["train"]] * 2 + [info["test"]] * 2:
                return RawData("digits", x_train, y_train, x_test, y_test, 10, (8, 8), info["source"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable: made again below
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    if cache is not None:
        from dnnbench.data.mnist import write_quietly

        npz = io.BytesIO()
        np.savez(npz, **dict(zip(_DIGITS_KEYS, (x_train, y_train, x_test, y_test), strict=True)))
        write_quietly(cache, npz.getvalue())
    return RawData("digits", x_train, y_train, x_test, y_test, 10, (8, 8), info["source"])


_DIGITS_KEYS = ("x_train", "y_train", "x_test", "y_test")  # RawData's order


def _digits_cache(data_dir: str | None) -> Path | None:
    """Where the digits split is kept: ``<data dir>/digits/split-sklearn-<version>.npz``."""
    from importlib import metadata

    from dnnbench.data.mnist import default_data_dir

    try:
        version = metadata.version("scikit-learn")
        return Path(data_dir or default_data_dir()).expanduser() / "digits" / f"split-sklearn-{version}.npz"
    except (metadata.PackageNotFoundError, OSError, RuntimeError):
        return None


def load_synthetic(train: int = 2000, test: int = 500, features: int = 64, classes: int = 10, seed: int = 0) -> RawData:
    """Gaussian class clusters: learnable but not trivially separable, any size and dimension.

    Each class has a random centre; samples are centre + isotropic noise whose scale makes the
    classes overlap a little, so accuracy climbs over several epochs instead of jumping to 1.
    """
    for key, value in {"train": train, "test": test, "features": features, "classes": classes}.items():
        if value <= 0:
            raise InputError(f"synthetic {key} must be a positive integer, got {value}")
    if classes < 2:
        raise InputError(f"synthetic classes must be at least 2, got {classes}")
    if seed < 0:
        raise InputError(f"synthetic seed must be >= 0, got {seed}")
    if (train + test) * features > MAX_SYNTHETIC_VALUES:
        raise InputError(
            f"synthetic data of {train + test} x {features} values is too large "
            f"(at most {MAX_SYNTHETIC_VALUES:,} values)"
        )
    rng = np.random.default_rng(seed)
    # Unit noise per feature; centres about 4 noise-stds apart whatever the dimension, so two
    # classes overlap by ~2% and a good classifier lands near 90% rather than at 100%.
    centres = (rng.standard_normal((classes, features)) * (4.0 / np.sqrt(2.0 * features))).astype(np.float32)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n).astype(np.int32)
        x = centres[y] + rng.standard_normal((n, features), dtype=np.float32)
        return x, y

    x_train, y_train = sample(train)
    x_test, y_test = sample(test)
    source = f"synthetic:train={train},test={test},features={features},classes={classes},seed={seed}"
    return RawData("synthetic", x_train, y_train, x_test, y_test, classes, None, source)


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: Path) -> RawData:
    """A Keras-layout npz (``x_train``, ``y_train``, ``x_test``, ``y_test``), validated.

    Samples of any shape are flattened later; uint8 samples are scaled to [0, 1] on the device,
    float samples are used as given; labels must be integers ``0..C-1``.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an .npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # an .npy holds one bare array
            raise DataError(f"{path}: a single array (.npy), expected an .npz archive with {', '.join(NPZ_KEYS)}")
        with loaded as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)}; an npz needs {', '.join(NPZ_KEYS)}")
            arrays = {key: archive[key] for key in NPZ_KEYS}
            declared = archive["n_classes"] if "n_classes" in archive.files else None
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc.__class__.__name__}: {exc})") from None
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 1 or len(x) == 0:
            raise DataError(f"{path}: x_{split} holds no samples")
        if y.ndim != 1:
            raise DataError(f"{path}: y_{split} must be a 1-D array of integer labels, got shape {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{path}: x_{split} has {len(x)} samples but y_{split} has {len(y)} labels")
        if x.dtype.kind not in "uif" or x.dtype == np.bool_:
            raise DataError(f"{path}: x_{split} must be numeric, got dtype {x.dtype}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{path}: x_{split} contains NaN or infinite values")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: test samples have shape {x_test.shape[1:]}, train samples {x_train.shape[1:]}")
    y_train, y_test, n_classes = _integer_labels(path, arrays["y_train"], arrays["y_test"], declared)
    if x_train.dtype != np.uint8:  # (float32 already: not copied again; 0.48 s of an MNIST-sized file)
        x_train, x_test = x_train.astype(np.float32, copy=False), x_test.astype(np.float32, copy=False)
    image_shape = tuple(x_train.shape[1:3]) if x_train.ndim in (3, 4) else None
    return RawData(path.stem, x_train, y_train, x_test, y_test, n_classes, image_shape, str(path))


def _integer_labels(
    path: Path, y_train: np.ndarray, y_test: np.ndarray, declared: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """The labels as int32 and the class count: ``declared`` (the file's ``n_classes``) or the
    largest label + 1, in which case every class below it must occur in y_train -- a gap is most
    likely a stray label (one 99 among 0..2 would otherwise make a 100-class model)."""
    labels = []
    for split, y in (("train", y_train), ("test", y_test)):
        if y.dtype.kind not in "uif" or y.dtype == np.bool_:
            raise DataError(f"{path}: y_{split} must hold integer labels, got dtype {y.dtype}")
        if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DataError(f"{path}: y_{split} must hold integer labels 0..C-1, found non-integer values")
        if (y < 0).any():
            raise DataError(f"{path}: y_{split} has negative label {int(y.min())}; labels must be 0..C-1")
        labels.append(y.astype(np.int32))
    n_classes = int(max(labels[0].max(), labels[1].max())) + 1
    if (extra := np.setdiff1d(labels[1], labels[0])).size:
        raise DataError(f"{path}: y_test has label(s) {extra[:5].tolist()} never seen in y_train")
    if declared is not None:
        if declared.shape != () or declared.dtype.kind not in "ui" or not n_classes <= int(declared) <= 1_000_000:
            raise DataError(
                f"{path}: n_classes must be one integer >= the largest label + 1 ({n_classes}), "
                f"got {declared.tolist()!r}"
            )
        n_classes = int(declared)
    elif (gaps := np.setdiff1d(np.arange(n_classes), labels[0])).size:
        raise DataError(
            f"{path}: labels run 0..{n_classes - 1} but {gaps.size} of those {n_classes} classes never "
            f"occur in y_train (e.g. {', '.join(map(str, gaps[:5].tolist()))}); a stray label? Fix the "
            f"labels, or store n_classes={n_classes} in the .npz to train with unused classes"
        )
    if n_classes < 2:
        raise DataError(f"{path}: labels name only one class; need at least 2")
    return labels[0], labels[1], n_classes
