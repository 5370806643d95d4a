"""``dnnbench report --html``: one self-contained HTML page of one or more results files.

``render(sources)`` returns the page as a string; the CLI reads the files with
``results.read_results`` and writes the page with ``output_files.write_atomic``.
Modules: ``sections`` (rows -> labelled summaries via ``dnnbench.analysis.stats``), ``tables``,
``figures`` (matplotlib -> inline SVG), ``plots`` (which curves), ``page`` (assembly, CSS, script).
"""

from dnnbench.render.html.page import Source, render

__all__ = ["Source", "render"]
