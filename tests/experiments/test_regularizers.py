"""The regularizers comparison (``experiments/regularizers.py``): user data untouched unless asked,
every method on any data (augment is shift + noise on images, noise on feature vectors), explicit
strengths kept. Each run is tiny: the tests are about what was applied and which methods ran."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SMALL = ["--hidden", "8", "--epochs", "1", "--seeds", "1", "--batch-size", "20", "-q"]
SYNTHETIC = "synthetic:train=200,test=50,features=8,classes=3"
ALL_METHODS = ["none", "l1", "l2", "dropout", "early_stopping", "augment", "all"]
SMALL_REG = ["--dataset", SYNTHETIC, "--hidden", "8", "--epochs", "1", "--seeds", "1", "--json", "-q"]


def _npz(path: Path, shape: tuple[int, ...], n_train: int = 120, n_test: int = 40, classes: int = 3) -> Path:
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, classes, n_train), rng.integers(0, classes, n_test)
    if len(shape) == 1:  # 1-D signals: a class-dependent bump plus noise, float32
        t = np.linspace(0, 1, shape[0])
        make = lambda y: (
            np.exp(-((t[None] - 0.2 - 0.3 * y[:, None]) ** 2) / 0.01)  # noqa: E731
            + 0.1 * rng.normal(size=(len(y), shape[0]))
        ).astype(np.float32)
    else:  # images: uint8 like MNIST
        make = lambda y: rng.integers(0, 256, (len(y), *shape), dtype=np.uint8)  # noqa: E731
    np.savez(path, x_train=make(y_train), y_train=y_train, x_test=make(y_test), y_test=y_test)
    return path


def _regularizers(run, tmp_path: Path, *argv: object) -> tuple[str, dict, list[dict]]:
    """Run ``dnnbench regularizers`` with ``argv``: its stdout, results header and trial rows."""
    out = tmp_path / "r.jsonl"
    code, stdout, err = run("regularizers", *SMALL, *argv, "--out", out, "--force")
    assert code == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return stdout, lines[0], [r for r in lines if r["type"] == "trial"]


def _applied(header: dict) -> tuple[float, float]:
    """(label noise, train fraction) as the results header records them."""
    return header["config"]["data"]["label_noise"], header["config"]["reg"]["train_fraction"]


# ---- explicit values are kept (--lr and --hidden: tests/optim)


@pytest.mark.parametrize(
    ("option", "method", "field"), [("--l2", "l2", "l2"), ("--dropout", "dropout", "dropout"), ("--l1", "l1", "l1")]
)
def test_an_explicit_zero_strength_is_kept(option, method, field, run):
    code, out, err = run("regularizers", *SMALL_REG, option, "0", "--methods", method)
    assert code == 0, err
    header, trial = (json.loads(line) for line in out.splitlines()[:2])
    assert header["config"]["strengths"][field] == 0.0
    assert trial["config"]["regularization"][field] == 0.0


def test_regularizers_help_shows_the_real_defaults_and_methods_twice_is_an_error(run):
    code, out, _ = run("regularizers", "--help")
    assert code == 0
    text = " ".join(out.split())
    for option, default in (("--l1", "0.0001"), ("--l2", "0.001"), ("--dropout", "0.5")):
        assert f"{option} <float>" in text and f"[default: {default}]" in text.split(f"{option} <float>")[1][:200]
    for methods, words in (("l2,l2", "--methods names l2 more than once"), ("l2,,l1", "has an empty name")):
        code, _, err = run("regularizers", *SMALL_REG, "--methods", methods)
        assert code == 2 and words in err


# ---- user data is never altered unless asked


def test_the_digits_demo_keeps_its_noise_and_fraction_and_says_so(tmp_path, run):
    stdout, header, rows = _regularizers(run, tmp_path, "--methods", "none")
    assert _applied(header) == (0.2, 0.5)
    assert rows[0]["config"]["regularization"]["train_fraction"] == 0.5
    flat = " ".join(stdout.split())  # the note wraps to the terminal
    assert flat.startswith(
        "Training data: digits with 0.2 of its training labels replaced by a wrong class and training "
        "on a 0.5 fraction of its training set (the digits demo's defaults, to make overfitting visible; "
        "--label-noise 0 --train-fraction 1 for the data as given)."
    )


@pytest.mark.parametrize("data", ["synthetic", "npz"])
def test_other_data_are_used_as_given_unless_asked(tmp_path, data, run):
    source = ["--dataset", SYNTHETIC] if data == "synthetic" else ["--data", _npz(tmp_path / "signals.npz", (40,))]
    stdout, header, _ = _regularizers(run, tmp_path, *source, "--methods", "none")
    assert _applied(header) == (0.0, 1.0)
    assert "as given (no label noise, the full training set)." in " ".join(stdout.split())  # wrapped to the terminal
    stdout, header, _ = _regularizers(
        run, tmp_path, *source, "--methods", "none", "--label-noise", "0.1", "--train-fraction", "0.5"
    )
    assert _applied(header) == (0.1, 0.5)
    assert "with 0.1 of its training labels replaced by a wrong class and training on a 0.5 fraction" in " ".join(
        stdout.split()
    )
    assert "demo" not in " ".join(stdout.split()).split("Regularizers")[0]


def test_explicit_values_on_digits_are_kept_too(tmp_path, run):
    stdout, header, _ = _regularizers(run, tmp_path, "--methods", "none", "--label-noise", "0", "--train-fraction", "1")
    assert _applied(header) == (0.0, 1.0)
    assert " ".join(stdout.split()).startswith(
        "Training data: digits as given (no label noise, the full training set)."
    )


def test_help_says_the_demo_defaults_are_for_digits_only(run):
    code, stdout, _ = run("regularizers", "--help")
    assert code == 0
    text = " ".join(stdout.split())
    assert "On the bundled digits demo only" in text
    assert (
        "On any other data (--data, synthetic, mnist, ...) the defaults are no label noise and the full training set"
        in text
    )


# ---- regularizers on any data: augment is shift + noise on images, noise on feature vectors


@pytest.mark.parametrize(
    ("data", "image"), [("digits", True), ("mnist-shaped", True), ("signals", False), ("synthetic", False)]
)
def test_every_default_method_runs_on_any_data(tmp_path, data, image, run):
    source = {
        "digits": [],
        "synthetic": ["--dataset", SYNTHETIC],
        "mnist-shaped": ["--data", _npz(tmp_path / "m.npz", (28, 28))],
        "signals": ["--data", _npz(tmp_path / "s.npz", (40,))],
    }[data]
    stdout, header, rows = _regularizers(run, tmp_path, *source)
    assert [r["regularizer"] for r in rows] == ALL_METHODS
    assert all(r["status"] == "ok" for r in rows)
    augment = next(r for r in rows if r["regularizer"] == "augment")["config"]["regularization"]
    assert (augment["augment_shift"], augment["augment_noise"]) == ((1, 0.05) if image else (0, 0.05))
    caption = (
        "augment = random shifts of up to 1 px + noise std 0.05"
        if image
        else "augment = noise std 0.05 (feature vectors: no shifts)"
    )
    assert caption in stdout


def test_an_explicit_shift_on_feature_vectors_is_an_error(tmp_path, run):
    signals = _npz(tmp_path / "s.npz", (40,))
    code, _, err = run("regularizers", *SMALL, "--data", signals, "--augment-shift", "1")
    assert code == 2
    assert err.strip() == (
        f"dnnbench: error: augment shift 1 needs image data, and {signals} holds feature vectors; "
        "leave --augment-shift out (augment is then noise only)"
    )
    code, _, err = run("regularizers", *SMALL, "--dataset", SYNTHETIC, "--augment-shift", "2", "--methods", "all")
    assert code == 2 and "augment shift 2 needs image data" in err
    # Without augment among the methods the shift is unused: no error.
    code, _, err = run("regularizers", *SMALL, "--data", signals, "--augment-shift", "1", "--methods", "l2")
    assert code == 0, err
