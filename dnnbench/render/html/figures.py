"""Plots of the HTML report as inline SVG, drawn by matplotlib (Agg canvas, never pyplot).

Text stays text (``svg.fonttype = none``: no embedded or external font), the XML prolog, DOCTYPE,
metadata and namespace URLs are stripped, and every ``id`` is prefixed per figure, so many SVGs
live in one HTML document without clashing ids and without a single URL. Colours are the
Okabe–Ito palette (colour-blind safe), and line styles and markers vary too, so no curve is told
apart by colour alone.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = "osD^v<>Ph*"


@dataclass(frozen=True)
class Series:
    """One line: y per x (NaN = no value), an optional ±band and an optional marked point (x, y)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    band: np.ndarray | None = None
    mark: tuple[float, float] | None = None


@dataclass(frozen=True)
class Panel:
    """One axes: a title, axis labels, its series, and whether y (and x) are logarithmic."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    logy: bool = False
    logx: bool = False


def style(index: int) -> dict[str, object]:
    """Colour, line style and marker of the ``index``-th series (the same in every panel)."""
    return {
        "color": PALETTE[index % len(PALETTE)],
        "linestyle": LINESTYLES[(index // len(PALETTE)) % len(LINESTYLES)],
        "marker": MARKERS[index % len(MARKERS)],
    }


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def figure_svg(panels: Sequence[Panel], names: Sequence[str], *, prefix: str, columns: int = 2) -> str:
    """Draw ``panels`` in a grid with one shared legend (``names``, in style order) as an SVG string
    whose ids start with ``prefix`` (unique per figure of a page; the same input gives the same SVG)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    index = {name: i for i, name in enumerate(names)}
    ncols = max(1, min(columns, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    legend_cols = max(1, min(len(names), 4 if max(map(len, names), default=0) <= 18 else 2))
    legend_rows = math.ceil(len(names) / legend_cols)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": prefix, "font.size": 9, "axes.titlesize": 10}):
        fig = Figure(figsize=(5.2 * ncols, 3.1 * nrows + 0.3 + 0.22 * legend_rows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, panel in zip(axes, panels, strict=False):
            for s in panel.series:
                st = style(index[s.name])
                few = len(s.x) <= 30
                ax.plot(
                    s.x,
                    s.y,
                    color=st["color"],
                    linestyle=st["linestyle"],
                    linewidth=1.6,
                    marker=st["marker"] if few else None,
                    markersize=3.5,
                    label=s.name,
                )
                if s.band is not None and np.isfinite(s.band).any():
                    ax.fill_between(s.x, s.y - s.band, s.y + s.band, color=st["color"], alpha=0.15, linewidth=0)
                if s.mark is not None and all(map(math.isfinite, s.mark)):
                    ax.plot(
                        [s.mark[0]],
                        [s.mark[1]],
                        linestyle="none",
                        marker="*",
                        markersize=11,
                        markerfacecolor=st["color"],
                        markeredgecolor="black",
                        markeredgewidth=0.6,
                    )
            values = [_finite(s.y) for s in panel.series]
            finite = np.concatenate(values) if values else np.array([])
            if panel.logy and finite.size and finite.min() > 0:
                ax.set_yscale("log")
            if panel.logx:
                ax.set_xscale("log")
            else:
                ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_title(panel.title)
            ax.set_xlabel(panel.xlabel)
            ax.set_ylabel(panel.ylabel)
            ax.grid(True, alpha=0.3)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        handles: dict[str, Any] = {}  # legend label -> its first artist
        for ax in axes[: len(panels)]:
            for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(name, handle)
        ordered = [n for n in names if n in handles]
        if ordered:
            fig.legend(
                [handles[n] for n in ordered], ordered, loc="outside lower center", ncols=legend_cols, frameon=False
            )
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return inline(buffer.getvalue(), prefix=prefix)


_PROLOG = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_XMLNS = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')


def inline(svg: str, *, prefix: str) -> str:
    """A standalone SVG document made fit for inline HTML: no prolog, DOCTYPE, metadata or
    namespace URLs, ids prefixed with ``prefix``, width and height left to CSS (viewBox kept)."""
    svg = _PROLOG.sub("", svg, count=1)
    svg = _METADATA.sub("", svg)
    svg = _XMLNS.sub("", svg)
    svg = re.sub(r'\bid="', f'id="{prefix}', svg)
    svg = re.sub(r'(xlink:href|href)="#', rf'\1="#{prefix}', svg)
    svg = svg.replace("url(#", f"url(#{prefix}")
    svg = re.sub(r'<svg([^>]*?)\swidth="[^"]*"\sheight="[^"]*"', r"<svg\1", svg, count=1)
    return svg.strip()
