"""The command line: the Typer app (``app.py``) and one module per command family."""

from dnnbench.cli.app import main, run

__all__ = ["main", "run"]
