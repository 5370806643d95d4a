"""Rendering for the commands that read results files: rich tables of a check and of a results file.

Reads ``CheckReport`` and ``stats.Summary`` objects and computes nothing. Kept apart from
``dnnbench.render.tables`` so these commands start without importing the training stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from dnnbench.analysis.checking import CheckReport
from dnnbench.analysis.stats import Stat, Summary
from dnnbench.render.layout import Fitted, TableLayout, console, filled_table, fitted_table

__all__ = ["Fitted", "TableLayout", "check_table", "console", "profile_table", "results_table"]

VERDICT_STYLE = {
    "ok": "",
    "better": "green",
    "new": "cyan",
    "worse": "bold red",
    "uncertain": "yellow",
    "newly diverged": "bold red",
    "error": "bold red",
    "missing": "bold red",
    "lost value": "bold red",
}
#: A diagnosis label's style, in these tables and in ``render.tables``' tables and panels.
LABEL_STYLE = {
    "good fit": "green",
    "overfitting": "yellow",
    "underfitting": "magenta",
    "still improving": "cyan",
    "diverged": "bold red",
}


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


#: ``dnnbench check``'s columns as ``--columns`` names them (the row always shows), and what the
#: table drops first when the console is too narrow (row, metric, current, Δ mean and verdict stay).
CHECK_COLUMNS = {
    "metric": "metric",
    "seeds": "seeds",
    "baseline": "baseline",
    "current": "current",
    "delta": "Δ mean",
    "interval": "95% interval",
    "verdict": "verdict",
}
CHECK_DROP_ORDER = ("seeds", "baseline", "95% interval")


def check_table(report: CheckReport, layout: TableLayout | None = None) -> Fitted:
    """One line per comparison row and metric (mean change and its 95% interval), then one per trial
    with a verdict of its own (missing, new, error, ...); failures in red."""
    from dnnbench.analysis.checking import interval

    styles = {**VERDICT_STYLE, "uncertain": "bold red" if report.strict else "yellow"}
    rows: list[dict[str, str | Text]] = []
    for r in report.rows:
        rows.append(
            {
                "row": r.label,
                "metric": r.metric,
                "seeds": str(r.n),
                "baseline": _num(r.baseline),
                "current": _num(r.current),
                "Δ mean": _num(r.difference, True),
                "95% interval": interval(r),
                "verdict": Text(r.verdict, style=styles.get(r.verdict, "")),
            }
        )
    for e in report.problems:
        rows.append(
            {
                "row": f"{e.label} ({e.trial_id})",
                "metric": e.metric,
                "seeds": "",
                "baseline": _num(e.baseline),
                "current": _num(e.current),
                "Δ mean": "",
                "95% interval": "",
                "verdict": Text(e.verdict, style=styles.get(e.verdict, "")),
            }
        )

    def build(hidden: Sequence[str]) -> Table:
        headers = [h for h in ("row", *CHECK_COLUMNS.values()) if h not in hidden]
        # a long row label (a trial's, with its id) folds; numbers, intervals and verdicts never do
        table = filled_table(
            "dnnbench check",
            headers,
            rows,
            caption=report.summary(),
            right=("seeds", "baseline", "current", "Δ mean"),
            labels={"row": 24},
        )
        table.caption_style = "bold red" if report.failed else "bold green"
        return table

    return Fitted(build, CHECK_DROP_ORDER, columns=CHECK_COLUMNS, layout=layout)


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


#: ``dnnbench report``'s columns as ``--columns`` names them (the label always shows), and what it
#: drops first when the console is too narrow (label, test acc, diagnosis and status always stay).
RESULTS_COLUMNS = {
    "lr": "lr",
    "train_loss": "train loss",
    "train_acc": "train acc",
    "best_val_acc": "best val acc",
    "test_acc": "test acc",
    "best_epoch": "best epoch",
    "diagnosis": "diagnosis",
    "status": "status",
}
RESULTS_DROP_ORDER = ("lr", "train loss", "best epoch", "train acc", "best val acc")


def results_table(summaries: Sequence[Summary], *, title: str, layout: TableLayout | None = None) -> Fitted:
    """``dnnbench report``: one line per label, mean ± std over the seeds that finished ok."""
    metrics = {
        "train loss": "train_loss",
        "train acc": "train_acc",
        "best val acc": "best_val_acc",
        "test acc": "test_acc",
        "best epoch": "best_epoch",
    }
    status_style = {"diverged": "bold red", "error": "bold red", "interrupted": "yellow"}
    seeds = max((len(s.trials) for s in summaries), default=1)

    rows = []
    for s in summaries:
        cells: dict[str, str | Text] = {
            "label": Text(s.label, style="bold"),
            "lr": ",".join(f"{lr:g}" for lr in s.learning_rates),
            "diagnosis": _counts(s.diagnoses, len(s.trials), LABEL_STYLE),
            "status": _counts(s.statuses, len(s.trials), status_style),
        }
        for header, metric in metrics.items():
            cells[header] = _stat(s.stats[metric], 1 if metric == "best_epoch" else 4)
        rows.append(cells)

    # a long label folds before a number is ever cut; the diagnosis and status counts take
    # what is left, one count per line if need be
    return fitted_table(
        title,
        ("label", *RESULTS_COLUMNS.values()),
        rows,
        RESULTS_DROP_ORDER,
        caption=f"mean ± std over {seeds} seeds (ok trials only)" if seeds > 1 else "one seed per row",
        right=("lr", *metrics),
        labels={"label": 20},
        flexible={"diagnosis": 15, "status": None},
        columns=RESULTS_COLUMNS,
        layout=layout,
    )


#: ``dnnbench profile``'s columns as ``--columns`` names them (the optimizer always shows), and what
#: it drops first when the console is too narrow (optimizer, ρ(1) and score always stay).
SHOWN_TAUS = (1.0, 1.5, 2.0, 4.0)
PROFILE_COLUMNS = {**{f"rho{tau:g}": f"ρ({tau:g})" for tau in SHOWN_TAUS}, "score": "score", "ratios": "ratio per task"}
PROFILE_DROP_ORDER = ("ratio per task", "ρ(1.5)", "ρ(4)", "ρ(2)")


def profile_table(profiles: Sequence[Any], n_tasks: int, target: str, layout: TableLayout | None = None) -> Fitted:
    """``dnnbench profile``: each optimizer's profile at a few tau, and its score."""
    rows = []
    for p in profiles:
        cells: dict[str, str | Text] = {
            "optimizer": Text(p.label, style="bold"),
            "score": f"{p.score:.3f}",
            "ratio per task": ", ".join("never" if r == float("inf") else f"{r:.2f}" for r in p.ratios),
        }
        cells.update({f"ρ({tau:g})": f"{p.at(tau):.2f}" for tau in SHOWN_TAUS})
        rows.append(cells)

    return fitted_table(
        f"Performance profiles over {n_tasks} task(s), steps to {target}",
        ("optimizer", *PROFILE_COLUMNS.values()),
        rows,
        PROFILE_DROP_ORDER,
        caption=(
            "ρ(τ): fraction of tasks where the optimizer reached the target within τ x the steps of "
            "the fastest; score: area under ρ over τ in [1, 4], scaled to [0, 1]"
        ),
        right=[h for h in PROFILE_COLUMNS.values() if h.startswith("ρ") or h == "score"],
        labels={"optimizer": 20},
        flexible={"ratio per task": 8},
        columns=PROFILE_COLUMNS,
        layout=layout,
    )
