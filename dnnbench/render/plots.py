"""Learning curves from results rows: a PNG/SVG/PDF figure, or a plain-text chart for a terminal.

One panel per metric, one line per label (optimizer + tag values + swept config, see
``export.label``): the mean over seeds with a shaded min–max band, epochs numbered from 1.
Matplotlib is driven through ``Figure`` and the Agg canvas, never pyplot, so plotting is headless
and leaves the caller's global matplotlib state (backend, open figures) alone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dnnbench.analysis import export
from dnnbench.errors import DataError, InputError, printable
from dnnbench.results import files as output_files
from dnnbench.results.metrics import CURVES, PLOTTABLE

Row = dict[str, Any]

SUFFIXES = (".png", ".svg", ".pdf")
MARKERS = "*o+x#@%&=~"


def curves(rows: Sequence[Row], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Per label: (mean, min, max) over seeds at each epoch, and the number of seeds.

    Trials may stop at different epochs (early stopping) or hold nulls (divergence): each epoch
    averages the seeds that have a finite value there, and is NaN where none has.
    """
    if metric not in PLOTTABLE:
        raise InputError(f"cannot plot {metric!r}; valid: {', '.join(PLOTTABLE)}")
    if not rows:
        raise DataError("no trials to plot")
    export.require(rows)
    out = {}
    for name, members in export.group(rows).items():
        series = [[export.number(v) for v in (r.get("history") or {}).get(metric) or []] for r in members]
        length = max((len(s) for s in series), default=0)
        if length == 0:
            continue
        table = np.full((len(series), length), np.nan)
        for i, s in enumerate(series):
            table[i, : len(s)] = s
        with np.errstate(all="ignore"):
            seen = np.isfinite(table).any(axis=0)
            safe = np.where(np.isfinite(table), table, np.nan)
            mean = np.array([np.nanmean(c) if k else np.nan for c, k in zip(safe.T, seen, strict=True)])
            low = np.array([np.nanmin(c) if k else np.nan for c, k in zip(safe.T, seen, strict=True)])
            high = np.array([np.nanmax(c) if k else np.nan for c, k in zip(safe.T, seen, strict=True)])
        out[name] = (mean, low, high, len(members))
    if not out:
        raise DataError(f"no trial has a {metric} history")
    return out


def _dataset(header: Row | None) -> str:
    header = header or {}
    return str(
        (header.get("data") or {}).get("name")
        or ((header.get("config") or {}).get("data") or {}).get("dataset")
        or "results"
    )


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in SUFFIXES:
        raise InputError(f"--out {out}: the file name must end in {', '.join(SUFFIXES)}")
    if out.is_dir():
        raise InputError(f"--out {out}: is a directory")


def plot_curves(rows: Sequence[Row], out: Path, *, metrics: Sequence[str] = CURVES, header: Row | None = None) -> Path:
    """Draw ``metrics`` per epoch, one panel each, and write the figure to ``out`` atomically.

    The format follows the suffix (.png, .svg, .pdf); ``header`` (the results file's first line)
    names the dataset in the title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    _check_out(out)
    metrics = list(dict.fromkeys(metrics)) or list(CURVES)
    data = {m: curves(rows, m) for m in metrics}
    labels = list(dict.fromkeys(name for per in data.values() for name in per))
    colors = {name: f"C{i % 10}" for i, name in enumerate(labels)}
    styles = {name: ("-", "--", ":", "-.")[(i // 10) % 4] for i, name in enumerate(labels)}
    # Curves often coincide (a weak regularizer changes nothing): earlier series are drawn wider
    # with bigger markers of their own shape, so a curve hidden under another still shows.
    spread = {name: (len(labels) - 1 - i) / max(len(labels) - 1, 1) for i, name in enumerate(labels)}
    shapes = {name: "os^Dv<>PXh"[i % 10] for i, name in enumerate(labels)}
    alpha = 0.18 if len(labels) <= 3 else 0.10

    ncols = 1 if len(metrics) == 1 else 2
    nrows = math.ceil(len(metrics) / ncols)
    legend_cols = max(1, min(len(labels), 5 if max(map(len, labels), default=0) <= 16 else 3))
    fig = Figure(
        figsize=(6.0 * ncols, 3.8 * nrows + 0.6 + 0.25 * math.ceil(len(labels) / legend_cols)),
        layout="constrained",
        dpi=110,
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        per = data[metric]
        for name, (mean, low, high, _) in per.items():
            epochs = np.arange(1, len(mean) + 1)
            ax.plot(
                epochs,
                mean,
                color=colors[name],
                linestyle=styles[name],
                linewidth=1.3 + 1.5 * spread[name],
                marker=shapes[name] if len(mean) <= 40 else None,
                markersize=3.5 + 4 * spread[name],
                markerfacecolor="none" if spread[name] > 0 else colors[name],
                label=name,
            )
            ax.fill_between(epochs, low, high, color=colors[name], alpha=alpha, linewidth=0)
        finite = np.concatenate([v[0][np.isfinite(v[0])] for v in per.values()])
        if metric.endswith("_loss") and finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
            ax.set_yscale("log")  # a diverging trial would flatten every other curve
        ax.set_title(metric.replace("_", " "))
        # step_loss is the mean minibatch objective of the epoch: dropout on, L1/L2 penalty included.
        ax.set_xlabel("epoch" if metric != "step_loss" else "epoch (mean minibatch objective)")
        ax.set_ylabel("accuracy" if metric.endswith("_acc") else "loss")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    seeds = max(n for per in data.values() for *_, n in per.values())
    band = f"mean over {seeds} seeds, band = min–max" if seeds > 1 else "one seed"
    fig.suptitle(f"{_dataset(header)}: learning curves ({band})", fontweight="bold")
    legend: dict[str, Any] = {}
    for ax in axes[: len(metrics)]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(name, handle)
    names = list(legend)
    fig.legend(list(legend.values()), names, loc="outside lower center", ncols=legend_cols, frameon=False)
    return _save(fig, out)


def _save(fig: Any, out: Path) -> Path:
    """Write ``fig`` to ``out`` atomically in its suffix's format. Its text (labels from files) is
    shown as written: control characters escaped (an SVG cannot hold them), ``$`` not mathtext."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_text(printable(text.get_text()))
        text.set_parse_math(False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=out.suffix[1:].lower())
    output_files.write_atomic(out, buffer.getvalue())
    return out


def terminal_curves(rows: Sequence[Row], metric: str = "val_acc", width: int = 60, height: int = 15) -> str:
    """A plain-text chart of ``metric`` per epoch: one marker character per label, then a legend."""
    if width < 10 or height < 3:
        raise InputError(f"terminal chart needs width >= 10 and height >= 3, got {width}x{height}")
    per = curves(rows, metric)
    finite = np.concatenate([v[0][np.isfinite(v[0])] for v in per.values()])
    if finite.size == 0:
        raise DataError(f"no finite {metric} value to plot")
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    epochs = max(len(v[0]) for v in per.values())
    grid = [[" "] * width for _ in range(height)]
    for k, (mean, *_rest) in enumerate(per.values()):
        mark = MARKERS[k % len(MARKERS)]
        # One point per column, linearly interpolated between epochs, so a line of markers is drawn.
        xs = np.linspace(1, epochs, width)
        known = np.isfinite(mean)
        points = np.arange(1, len(mean) + 1)[known]
        for col, x in enumerate(xs):
            if not points.size or x < points.min() - 1e-9 or x > points.max() + 1e-9:
                continue
            y = float(np.interp(x, points, mean[known]))
            row = round((hi - y) / (hi - lo) * (height - 1))
            grid[row][col] = mark
    ticks = {0: hi, (height - 1) // 2: (hi + lo) / 2, height - 1: lo}
    lines = [f"{metric} per epoch (mean over seeds)"]
    for r, cells in enumerate(grid):
        axis = f"{ticks[r]:>9.4g} ┤" if r in ticks else f"{'':>9} │"
        lines.append(axis + "".join(cells).rstrip())
    lines.append(f"{'':>9} └" + "─" * width)
    right = f"epoch {epochs}"
    lines.append(f"{'':>11}1{right:>{width - 1}}")
    for k, (name, (*_, n)) in enumerate(per.items()):
        lines.append(f"  {MARKERS[k % len(MARKERS)]} {printable(name)} ({n} seed{'s' if n != 1 else ''})")
    return "\n".join(lines)


def _single_axes(out: Path) -> tuple[Any, Any]:
    """A one-panel figure for ``out`` (checked first): the figure and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_out(out)
    fig = Figure(figsize=(6.5, 4.2), layout="constrained", dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _finish(fig: Any, ax: Any, out: Path, title: str) -> Path:
    """Grid, legend and title, then write the figure to ``out`` atomically in its suffix's format."""
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    fig.suptitle(title, fontweight="bold")
    return _save(fig, out)


def plot_profiles(profiles: Sequence[Any], taus: Sequence[float] | np.ndarray, out: Path, *, title: str) -> Path:
    """Performance profiles (``dnnbench.analysis.profiles``): rho(tau) per optimizer as steps, one figure."""
    out = Path(out)
    fig, ax = _single_axes(out)
    for i, profile in enumerate(profiles):
        ax.step(
            taus,
            profile.rho,
            where="post",
            color=f"C{i % 10}",
            linestyle=("-", "--", ":", "-.")[(i // 10) % 4],
            linewidth=1.8,
            label=f"{profile.label} (score {profile.score:.2f})",
        )
    ax.set_xlim(taus[0], taus[-1])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("τ: steps to target within a factor τ of the fastest")
    ax.set_ylabel("fraction of tasks")
    return _finish(fig, ax, out, title)


def plot_expected_best(curves: Sequence[dict[str, Any]], out: Path, *, metric: str, title: str) -> Path:
    """``dnnbench plot --budget``: each optimizer's expected best ``metric`` after k tries."""
    out = Path(out)
    fig, ax = _single_axes(out)
    for i, row in enumerate(curves):
        k = np.arange(1, len(row["curve"]) + 1)
        ax.plot(
            k,
            row["curve"],
            color=f"C{i % 10}",
            marker="os^Dv<>PXh"[i % 10],
            markersize=4,
            linewidth=1.8,
            label=row["optimizer"],
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k: tries (candidates) spent")
    ax.set_ylabel(f"expected best {metric.replace('_', ' ')}")
    return _finish(fig, ax, out, title)
