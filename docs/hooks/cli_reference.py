"""mkdocs hook: the CLI reference, generated from the Typer app at every build, so it cannot go stale.

A page that holds the marker line gets it replaced with Typer's own Markdown for the app (what
``typer dnnbench.cli.app utils docs`` prints): every command, its arguments, options and defaults.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    import typer
    from typer.cli import get_docs_for_click

    from dnnbench.cli.app import app

    command = typer.main.get_command(app)
    reference = get_docs_for_click(obj=command, ctx=typer.Context(command), name="dnnbench", indent=1)
    return markdown.replace(MARKER, reference.strip())
