"""Fixtures shared by the tests of several packages: the command line run in this process or as a
program, tiny runs and their results file; the test environment."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnnbench.cli import main
from dnnbench.cli.results import app

# Tests compile afresh (no persistent compilation cache in the user's home; test_runner checks it).
os.environ.setdefault("DNNBENCH_COMPILE_CACHE", "off")


@pytest.fixture()
def cli():
    """Invoke the results commands (check, plot, export, report, profile): their family's own app."""
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


#: A tiny training run's options: 200 synthetic samples of 8 features in 3 classes, one hidden layer of 8,
#: one epoch of 4 batches, no progress.
TINY = (
    "--dataset",
    "synthetic:train=200,test=50,features=8,classes=3",
    "--hidden",
    "8",
    "--epochs",
    "1",
    "--batch-size",
    "50",
    "-q",
)


def _run(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def run():
    """Run ``dnnbench ARGV`` in this process: its exit code, stdout and stderr."""
    return _run


@pytest.fixture(scope="session")
def tiny() -> tuple[str, ...]:
    """A tiny training run's options (``TINY``)."""
    return TINY


@pytest.fixture(scope="session")
def tiny_suite() -> str:
    """A suite of one tiny experiment: sgd and adam compared, as ``TINY`` trains them."""
    return """\
[data]
dataset = "synthetic:train=200,test=50,features=8,classes=3"

[model]
hidden = [8]

[train]
epochs = 1
batch_size = 50

[[experiment]]
kind = "optimizers"
optimizers = ["sgd", "adam"]
"""


@pytest.fixture(scope="session")
def dnnbench_command() -> list[str]:
    """The installed ``dnnbench`` program (or ``python -m dnnbench``), to run as a real process."""
    script = Path(sys.executable).with_name("dnnbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dnnbench"]


@pytest.fixture(scope="module")
def results_file(tmp_path_factory) -> Path:
    """A small finished results file: sgd and adam, one seed, header + 2 trials + summary."""
    path = tmp_path_factory.mktemp("results") / "r.jsonl"
    code, _, err = _run("optimizers", *TINY, "--optimizers", "sgd,adam", "--out", path)
    assert code == 0, err
    return path


@pytest.fixture()
def no_training(monkeypatch):
    """Any training fails the test: a refusal must come before anything trains."""
    from dnnbench.run import runner

    def train(*args, **kwargs):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(runner, "execute", train)
