"""Datasets: digits offline, splits, synthetic of any shape, npz round trips, and every malformed
npz rejected with a ``DataError`` that names the problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dnnbench import data
from dnnbench.config import DataConfig
from dnnbench.data import sources, split
from dnnbench.errors import DataError, InputError


@pytest.fixture(scope="module")
def digits() -> sources.RawData:
    return sources.load_digits()


def test_digits_loads_offline(digits):
    assert digits.x_train.shape == (1437, 64)
    assert digits.x_test.shape == (360, 64)
    assert digits.n_classes == 10
    assert digits.image_shape == (8, 8)
    assert digits.x_train.dtype == np.float32
    for x in (digits.x_train, digits.x_test):
        assert x.min() == 0.0
        assert x.max() == 1.0
    assert set(np.unique(digits.y_train)) == set(range(10))
    assert set(np.unique(digits.y_test)) == set(range(10))
    assert digits.y_train.dtype.kind == "i"


def test_the_digits_split_is_kept_and_read_back_without_scikit_learn(tmp_path):
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x, y = (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    first = sources.load_digits(str(tmp_path))  # scikit-learn's split, then kept
    (kept,) = (tmp_path / "digits").glob("split-sklearn-*.npz")
    again = sources.load_digits(str(tmp_path))  # read back
    for got in (first, again):
        arrays = (got.x_train, got.y_train, got.x_test, got.y_test)
        for a, b in zip(arrays, (x_train, y_train, x_test, y_test), strict=True):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
    # a second process reads the kept split and never imports scikit-learn (1.9 s of start-up)
    probe = "import sys; from dnnbench.data import sources; sources.load_digits(sys.argv[1])"
    probe += "; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    kept.write_bytes(b"not an npz")  # a damaged file is made again, not trusted
    np.testing.assert_array_equal(sources.load_digits(str(tmp_path)).x_train, x_train)
    assert np.load(kept)["x_train"].shape == (1437, 64)


def test_load_digits_by_name_splits_validation():
    ds = data.load(DataConfig(dataset="digits", val_split=0.1))
    assert ds.sizes == {"train": 1293, "val": 144, "test": 360}
    assert ds.n_features == 64
    assert ds.n_classes == 10


@pytest.mark.parametrize(("val_split", "n_val"), [(0.1, 20), (0.25, 50), (0.5, 100), (0.001, 1)])
def test_val_split_sizes(val_split, n_val):
    raw = sources.load_synthetic(train=200, test=30, features=5, classes=3)
    ds = split(raw, val_split)
    assert len(ds.y_val) == len(ds.x_val) == n_val
    assert len(ds.y_train) == len(ds.x_train) == 200 - n_val
    assert len(ds.y_test) == 30
    # train and validation partition the original training set: no sample lost or duplicated
    rows = np.concatenate([ds.x_train, ds.x_val])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, raw.x_train.tolist()))


def test_val_split_independent_of_anything_but_the_data():
    raw = sources.load_synthetic(train=100, test=10, features=4, classes=2)
    a, b = split(raw, 0.2), split(raw, 0.2)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)


def test_val_split_zero_gives_empty_validation():
    raw = sources.load_synthetic(train=50, test=10, features=6, classes=4)
    ds = split(raw, 0.0)
    assert ds.x_val.shape == (0, 6)
    assert ds.y_val.shape == (0,)
    assert len(ds.y_train) == 50
    np.testing.assert_array_equal(np.sort(ds.y_train), np.sort(raw.y_train))


def test_val_split_leaving_no_training_sample_is_input_error():
    raw = sources.load_synthetic(train=2, test=2, features=3, classes=2)
    with pytest.raises(InputError, match="no training samples"):
        split(raw, 0.9)


@pytest.mark.parametrize(("train", "test", "features", "classes"), [(7, 3, 1, 2), (300, 40, 33, 5), (20, 5, 2, 12)])
def test_synthetic_any_size(train, test, features, classes):
    raw = sources.load_synthetic(train=train, test=test, features=features, classes=classes)
    assert raw.x_train.shape == (train, features)
    assert raw.x_test.shape == (test, features)
    assert raw.y_train.shape == (train,)
    assert raw.n_classes == classes
    assert raw.x_train.dtype == np.float32
    assert np.isfinite(raw.x_train).all()
    for y in (raw.y_train, raw.y_test):
        assert y.min() >= 0
        assert y.max() < classes


def test_synthetic_is_deterministic_per_seed():
    a = sources.load_synthetic(train=40, test=10, features=3, classes=3, seed=1)
    b = sources.load_synthetic(train=40, test=10, features=3, classes=3, seed=1)
    c = sources.load_synthetic(train=40, test=10, features=3, classes=3, seed=2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def test_synthetic_options_by_name():
    ds = data.load(DataConfig(dataset="synthetic:train=60,test=15,features=7,classes=4", val_split=0.0))
    assert ds.sizes == {"train": 60, "val": 0, "test": 15}
    assert ds.n_features == 7
    assert ds.n_classes == 4


@pytest.mark.parametrize("options", ["train=0", "classes=1", "features=x", "bogus=3", "train"])
def test_bad_synthetic_options_are_input_errors(options):
    with pytest.raises(InputError):
        data.load(DataConfig(dataset=f"synthetic:{options}"))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(InputError) as info:
        data.load(DataConfig(dataset="cifar"))
    for name in ("digits", "synthetic", "mnist", "fashion-mnist"):
        assert name in str(info.value)


# ---- npz files


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _valid_arrays(x_dtype=np.uint8, shape=(4, 4)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if np.dtype(x_dtype) == np.uint8:
        x_train = rng.integers(0, 256, (30, *shape), dtype=np.uint8)
        x_test = rng.integers(0, 256, (10, *shape), dtype=np.uint8)
    else:
        x_train = (rng.standard_normal((30, *shape)) * 3).astype(x_dtype)
        x_test = (rng.standard_normal((10, *shape)) * 3).astype(x_dtype)
    y_train = np.arange(30) % 3
    y_test = np.arange(10) % 3
    return {
        "x_train": x_train,
        "y_train": y_train.astype(np.uint8),
        "x_test": x_test,
        "y_test": y_test.astype(np.int64),
    }


def test_npz_uint8_images_round_trip(tmp_path):
    arrays = _valid_arrays(np.uint8, (4, 4))
    raw = sources.load_npz(_npz(tmp_path / "imgs.npz", **arrays))
    assert raw.x_train.dtype == np.uint8  # kept as bytes; scaled on the device
    np.testing.assert_array_equal(raw.x_train, arrays["x_train"])
    np.testing.assert_array_equal(raw.x_test, arrays["x_test"])
    np.testing.assert_array_equal(raw.y_train, arrays["y_train"])
    assert raw.y_train.dtype.kind == "i"
    assert raw.n_classes == 3
    assert raw.image_shape == (4, 4)
    ds = data.load(DataConfig(path=str(tmp_path / "imgs.npz"), val_split=0.0))
    assert ds.x_train.shape == (30, 16)  # images flattened
    assert ds.x_test.shape == (10, 16)
    assert ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(
        np.sort(ds.x_train.sum(axis=1)), np.sort(arrays["x_train"].reshape(30, -1).sum(axis=1))
    )


def test_npz_float_used_as_given(tmp_path):
    arrays = _valid_arrays(np.float64, (5,))
    raw = sources.load_npz(_npz(tmp_path / "f.npz", **arrays))
    assert raw.x_train.dtype == np.float32
    # not rescaled: values outside [0, 1] survive unchanged (up to float32 rounding)
    np.testing.assert_allclose(raw.x_train, arrays["x_train"], rtol=1e-6)
    assert np.abs(raw.x_train).max() > 1.0
    assert raw.image_shape is None
    ds = split(raw, 0.2)
    assert ds.x_train.shape == (24, 5)
    assert ds.x_val.shape == (6, 5)


def test_npz_integer_valued_float_labels_accepted(tmp_path):
    arrays = _valid_arrays(np.float32, (3,))
    arrays["y_train"] = arrays["y_train"].astype(np.float32)
    raw = sources.load_npz(_npz(tmp_path / "fl.npz", **arrays))
    assert raw.y_train.dtype.kind == "i"
    np.testing.assert_array_equal(raw.y_train, np.arange(30) % 3)


def _malformed(name: str) -> dict[str, np.ndarray] | bytes | None:
    arrays = _valid_arrays(np.float32, (3,))
    if name == "missing key":
        del arrays["y_test"]
    elif name == "mismatched lengths":
        arrays["y_train"] = arrays["y_train"][:-1]
    elif name == "nan features":
        arrays["x_train"][3, 1] = np.nan
    elif name == "inf test features":
        arrays["x_test"][0, 0] = np.inf
    elif name == "non-integer labels":
        arrays["y_train"] = arrays["y_train"].astype(np.float32) + 0.5
    elif name == "negative labels":
        arrays["y_test"] = arrays["y_test"] - 1
    elif name == "test of another shape":
        arrays["x_test"] = np.zeros((10, 4), np.float32)
    elif name == "2-d labels":
        arrays["y_train"] = arrays["y_train"].reshape(-1, 1)
    elif name == "string features":
        arrays["x_train"] = np.array(["a"] * 30)
    elif name == "empty":
        arrays["x_test"], arrays["y_test"] = np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
    elif name == "unseen test label":
        arrays["y_test"][0] = 7
    elif name == "random bytes":
        return np.random.default_rng(3).bytes(300)
    elif name == "missing file":
        return None
    return arrays


# problem -> words the message must contain
MALFORMED = {
    "missing file": "no such file",
    "random bytes": "not a readable .npz",
    "missing key": "missing key(s) y_test",
    "mismatched lengths": "x_train has 30 samples but y_train has 29",
    "nan features": "x_train contains NaN",
    "inf test features": "x_test contains NaN or infinite",
    "non-integer labels": "non-integer",
    "negative labels": "negative label -1",
    "test of another shape": "test samples have shape (4,)",
    "2-d labels": "1-D",
    "string features": "numeric",
    "empty": "x_test holds no samples",
    "unseen test label": "never seen in y_train",
}


@pytest.mark.parametrize("problem", sorted(MALFORMED))
def test_malformed_npz_is_data_error_naming_the_problem(tmp_path, problem):
    path = tmp_path / "bad.npz"
    content = _malformed(problem)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        _npz(path, **content)
    with pytest.raises(DataError) as info:
        sources.load_npz(path)
    message = str(info.value)
    assert str(path) in message
    assert MALFORMED[problem] in message
    assert "\n" not in message


def test_directory_is_data_error(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        sources.load_npz(tmp_path)


def test_npy_file_is_data_error(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.zeros((3, 2), np.float32))
    with pytest.raises(DataError, match="npz"):
        sources.load_npz(path)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _labelled(path: Path, stray: int | None = None, n_classes: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    y_train = np.arange(90) % 3
    if stray is not None:
        y_train[5] = stray
    extra = {} if n_classes is None else {"n_classes": np.array(n_classes)}
    np.savez(
        path,
        x_train=rng.normal(size=(90, 4)).astype(np.float32),
        y_train=y_train,
        x_test=rng.normal(size=(12, 4)).astype(np.float32),
        y_test=np.arange(12) % 3,
        **extra,
    )
    return path


@pytest.mark.parametrize("command", ["diagnose", "optimizers", "regularizers"])
def test_a_stray_label_is_refused_and_the_class_count_is_said(tmp_path, command, run):
    small = ["--hidden", "4", "--epochs", "1", "--batch-size", "30", "--seeds", "1"]
    small += ["--methods", "none,l2"] if command == "regularizers" else []
    code, _, err = run(command, "--data", _labelled(tmp_path / "d.npz", stray=99), *small)
    assert code == 2
    assert "labels run 0..99 but 96 of those 100 classes never occur in y_train (e.g. 3, 4, 5, 6, 7)" in err
    assert "store n_classes=100 in the .npz" in err
    code, _, err = run(command, "--data", _labelled(tmp_path / "ok.npz"), *small, "--out", tmp_path / "r.jsonl")
    assert code == 0, err
    assert f"{tmp_path / 'ok.npz'}: 3 classes (labels 0..2), 4 features" in err
    assert _rows(tmp_path / "r.jsonl")[0]["data"]["n_classes"] == 3


def test_a_declared_class_count_keeps_unused_classes(tmp_path, run):
    code, _, err = run(
        "diagnose",
        "--data",
        _labelled(tmp_path / "d.npz", stray=9, n_classes=12),
        "--hidden",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "30",
        "--json",
    )
    assert code == 0, err
    assert "12 classes (labels 0..11)" in err
    code, _, err = run("diagnose", "--data", _labelled(tmp_path / "e.npz", stray=9, n_classes=5), "-q")
    assert code == 2 and "n_classes must be one integer >= the largest label + 1 (10), got 5" in err
