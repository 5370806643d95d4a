"""Fixtures shared by the tests of the results-file commands; the test environment."""

from __future__ import annotations

import os

import pytest
import typer
from typer.testing import CliRunner

from dnnbench.cli.results import register

# Tests compile afresh (no persistent compilation cache in the user's home; test_runner checks it).
os.environ.setdefault("DNNBENCH_COMPILE_CACHE", "off")


@pytest.fixture()
def cli():
    """Invoke the results commands (check, plot, export, report) on a fresh Typer app."""
    app = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None, add_completion=False)
    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])
