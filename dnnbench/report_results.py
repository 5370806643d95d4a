"""Rendering for the commands that read results files: rich tables of a check and of a results file.

Reads ``CheckReport`` and ``export.GroupSummary`` objects and computes nothing. Kept apart from
``dnnbench.report`` so these commands start without importing the training stack.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich.console import Console, ConsoleOptions
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from dnnbench.checking import CheckReport
from dnnbench.export import GroupSummary
from dnnbench.stats import Stat

VERDICT_STYLE = {"ok": "", "better": "green", "new": "cyan", "worse": "bold red", "uncertain": "yellow",
                 "newly diverged": "bold red", "error": "bold red", "missing": "bold red", "lost value": "bold red"}
LABEL_STYLE = {"good fit": "green", "overfitting": "yellow", "underfitting": "magenta",
               "still improving": "cyan", "diverged": "bold red"}


def console(*, stderr: bool = False) -> Console:
    """A console that honours NO_COLOR and, piped or in CI, does not squeeze tables to 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def check_table(report: CheckReport) -> Table:
    """One line per comparison row and metric (mean change and its 95% interval), then one per trial
    with a verdict of its own (missing, new, error, ...); failures in red."""
    from dnnbench.checking import interval

    table = Table(title="dnnbench check", title_justify="left", header_style="bold")
    for header in ("row", "metric", "seeds", "baseline", "current", "Δ mean", "95% interval", "verdict"):
        table.add_column(header, justify="right" if header in ("seeds", "baseline", "current", "Δ mean") else "left",
                         no_wrap=True)
    styles = {**VERDICT_STYLE, "uncertain": "bold red" if report.strict else "yellow"}
    for r in report.rows:
        table.add_row(r.label, r.metric, str(r.n), _num(r.baseline), _num(r.current), _num(r.difference, True),
                      interval(r), Text(r.verdict, style=styles.get(r.verdict, "")))
    for e in report.problems:
        table.add_row(f"{e.label} ({e.trial_id})", e.metric, "", _num(e.baseline), _num(e.current), "", "",
                      Text(e.verdict, style=styles.get(e.verdict, "")))
    table.caption = report.summary()
    table.caption_style = "bold red" if report.failed else "bold green"
    return table


def _stat(stat: Stat, digits: int = 4) -> str:
    if stat.n == 0 or math.isnan(stat.mean):
        return "-"
    if stat.n > 1:
        return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"
    return f"{stat.mean:.{digits}f}"


def _counts(counts: dict[str, int], total: int, styles: dict[str, str]) -> Text:
    text = Text()
    for i, (name, n) in enumerate(sorted(counts.items(), key=lambda kv: -kv[1])):
        if i:
            text.append(", ")
        text.append(name + ("" if n == total else f" ×{n}"), style=styles.get(name, ""))
    return text


class Fitted:
    """A table that fits the console: at render time it drops its least important columns, in a
    stated order, until it fits, and its caption names what was hidden. Numbers and statuses are
    never cut; a wider terminal (or ``COLUMNS=200``) shows every column."""

    def __init__(self, build: Callable[[Sequence[str]], Table], drop_order: Sequence[str]) -> None:
        self.build, self.drop_order = build, list(drop_order)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Table]:
        hidden: list[str] = []
        table = self.build(hidden)
        unbounded = options.update(max_width=1_000_000)  # the table's own minimum, not clamped to the console
        for name in self.drop_order:
            if console.measure(table, options=unbounded).minimum <= options.max_width and max(
                    (Segment.get_line_length(line) for line in Segment.split_lines(console.render(table, options))),
                    default=0) <= options.max_width:
                break
            hidden.append(name)
            table = self.build(hidden)
        if hidden:
            table.caption = (f"{table.caption}\n" if table.caption else "") + (
                f"hidden to fit {options.max_width} columns: {', '.join(hidden)} (a wider terminal or COLUMNS=N shows them)")
        yield table


#: What ``dnnbench report`` drops first when the console is too narrow (label, test acc, diagnosis
#: and status always stay).
RESULTS_DROP_ORDER = ("lr", "train loss", "best epoch", "train acc", "best val acc")


def results_table(summaries: Sequence[GroupSummary], *, title: str) -> Fitted:
    """``dnnbench report``: one line per label, mean ± std over the seeds that finished ok."""
    columns = [("label", None), ("lr", None), ("train loss", "train_loss"), ("train acc", "train_acc"),
               ("best val acc", "best_val_acc"), ("test acc", "test_acc"), ("best epoch", "best_epoch"),
               ("diagnosis", None), ("status", None)]
    status_style = {"diverged": "bold red", "error": "bold red", "interrupted": "yellow"}
    seeds = max((len(s.rows) for s in summaries), default=1)

    rows = []
    for s in summaries:
        cells: dict[str, str | Text] = {"label": Text(s.label, style="bold"),
                                        "lr": ",".join(f"{lr:g}" for lr in s.learning_rates),
                                        "diagnosis": _counts(s.diagnoses, len(s.rows), LABEL_STYLE),
                                        "status": _counts(s.statuses, len(s.rows), status_style)}
        for header, metric in columns[2:7]:
            cells[header] = _stat(s.stats[metric], 1 if metric == "best_epoch" else 4)
        rows.append(cells)

    def build(hidden: Sequence[str]) -> Table:
        table = Table(title=title, title_justify="left", header_style="bold")
        shown = [(h, m) for h, m in columns if h not in hidden]
        for header, metric in shown:
            # numbers and labels never wrap (a column is as wide as its widest cell); the diagnosis
            # and status counts take what is left
            flexible = header in ("diagnosis", "status")
            widest = max((len(str(cells[header])) for cells in rows), default=1)
            if header == "label":  # a long label folds before a number is ever cut
                widest = min(widest, 20)
            table.add_column(header, justify="right" if metric or header == "lr" else "left", overflow="fold",
                             min_width=(15 if header == "diagnosis" else 8) if flexible else widest)
        for cells in rows:
            table.add_row(*(cells[h] for h, _ in shown))
        table.caption = f"mean ± std over {seeds} seeds (ok trials only)" if seeds > 1 else "one seed per row"
        return table

    return Fitted(build, RESULTS_DROP_ORDER)


def profile_table(profiles: Sequence[Any], n_tasks: int, target: str) -> Table:
    """``dnnbench profile``: each optimizer's profile at a few tau, and its score."""
    table = Table(title=f"Performance profiles over {n_tasks} task(s), steps to {target}", title_justify="left",
                  header_style="bold")
    table.add_column("optimizer", style="bold", overflow="fold")
    for tau in (1.0, 1.5, 2.0, 4.0):
        table.add_column(f"ρ({tau:g})", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("ratio per task", overflow="fold")
    for p in profiles:
        ratios = ", ".join("never" if r == float("inf") else f"{r:.2f}" for r in p.ratios)
        table.add_row(p.label, *(f"{p.at(tau):.2f}" for tau in (1.0, 1.5, 2.0, 4.0)), f"{p.score:.3f}", ratios)
    table.caption = ("ρ(τ): fraction of tasks where the optimizer reached the target within τ x the steps of the "
                     "fastest; score: area under ρ over τ in [1, 4], scaled to [0, 1]")
    return table
