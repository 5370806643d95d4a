"""Rendering: rich tables and panels from result rows and summaries. Computes no metric.

The only module that imports rich (the CLI aside, which hands it consoles).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dnnbench.analysis.stats import Stat, Summary
from dnnbench.render.layout import Fitted, TableLayout, add_columns, console, fitted_table
from dnnbench.render.results import LABEL_STYLE
from dnnbench.results.metrics import ACCURACIES
from dnnbench.results.rows import TrialResult


def _fmt(stat: Stat, digits: int = 4, scale: float = 1.0) -> str:
    if stat.n == 0 or math.isnan(stat.mean):
        return "-"
    mean = stat.mean * scale
    if stat.n > 1:  # one digit fewer over seeds: the std says the last one is noise anyway
        d = max(digits - 1, 0)
        return f"{mean:.{d}f}±{stat.std * scale:.{d}f}"
    return f"{mean:.{digits}f}"


#: A comparison table's columns as ``--columns`` names them, in table order (the label always
#: shows; gap, val acc and epochs run only in regularizer comparisons, Δ only over seeds).
COMPARISON_COLUMNS = {
    "lr": "lr",
    "train_loss": "train loss",
    "train_acc": "train acc",
    "val_acc": "val acc",
    "best_val": "best val (epoch)",
    "test_acc": "test acc",
    "gap": "gap",
    "delta": "Δ test acc [95% CI] W/T/L",
    "epochs": "epochs run",
    "diagnosis": "diagnosis",
    "time": "compile + train s",
    "samples_per_s": "samples/s",
    "status": "status",
}

#: What a comparison table drops first when the console is too narrow (the label, test accuracy,
#: diagnosis and status always stay).
COMPARISON_DROP_ORDER = (
    "compile + train s",
    "samples/s",
    "epochs run",
    "gap",
    "train loss",
    "val acc",
    "lr",
    "train acc",
    "best val (epoch)",
)


def _best(summaries: Sequence[Summary], metric: str, higher: bool) -> int | None:
    values = [
        (s.stats[metric].mean, i)
        for i, s in enumerate(summaries)
        if s.stats[metric].n and not math.isnan(s.stats[metric].mean)
    ]
    if len(values) < 2:
        return None
    return (max(values) if higher else min(values))[1]


def _status(summary: Summary) -> Text:
    parts = []
    for status, count in summary.statuses.items():
        text = status if count == len(summary.trials) else f"{status} ×{count}"
        if status == "diverged":
            epochs = sorted({t.diverged_epoch for t in summary.trials if t.diverged_epoch})
            text += " @ epoch " + ",".join(map(str, epochs))
        parts.append(text)
    style = "bold red" if "diverged" in summary.statuses or "error" in summary.statuses else ""
    return Text("; ".join(parts), style=style)


def _diagnosis(summary: Summary) -> Text:
    text = Text()
    for i, (label, count) in enumerate(sorted(summary.diagnoses.items(), key=lambda kv: -kv[1])):
        if i:
            text.append(", ")
        suffix = "" if count == len(summary.trials) else f" ×{count}"
        text.append(label + suffix, style=LABEL_STYLE.get(label, ""))
    return text


def comparison_columns(*, show_epochs: bool = False, paired: bool = False) -> dict[str, str]:
    """The ``--columns`` name -> header of each column a comparison table of this kind has."""
    dropped = ({"gap", "val_acc", "epochs"} if not show_epochs else set()) | ({"delta"} if not paired else set())
    return {key: header for key, header in COMPARISON_COLUMNS.items() if key not in dropped}


def comparison_table(
    summaries: Sequence[Summary],
    *,
    title: str,
    label_header: str = "optimizer",
    show_epochs: bool = False,
    paired: dict | None = None,
    note: str = "",
    layout: TableLayout | None = None,
) -> Fitted:
    """One row per summary: rate, losses, accuracies, best epoch, diagnosis, timings, status;
    ``note``: one more caption line (e.g. what a method did on these data).

    At render time, columns that do not fit the console are dropped in ``COMPARISON_DROP_ORDER``
    and named in the caption; the label, test accuracy, diagnosis and status always stay.
    ``layout``: the user's ``--wide`` / ``--columns``."""
    columns = [
        (label_header, None, None),
        ("lr", None, None),
        ("train loss", "train_loss", False),
        ("train acc", "train_acc", True),
        ("val acc", "val_acc", True),
        ("best val (epoch)", "best_val_acc", True),
        ("test acc", "test_acc", True),
        ("gap", None, None),
        ("Δ test acc [95% CI] W/T/L", None, None),
        ("epochs run", None, None),
        ("diagnosis", None, None),
        ("compile + train s", "train_s", False),
        ("samples/s", "samples_per_s", True),
        ("status", None, None),
    ]
    if not show_epochs:
        columns = [c for c in columns if c[0] not in ("gap", "val acc", "epochs run")]
    if not paired:
        columns = [c for c in columns if not c[0].startswith("Δ")]
    best = {metric: _best(summaries, metric, bool(higher)) for _, metric, higher in columns if metric}
    rows = []
    for i, s in enumerate(summaries):
        st = s.stats
        cells: list[Text | str] = []
        for header, metric, _ in columns:
            if header == label_header:
                cells.append(Text(s.label, style="bold"))
            elif header == "lr":
                cells.append(",".join(f"{lr:g}" for lr in s.learning_rates) + ("†" if _at_fallback(s) else ""))
            elif header == "best val (epoch)":
                epoch, ran = st["best_epoch"], st["epochs_run"]
                # An early-stopping row reports its restored epoch, and of how many it ran.
                restored = epoch.n and all(t.spec.reg.early_stopping for t in s.trials)
                of = f" of {ran.mean:.0f}" if restored and ran.n else ""
                cells.append(f"{_fmt(st['best_val_acc'])} ({'-' if not epoch.n else f'{epoch.mean:.0f}'}{of})")
            elif header == "gap":
                gap = Stat(st["train_acc"].mean - st["test_acc"].mean, 0.0, 1, (math.nan, math.nan))
                cells.append(_fmt(gap, 3) if st["train_acc"].n else "-")
            elif header.startswith("Δ"):
                cells.append(_paired((paired or {}).get(s.label)))
            elif header == "epochs run":
                cells.append(_fmt(st["epochs_run"], 0))
            elif header == "diagnosis":
                cells.append(_diagnosis(s))
            elif header == "status":
                cells.append(_status(s))
            elif metric == "train_s":
                compile_s, train_s = st["compile_s"].mean, st["train_s"].mean
                cells.append("-" if math.isnan(train_s) else f"{compile_s:.1f} + {train_s:.2f}")
            elif metric == "samples_per_s":
                value = st[metric].mean
                cells.append("-" if math.isnan(value) else f"{value / 1000:,.0f}k" if value >= 1e4 else f"{value:,.0f}")
            else:
                assert metric is not None  # the columns not named above are metrics'
                cells.append(_fmt(st[metric]))
            if metric and best.get(metric) == i and isinstance(cells[-1], str):
                cells[-1] = Text(cells[-1], style="bold green")
        rows.append(cells)

    def build(hidden: Sequence[str]) -> Table:
        table = Table(title=title, title_justify="left", header_style="bold")
        keep = [j for j, (header, _, _) in enumerate(columns) if header not in hidden]
        # Numbers never wrap (a column is at least as wide as its widest cell); headers do, a long
        # label folds, and the diagnosis, status and Δ columns take what is left.
        headers = [columns[j][0] for j in keep]
        add_columns(
            table,
            headers,
            [{h: row[j] for h, j in zip(headers, keep, strict=True)} for row in rows],
            right=[h for h in headers if h not in (label_header, "diagnosis", "status")],
            labels={label_header: 20},
            flexible={"diagnosis": 15, "status": None, **{h: 8 for h in headers if h.startswith("Δ")}},
        )
        for cells in rows:
            table.add_row(*(cells[j] for j in keep))
        n_seeds = max((len(s.trials) for s in summaries), default=1)
        if n_seeds > 1:
            table.caption = f"mean ± std over {n_seeds} seeds; best of each column in green" + (
                "; Δ = seed-paired difference to the best row, bootstrap 95% CI, wins/ties/losses"
                if paired and any(h.startswith("Δ") for h in headers)
                else ""
            )
        else:
            table.caption = "best of each column in green; compile and train times are per compiled group"
        if "best val (epoch)" in [columns[j][0] for j in keep] and any(
            all(t.spec.reg.early_stopping for t in s.trials) for s in summaries
        ):
            table.caption += "\nbest val (epoch) of an early-stopping row: at the restored epoch (B of E run)"
        table.caption += (f"\n{note}" if note else "") + _error_notes(summaries) + _fallback_note(summaries)
        return table

    present = [header for header, _, _ in columns]
    return Fitted(
        build,
        [h for h in COMPARISON_DROP_ORDER if h in present] + [h for h in present if h.startswith("Δ")],
        columns=comparison_columns(show_epochs=show_epochs, paired=bool(paired)),
        layout=layout,
    )


def _at_fallback(summary: Summary) -> bool:
    return any(t.extra.get("lr_fallback") for t in summary.trials)


def _fallback_note(summaries: Sequence[Summary]) -> str:
    """The caption line under rows that ran at the fallback learning rate (``lr_fallback``): no
    default anywhere, so the number is a placeholder -- and how to find one."""
    marked = [s for s in summaries if _at_fallback(s)]
    if not marked:
        return ""
    specs = ",".join(dict.fromkeys(t.spec.optimizer for s in marked for t in s.trials if t.extra.get("lr_fallback")))
    return (
        f"\n† {', '.join(s.label for s in marked)}: the fallback learning rate (no default in the factory's "
        f"signature or dnnbench's table of documented rates); find one with dnnbench tune --optimizers {specs} "
        f"or dnnbench lr-sensitivity --optimizers {specs}"
    )


def _error_notes(summaries: Sequence[Summary]) -> str:
    """One caption line per errored trial: its reason (the table's status column only says error)."""
    notes = [
        f"\nerror, {s.label} seed {t.spec.seed}: {t.extra.get('error', 'no reason recorded')}"
        for s in summaries
        for t in s.trials
        if t.status == "error"
    ]
    return "".join(notes)


def optimizers_list_table(
    rows: Sequence[dict],
    refused: dict[str, str] | None = None,
    *,
    recipe: Collection[str] = (),
    fallback_lr: float = 1e-3,
    outside_all: Sequence[str] = (),
) -> Table:
    """``dnnbench optimizers --list``: each optimizer's source, rule (or doc line), default learning
    rate and where that rate comes from, and its other defaults; then each that cannot run, and why.

    ``recipe`` names the built-ins of the recipe (the others are marked "extra"); ``fallback_lr`` is the rate
    used where neither the signature nor dnnbench's table gives one; ``outside_all``: listed names that
    ``--optimizers all`` leaves to a built-in of the same name.
    """
    table = Table(title="Optimizers", title_justify="left", header_style="bold")
    table.add_column("name", style="bold", overflow="fold")
    table.add_column("source", overflow="fold")
    table.add_column("update rule (g = gradient) / description", overflow="fold")
    table.add_column("default lr: where it comes from", overflow="fold")
    table.add_column("other defaults (numbers vmapped; others* change the program)", overflow="fold")
    for row in rows:
        marker = " (extra)" if row["kind"] == "builtin" and row["spec"] not in recipe else ""
        origin = row["origin"]
        source = {
            "builtin": "dnnbench",
            "optax": f"optax {origin.get('version')}",
            "file": f"file, sha256 {str(origin.get('sha256'))[:12]}",
            "module": f"{origin.get('distribution') or 'module'} {origin.get('version') or ''}".strip(),
            "plugin": f"plugin of {origin.get('distribution')} {origin.get('version')}",
        }[row["kind"]]
        where = {"signature": "its signature", "fallback": "† fallback: none documented, tune it"}
        lr = f"{row['learning_rate']:g}: {where.get(row['lr_source'], row['lr_source'])}"
        numbers = set(row["numbers"])
        rest = [f"{k}{'' if k in numbers else '*'}={_value(v)}" for k, v in row["params"].items()]
        table.add_row(row["spec"] + marker, source, row["rule"], lr, ", ".join(rest))
    for name, why in (refused or {}).items():
        reason = why.split(": ", 1)[-1] if why.startswith(name) or why.startswith(f"optax.{name}") else why
        source = name.split(".")[0] if name.startswith("optax.") else ""
        table.add_row(name, source, Text(f"cannot run: {reason}", style="red"), "-", "")
    notes = []
    if any(row["lr_source"] == "fallback" for row in rows):
        notes.append(
            f"† no default learning rate in the signature or dnnbench's table: dnnbench uses {fallback_lr:g}; "
            "find one with dnnbench tune or dnnbench lr-sensitivity"
        )
    if outside_all:
        notes.append(
            f"--optimizers all runs every row that can run once; {', '.join(outside_all)} only when named "
            "(the built-in of the same name stands for each)"
        )
    if notes:
        table.caption = "\n".join(notes)
    return table


def _value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def diagnosis_panel(result: TrialResult) -> Panel:
    """``dnnbench diagnose``: the verdict, the numbers behind it and the next commands."""
    d = result.diagnosis or {"label": result.status, "evidence": {}, "remedies": []}
    label = d["label"]
    evidence = Table.grid(padding=(0, 2))
    evidence.add_column(style="dim")
    evidence.add_column()
    if result.status == "error":
        evidence.add_row("reason", str(result.extra.get("error", "no reason recorded")))
    for key, value in d["evidence"].items():
        evidence.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    body = Group(
        Text.assemble("verdict: ", (label, LABEL_STYLE.get(label, "bold"))),
        Text("\nevidence", style="bold"),
        evidence,
    )
    m = result.metrics
    title = (
        f"{result.optimizer} lr={result.spec.learning_rate:g} seed={result.spec.seed}: "
        f"test acc {m.get('test_acc', float('nan')):.4f}"
    )
    return Panel(body, title=title, title_align="left", border_style=LABEL_STYLE.get(label, "white"), expand=False)


def next_commands(result: TrialResult) -> Text:
    """The diagnosis's next experiments, one command per line, outside any panel: print it with
    ``soft_wrap=True`` so that each stays one line, whole, to paste."""
    remedies = (result.diagnosis or {}).get("remedies") or []
    if not remedies:
        return Text("")
    text = Text("next experiments (the recipe's remedies, in order):\n", style="bold")
    text.append("\n".join(remedies), style="")
    return text


def make_console(*, stderr: bool = False, quiet: bool = False, layout: TableLayout | None = None) -> Console:
    """A console that honours NO_COLOR and drops styling when not on a terminal; with ``--wide``
    (``layout``) it prints tables at their natural width."""
    return console(stderr=stderr, quiet=quiet, layout=layout)


#: What the datasets table drops first when the console is too narrow (name, availability and the
#: cache path always stay; a path folds onto more lines rather than being cut).
DATASETS_DROP_ORDER = ("source", "input shape", "test", "train", "classes")


def datasets_table(rows: Sequence[dict]) -> Fitted:
    """``dnnbench datasets``: name, input shape, classes, sizes, source, availability."""

    def build(hidden: Sequence[str]) -> Table:
        table = Table(title="Datasets", title_justify="left", header_style="bold")
        headers = [
            h
            for h in ("name", "input shape", "classes", "train", "test", "offline", "where", "source")
            if h not in hidden
        ]
        for header in headers:
            numeric = header in ("classes", "train", "test")
            # a cache path folds over lines (min_width: how narrow it may get), whole
            table.add_column(
                header,
                justify="right" if numeric else "left",
                no_wrap=header != "where",
                overflow="fold",
                min_width=20 if header == "where" else None,
            )
        for row in rows:
            cells = {
                "name": Text(row["name"], style="bold"),
                "input shape": "x".join(map(str, row["input_shape"])),
                "classes": str(row["classes"]),
                "train": str(row["train"]),
                "test": str(row["test"]),
                "offline": Text("yes", style="green") if row["offline"] else Text("no (downloads)", style="yellow"),
                "where": row["where"],
                "source": row["source"],
            }
            table.add_row(*(cells[h] for h in headers))
        return table

    return Fitted(build, DATASETS_DROP_ORDER)


def _ratio(stat: Stat) -> str:
    if stat.n == 0 or math.isnan(stat.mean):
        return "-"
    return f"{stat.mean:.2g}"


def _paired(p: object | None) -> Text:
    if p is None or p.n == 0 or math.isnan(p.mean_diff):  # type: ignore[attr-defined]
        return Text("-")
    if p.mean_diff == 0 and p.ties == p.n:  # type: ignore[attr-defined]
        return Text("best", style="bold green")
    lo, hi = p.ci95  # type: ignore[attr-defined]
    text = f"{p.mean_diff:+.3f} [{lo:+.3f},{hi:+.3f}] {p.wins}/{p.ties}/{p.losses}"  # type: ignore[attr-defined]
    return Text(text, style="dim" if lo <= 0 <= hi else "")


def sweep_columns(metric: str, *, paired: bool = False) -> dict[str, str]:
    """The ``--columns`` name -> header of each column of a sweep table sorted by ``metric`` (the
    factors' columns always show): the sort metric first when it is not an accuracy shown anyway."""
    columns = {} if metric in ACCURACIES else {metric: metric.replace("_", " ")}
    columns.update({"train_acc": "train acc", "val_acc": "val acc", "test_acc": "test acc"})
    if paired:
        columns["delta"] = f"Δ {metric} vs best [95% CI] W/T/L"
    columns.update({"grad": "grad first/last (start → end)", "diagnosis": "diagnosis", "status": "status"})
    return columns


def sweep_table(
    summaries: Sequence[Summary],
    factors: Sequence[str],
    *,
    metric: str,
    title: str,
    paired: dict | None = None,
    layout: TableLayout | None = None,
) -> Fitted:
    """One row per combination of levels, sorted as given; gradient flow and paired differences.
    Too narrow a console drops gradient flow, val acc, train acc, Δ and diagnosis, in that order;
    the factors, the sort metric, test acc and status always stay."""
    columns = sweep_columns(metric, paired=bool(paired))
    best = _best(summaries, metric, not metric.endswith("loss"))
    rows = []
    for s in summaries:
        tags, st = s.trials[0].tags, s.stats
        cells: dict[str, Text | str] = {f: str(tags.get(f, "?")) for f in factors}
        cells.update(
            {
                "train acc": _fmt(st["train_acc"]),
                "val acc": _fmt(st["val_acc"]),
                "test acc": _fmt(st["test_acc"]),
                "grad first/last (start → end)": f"{_ratio(st['grad_ratio_start'])} → {_ratio(st['grad_ratio_end'])}",
                "diagnosis": _diagnosis(s),
                "status": _status(s),
            }
        )
        if metric in columns:
            cells[columns[metric]] = _fmt(st[metric]) if metric in st else "-"
        if paired:
            cells[columns["delta"]] = _paired(paired.get(s.label))
        rows.append(cells)
    n = max((len(s.trials) for s in summaries), default=1)

    def build(hidden: Sequence[str]) -> Table:
        table = Table(title=title, title_justify="left", header_style="bold")
        headers = [*factors, *(h for h in columns.values() if h not in hidden)]
        # a level folds past 20 characters; numbers never do
        add_columns(
            table,
            headers,
            rows,
            right=[h for h in headers if h not in ("diagnosis", "status", *factors)],
            labels=dict.fromkeys(factors, 20),
            flexible={"diagnosis": 15, "status": None, columns.get("delta", "Δ"): 8},
        )
        for i, cells in enumerate(rows):
            table.add_row(
                *(Text(str(cells[h]), style="bold") if h in factors else cells[h] for h in headers),
                style="bold green" if i == best else "",
            )
        table.caption = (
            f"sorted by {metric}; best row in green"
            + (f"; mean ± std over {n} seeds" if n > 1 else "")
            + (
                "; grad first/last = first-layer / last-layer gradient norm (≪1: vanishing)"
                if columns["grad"] not in hidden
                else ""
            )
            + _error_notes(summaries)
        )
        return table

    drop = [columns["grad"], "val acc", "train acc", columns.get("delta"), "diagnosis"]
    return Fitted(build, [h for h in drop if h is not None and h in columns.values()], columns=columns, layout=layout)


def main_effects_table(effects: Sequence, metric: str, layout: TableLayout | None = None) -> Fitted:
    """The ablation matrix: each factor's levels with the metric averaged over everything else.
    Too narrow a console drops the trial counts, then the std."""
    rows, previous = [], None
    for e in effects:
        rows.append(
            {
                "factor": e.factor if e.factor != previous else "",
                "level": e.level + (" ★" if e.best else ""),
                f"mean {metric}": "-" if e.stat.n == 0 else f"{e.stat.mean:.4f}",
                "± std": "-" if e.stat.n < 2 else f"{e.stat.std:.4f}",
                "trials": str(e.stat.n),
                "style": "bold green" if e.best else "",
            }
        )
        previous = e.factor

    def build(hidden: Sequence[str]) -> Table:
        table = Table(
            title=f"Main effects: mean {metric} per level, over all other factors and seeds",
            title_justify="left",
            header_style="bold",
        )
        headers = [h for h in ("factor", "level", f"mean {metric}", "± std", "trials") if h not in hidden]
        add_columns(table, headers, rows, right=headers[2:], labels={"factor": 16, "level": 20})
        for cells in rows:
            table.add_row(*(cells[h] for h in headers), style=cells["style"])
        return table

    return Fitted(build, ("trials", "± std"), layout=layout)


def sensitivity_columns(metric: str) -> dict[str, str]:
    """The ``--columns`` name -> header of each column of the sensitivity table (the optimizer
    always shows)."""
    return {
        "best_lr": "best lr",
        "best": f"best {metric}",
        "range": "forgiving range",
        "width": "width (decades)",
        "curve": "curve (grid, low → high lr)",
    }


def sensitivity_table(rows: Sequence[dict], metric: str, tolerance: float, layout: TableLayout | None = None) -> Fitted:
    """``dnnbench lr-sensitivity``: best learning rate and how forgiving each optimizer is. Too
    narrow a console drops the width, then the curve, then the range."""
    columns = sensitivity_columns(metric)
    bars = "▁▂▃▄▅▆▇█"
    cells_of: list[dict[str, str | Text]] = []
    for row in rows:
        values = [v if v is not None and not math.isnan(v) else None for v in row["curve"]]
        finite = [v for v in values if v is not None]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        # the tallest bar is the best rate: for a loss, the lowest value
        goodness = [None if v is None else (hi - v if metric.endswith("loss") else v - lo) for v in values]
        spark = "".join("✗" if g is None else bars[int(round(g / (hi - lo or 1) * (len(bars) - 1)))] for g in goodness)
        cells_of.append(
            {
                "optimizer": Text(row["optimizer"], style="bold"),
                "best lr": f"{row['best_lr']:.3g}",
                f"best {metric}": f"{row['best_metric']:.4f}",
                "forgiving range": f"{row['range'][0]:.3g} to {row['range'][1]:.3g}",
                "width (decades)": f"{row['width_decades']:.2f}",
                "curve (grid, low → high lr)": spark,
            }
        )

    return fitted_table(
        f"Learning-rate sensitivity ({metric}; forgiving range = within {tolerance:g} of the best)",
        ("optimizer", *columns.values()),
        cells_of,
        ("width (decades)", "curve (grid, low → high lr)", "forgiving range"),
        caption=(
            f"curve: the taller the bar, the better the {metric}"
            + (" (lower loss)" if metric.endswith("loss") else "")
            + "; ✗ = diverged; one compiled program per optimizer"
        ),
        right=("best lr", f"best {metric}", "width (decades)"),
        labels={"optimizer": 20},
        columns=columns,
        layout=layout,
    )


def expected_best_table(rows: Sequence[dict], metric: str, layout: TableLayout | None = None) -> Fitted:
    """``dnnbench tune``: the expected best ``metric`` after k of the N candidates (Dodge et al.).
    Too narrow a console drops the sparkline, then the k between 1 and N (smallest first)."""
    from dnnbench.analysis.expected_best import sparkline

    n = max((row["n"] for row in rows), default=0)
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if k <= n]
    if n and n not in ks:
        ks.append(n)
    cells_of = []
    for row in rows:
        curve, best = row["curve"], row["best"]
        text = (
            ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items())
            if best
            else "every candidate diverged"
        )
        if row["diverged"]:
            text += f" ({row['diverged']} of {row['n']} diverged)"
        cells: dict[str, str | Text] = {f"k={k}": f"{curve[k - 1]:.4f}" if k <= len(curve) else "" for k in ks}
        cells.update(
            {"optimizer": Text(row["optimizer"], style="bold"), "curve": sparkline(curve), "best candidate": text}
        )
        cells_of.append(cells)

    return fitted_table(
        f"Expected best {metric.replace('_', ' ')} after k tries (of N candidates)",
        ("optimizer", *(f"k={k}" for k in ks), "curve", "best candidate"),
        cells_of,
        ["curve", *(f"k={k}" for k in ks[1:-1])],
        caption=(
            "E(best of k) over k candidates drawn without replacement from the N searched (exact order "
            "statistics); k=1 is the mean candidate, k=N the best; validation set only"
        ),
        right=[f"k={k}" for k in ks],
        labels={"optimizer": 20},
        flexible={"best candidate": 12},
        layout=layout,
    )


def target_table(rows: Sequence[dict], target_label: str, layout: TableLayout | None = None) -> Fitted:
    """Time to target per comparison row: median epochs, steps and training seconds over seeds.
    Too narrow a console drops the seconds, then the count of seeds that reached it."""
    cells_of = []
    for row in rows:
        never = row["epoch"] is None
        cells_of.append(
            {
                "row": row["label"],
                "reached": f"{row['reached']}/{row['n']}",
                "epochs": "never" if never else f"{row['epoch']:g}",
                "steps": "never" if never or row["step"] is None else f"{row['step']:,.0f}",
                "train s": "never" if never or row["train_s"] is None else f"{row['train_s']:.2f}",
            }
        )

    return fitted_table(
        f"Time to target {target_label}",
        ("row", "reached", "epochs", "steps", "train s"),
        cells_of,
        ("train s", "reached"),
        caption=(
            "median over seeds (never: not reached by a majority); steps are machine-independent, "
            "seconds are per compiled program (programs share the cores)"
        ),
        right=("reached", "epochs", "steps", "train s"),
        labels={"row": 24},
        layout=layout,
    )
