"""The report's figures: learning curves with seed bands, and learning-rate sensitivity.

Each figure comes with its text alternative: the numbers behind it in a collapsible table.
Statistics per epoch are ``stats.Stat`` over the seeds (``sections.epoch_stats``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

import dnnbench.render.html.figures as figures
import dnnbench.render.html.sections as sections
import dnnbench.render.html.tables as tables
from dnnbench.analysis import stats
from dnnbench.render.html.sections import Section
from dnnbench.results.metrics import CURVES, SENSITIVITY_PLOT, VALIDATION

#: More rows than this: the curves show the best ones (by mean test accuracy), the tables show all.
MAX_CURVES = 10


def _figure(svg: str, caption: str, numbers: str) -> str:
    return (
        f'<figure role="img" aria-label="{escape(caption)}">{svg}<figcaption>{escape(caption)}</figcaption>'
        f"</figure><details><summary>numbers behind the plot</summary>{numbers}</details>"
    )


def _numbers(x_name: str, xs: Sequence[str], columns: dict[str, list[str]]) -> str:
    rows = [
        f"<tr>{tables.cell(x, float(x) if _is_number(x) else None)}"
        + "".join(tables.cell(col[i] if i < len(col) else "–") for col in columns.values())
        + "</tr>"
        for i, x in enumerate(xs)
    ]
    return tables.table([x_name, *columns], rows)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def curves(section: Section, prefix: str) -> str:
    """Train/val loss and accuracy per epoch (and the learning rate under a schedule): one line per
    row, the band ±1 std over seeds, ★ at the row's mean best (restored) epoch."""
    shown = sections.ranked(section, MAX_CURVES)
    metrics = [m for m in CURVES if any(t.history.get(m) for t in section.trials)]
    if sections.uses_schedule(section):
        metrics.append("lr")
    if not metrics or not shown:
        return ""
    names = [s.label for s in shown]
    panels, numbers = [], []
    for metric in metrics:
        series = []
        columns: dict[str, list[str]] = {}
        for s in shown:
            per_epoch = sections.epoch_stats(s, metric)
            if not per_epoch:
                continue
            y = np.array([st.mean for st in per_epoch])
            band = np.array([st.std for st in per_epoch]) if section.seeds > 1 and metric != "lr" else None
            x = np.arange(1, len(y) + 1)
            mark = None
            best = s.stats["best_epoch"].mean
            if metric.startswith("val_") and math.isfinite(best) and 1 <= round(best) <= len(y):
                mark = (float(round(best)), float(y[round(best) - 1]))
            series.append(figures.Series(s.label, x, y, band, mark))
            columns[s.label] = [tables.stat_text(st, 6 if metric == "lr" else 4) for st in per_epoch]
        if not series:
            continue
        finite = np.concatenate([y[np.isfinite(y)] for y in (t.y for t in series)])
        logy = metric == "lr" or (
            metric.endswith("_loss") and finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > 100
        )
        ylabel = "accuracy" if metric.endswith("_acc") else "learning rate" if metric == "lr" else "loss"
        panels.append(figures.Panel(metric.replace("_", " "), "epoch", ylabel, series, logy=logy))
        epochs = max(len(c) for c in columns.values())
        numbers.append(f"<h5>{escape(metric)}</h5>" + _numbers("epoch", [str(e + 1) for e in range(epochs)], columns))
    svg = figures.figure_svg(panels, names, prefix=prefix)
    spread = f"band ±1 std over {section.seeds} seeds" if section.seeds > 1 else "one seed"
    limited = (
        f"; the {len(shown)} best of {len(section.summaries)} rows by test accuracy (all rows in the tables)"
        if len(shown) < len(section.summaries)
        else ""
    )
    caption = f"Learning curves per epoch: mean over seeds, {spread}; ★ = best (restored) epoch{limited}"
    return _figure(svg, caption, "".join(numbers))


def _sensitivity_groups(section: Section) -> dict[str, list[stats.Summary]]:
    groups: dict[str, list[stats.Summary]] = {}
    for s in section.summaries:
        first = s.trials[0]
        if len(s.learning_rates) == 1 and math.isfinite(s.learning_rates[0]):
            groups.setdefault(first.optimizer, []).append(s)
    return {
        k: sorted(v, key=lambda s: s.learning_rates[0])
        for k, v in groups.items()
        if len({s.learning_rates[0] for s in v}) >= 3
    }


def sensitivity(section: Section, prefix: str) -> str:
    """Per optimizer, the metric against the learning rate (log scale), ★ at the best rate."""
    groups = _sensitivity_groups(section)
    covered = sum(len(v) for v in groups.values())
    if not groups or (section.command != "lr-sensitivity" and covered < len(section.summaries)):
        return ""
    config = (section.header or {}).get("config") or {}
    metric = str(config["metric"]) if config.get("metric") in SENSITIVITY_PLOT else "val_acc"
    higher = not metric.endswith("_loss")
    series, columns = [], {}
    grid = sorted({s.learning_rates[0] for v in groups.values() for s in v})
    for name, members in groups.items():
        x = np.array([s.learning_rates[0] for s in members])
        y = np.array([s.stats[metric].mean for s in members])
        band = np.array([s.stats[metric].std for s in members]) if section.seeds > 1 else None
        finite = np.where(np.isfinite(y), y if higher else -y, -np.inf)
        mark = (
            (float(x[int(np.argmax(finite))]), float(y[int(np.argmax(finite))])) if np.isfinite(finite).any() else None
        )
        series.append(figures.Series(name, x, y, band, mark))
        by_lr = {s.learning_rates[0]: tables.stat_text(s.stats[metric]) for s in members}
        columns[name] = [by_lr.get(lr, "–") for lr in grid]
    svg = _log_x_svg(f"{metric.replace('_', ' ')} against the learning rate", "learning rate", metric, series, prefix)
    caption = (
        f"Learning-rate sensitivity: {metric} (mean over seeds; diverged and failed rates are gaps) per "
        "learning rate; ★ = best rate of each optimizer"
    )
    return _figure(svg, caption, _numbers("learning rate", [f"{lr:g}" for lr in grid], columns))


def _log_x_svg(title: str, x_label: str, metric: str, series: list[figures.Series], prefix: str) -> str:
    """One wide plot of ``metric`` against ``x_label`` on a log scale, a line per series (legend in
    their order), as an SVG string."""
    panel = figures.Panel(title, x_label, metric.replace("_", " "), series, logx=True)
    return figures.figure_svg([panel], [line.name for line in series], prefix=prefix, columns=1)


def expected_best(section: Section, prefix: str) -> str:
    """A tune run's expected best validation score after k of its N candidates, per optimizer."""
    from dnnbench.analysis.expected_best import curves

    if not section.search:
        return ""
    config = (section.header or {}).get("config") or {}
    metric = str(config["metric"]) if config.get("metric") in VALIDATION else "val_acc"
    found = curves(
        [
            (r["optimizer"], str(r.get("status")), r.get("metrics") or {}, r.get("hyperparams") or {})
            for r in section.search
        ],
        metric,
    )
    n = max(row["n"] for row in found)
    series = [
        figures.Series(
            row["optimizer"], np.arange(1, len(row["curve"]) + 1, dtype=float), np.asarray(row["curve"], dtype=float)
        )
        for row in found
    ]
    svg = _log_x_svg(
        f"expected best {metric.replace('_', ' ')} after k tries", "k: candidates tried", metric, series, prefix
    )
    columns = {row["optimizer"]: [tables.fmt(v) for v in row["curve"]] for row in found}
    caption = (
        f"Expected best {metric} after k of the N = {n} candidates drawn without replacement (exact order "
        "statistics; k = 1: the mean candidate, k = N: the best); validation set only"
    )
    return _figure(svg, caption, _numbers("k", [str(k) for k in range(1, n + 1)], columns))
