"""Fixtures shared by the tests of the results-file commands; the test environment."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from dnnbench.cli.results import app

# Tests compile afresh (no persistent compilation cache in the user's home; test_runner checks it).
os.environ.setdefault("DNNBENCH_COMPILE_CACHE", "off")


@pytest.fixture()
def cli():
    """Invoke the results commands (check, plot, export, report, profile): their family's own app."""
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])
