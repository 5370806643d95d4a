"""Rendering: rich tables and panels from result rows and summaries. Computes no metric.

The only module that imports rich (the CLI aside, which hands it consoles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dnnbench import optim
from dnnbench.report_results import Fitted
from dnnbench.results import TrialResult
from dnnbench.stats import Stat, Summary

LABEL_STYLE = {
    "good fit": "green",
    "overfitting": "yellow",
    "underfitting": "magenta",
    "still improving": "cyan",
    "diverged": "bold red",
}


def _fmt(stat: Stat, digits: int = 4, scale: float = 1.0) -> str:
    if stat.n == 0 or math.isnan(stat.mean):
        return "-"
    mean = stat.mean * scale
    if stat.n > 1:  # one digit fewer over seeds: the std says the last one is noise anyway
        d = max(digits - 1, 0)
        return f"{mean:.{d}f}±{stat.std * scale:.{d}f}"
    return f"{mean:.{digits}f}"


#: What a comparison table drops first when the console is too narrow (the label, test accuracy,
#: diagnosis and status always stay).
COMPARISON_DROP_ORDER = ("compile + train s", "samples/s", "epochs run", "gap", "train loss", "val acc", "lr",
                         "train acc", "best val (epoch)")


def _best(summaries: Sequence[Summary], metric: str, higher: bool) -> int | None:
    values = [(s.stats[metric].mean, i) for i, s in enumerate(summaries)
              if s.stats[metric].n and not math.isnan(s.stats[metric].mean)]
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


def comparison_table(summaries: Sequence[Summary], *, title: str, label_header: str = "optimizer",
                     show_epochs: bool = False, paired: dict | None = None, note: str = "") -> Table:
    """One row per summary: rate, losses, accuracies, best epoch, diagnosis, timings, status;
    ``note``: one more caption line (e.g. what a method did on these data).

    At render time, columns that do not fit the console are dropped in ``COMPARISON_DROP_ORDER``
    and named in the caption; the label, test accuracy, diagnosis and status always stay."""
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
    best = {metric: _best(summaries, metric, higher) for _, metric, higher in columns if metric}
    rows = []
    for i, s in enumerate(summaries):
        st = s.stats
        cells: list[Text | str] = []
        for header, metric, _ in columns:
            if header == label_header:
                cells.append(Text(s.label, style="bold"))
            elif header == "lr":
                cells.append(",".join(f"{lr:g}" for lr in s.learning_rates))
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
                cells.append(_fmt(st[metric]))
            if metric and best.get(metric) == i and isinstance(cells[-1], str):
                cells[-1] = Text(cells[-1], style="bold green")
        rows.append(cells)

    def build(hidden: Sequence[str]) -> Table:
        table = Table(title=title, title_justify="left", header_style="bold")
        keep = [j for j, (header, _, _) in enumerate(columns) if header not in hidden]
        for j in keep:
            header = columns[j][0]
            # Numbers never wrap (a column is at least as wide as its widest cell); headers do, and
            # the diagnosis, status and Δ columns take what is left.
            flexible = header in ("diagnosis", "status") or header.startswith("Δ")
            widest = max((len(str(row[j])) for row in rows), default=1)
            table.add_column(header, justify="left" if header in (label_header, "diagnosis", "status") else "right",
                             min_width=15 if header == "diagnosis" else None if flexible else widest)
        for cells in rows:
            table.add_row(*(cells[j] for j in keep))
        n_seeds = max((len(s.trials) for s in summaries), default=1)
        if n_seeds > 1:
            table.caption = (f"mean ± std over {n_seeds} seeds; best of each column in green"
                             + ("; Δ = seed-paired difference to the best row, bootstrap 95% CI, wins/ties/losses"
                                if paired else ""))
        else:
            table.caption = "best of each column in green; compile and train times are per compiled group"
        if "best val (epoch)" in [columns[j][0] for j in keep] and any(
                all(t.spec.reg.early_stopping for t in s.trials) for s in summaries):
            table.caption += "\nbest val (epoch) of an early-stopping row: at the restored epoch (B of E run)"
        table.caption += (f"\n{note}" if note else "") + _error_notes(summaries)
        return table

    present = [header for header, _, _ in columns]
    return Fitted(build, [h for h in COMPARISON_DROP_ORDER if h in present]
                  + [h for h in present if h.startswith("Δ")])


def _error_notes(summaries: Sequence[Summary]) -> str:
    """One caption line per errored trial: its reason (the table's status column only says error)."""
    notes = [f"\nerror, {s.label} seed {t.spec.seed}: {t.extra.get('error', 'no reason recorded')}"
             for s in summaries for t in s.trials if t.status == "error"]
    return "".join(notes)


def optimizers_list_table(rows: Sequence[dict], refused: dict[str, str] | None = None) -> Table:
    """``dnnbench optimizers --list``: each optimizer's source, rule (or doc line) and defaults."""
    table = Table(title="Optimizers", title_justify="left", header_style="bold")
    table.add_column("name", style="bold", overflow="fold")
    table.add_column("source", overflow="fold")
    table.add_column("update rule (g = gradient) / description", overflow="fold")
    table.add_column("defaults (numbers vmapped; others* change the program)", overflow="fold")
    for row in rows:
        marker = " (extra)" if row["kind"] == "builtin" and row["spec"] not in optim.RECIPE else ""
        origin = row["origin"]
        source = {"builtin": "dnnbench", "optax": f"optax {origin.get('version')}",
                  "file": f"file, sha256 {str(origin.get('sha256'))[:12]}",
                  "module": f"{origin.get('distribution') or 'module'} {origin.get('version') or ''}".strip(),
                  "plugin": f"plugin of {origin.get('distribution')} {origin.get('version')}"}[row["kind"]]
        lr = f"learning_rate={row['learning_rate']:g}" + ("" if row["lr_in_signature"] else "†")
        numbers = set(row["numbers"])
        rest = [f"{k}{'' if k in numbers else '*'}={_value(v)}" for k, v in row["params"].items()]
        table.add_row(row["spec"] + marker, source, row["rule"], ", ".join([lr, *rest]))
    notes = []
    if any(not row["lr_in_signature"] for row in rows):
        notes.append(f"† no default learning rate in the signature: dnnbench uses {optim.FALLBACK_LR:g}")
    if refused:
        notes.append("cannot run in dnnbench's training step: " + "; ".join(
            f"{name}: {why.split(': ', 1)[-1] if why.startswith(name) else why}" for name, why in refused.items()))
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
    title = (f"{result.optimizer} lr={result.spec.learning_rate:g} seed={result.spec.seed}: "
             f"test acc {m.get('test_acc', float('nan')):.4f}")
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


def make_console(*, stderr: bool = False, quiet: bool = False) -> Console:
    """A console that honours NO_COLOR and drops styling when not on a terminal."""
    import os
    import sys

    stream = sys.stderr if stderr else sys.stdout
    # Piped or in CI, rich would assume 80 columns and squeeze the table; give it room instead.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, quiet=quiet, highlight=False, soft_wrap=False, width=width)


#: What the datasets table drops first when the console is too narrow (name, availability and the
#: cache path always stay; a path folds onto more lines rather than being cut).
DATASETS_DROP_ORDER = ("source", "input shape", "test", "train", "classes")


def datasets_table(rows: Sequence[dict]) -> Fitted:
    """``dnnbench datasets``: name, input shape, classes, sizes, source, availability."""
    def build(hidden: Sequence[str]) -> Table:
        table = Table(title="Datasets", title_justify="left", header_style="bold")
        headers = [h for h in ("name", "input shape", "classes", "train", "test", "offline", "where", "source")
                   if h not in hidden]
        for header in headers:
            numeric = header in ("classes", "train", "test")
            table.add_column(header, justify="right" if numeric else "left", no_wrap=header != "where",
                             overflow="fold")
        for row in rows:
            cells = {"name": Text(row["name"], style="bold"), "input shape": "x".join(map(str, row["input_shape"])),
                     "classes": str(row["classes"]), "train": str(row["train"]), "test": str(row["test"]),
                     "offline": Text("yes", style="green") if row["offline"] else Text("no (downloads)", style="yellow"),
                     "where": row["where"], "source": row["source"]}
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


def sweep_table(summaries: Sequence[Summary], factors: Sequence[str], *, metric: str, title: str,
                paired: dict | None = None) -> Table:
    """One row per combination of levels, sorted as given; gradient flow and paired differences."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for factor in factors:
        table.add_column(factor, style="bold")
    headers = ["train acc", "val acc", "test acc", "grad first/last (start → end)", "diagnosis", "status"]
    shown = {"train_acc", "val_acc", "test_acc"}
    if metric not in shown:  # the column the rows are sorted by is always shown, first
        headers.insert(0, metric.replace("_", " "))
    if paired:
        headers.insert(3, f"Δ {metric} vs best [95% CI] W/T/L")
    for header in headers:
        table.add_column(header, justify="left" if header in ("diagnosis", "status") else "right")
    best = _best(summaries, metric, not metric.endswith("loss"))
    for i, s in enumerate(summaries):
        tags = s.trials[0].tags
        cells: list[Text | str] = [str(tags.get(f, "?")) for f in factors]
        st = s.stats
        values = [_fmt(st["train_acc"]), _fmt(st["val_acc"]), _fmt(st["test_acc"])]
        if metric not in shown:
            values.insert(0, _fmt(st[metric]) if metric in st else "-")
        cells += values
        if paired:
            cells.append(_paired(paired.get(s.label)))
        cells.append(f"{_ratio(st['grad_ratio_start'])} → {_ratio(st['grad_ratio_end'])}")
        cells += [_diagnosis(s), _status(s)]
        style = "bold green" if i == best else ""
        table.add_row(*cells, style=style)
    n = max((len(s.trials) for s in summaries), default=1)
    table.caption = (f"sorted by {metric}; best row in green" + (f"; mean ± std over {n} seeds" if n > 1 else "")
                     + "; grad first/last = first-layer / last-layer gradient norm (≪1: vanishing)"
                     + _error_notes(summaries))
    return table


def main_effects_table(effects: Sequence, metric: str) -> Table:
    """The ablation matrix: each factor's levels with the metric averaged over everything else."""
    table = Table(title=f"Main effects: mean {metric} per level, over all other factors and seeds", title_justify="left",
                  header_style="bold")
    for header in ("factor", "level", f"mean {metric}", "± std", "trials"):
        table.add_column(header, justify="left" if header in ("factor", "level") else "right")
    previous = None
    for e in effects:
        style = "bold green" if e.best else ""
        table.add_row(e.factor if e.factor != previous else "", e.level + (" ★" if e.best else ""),
                      "-" if e.stat.n == 0 else f"{e.stat.mean:.4f}", "-" if e.stat.n < 2 else f"{e.stat.std:.4f}",
                      str(e.stat.n), style=style)
        previous = e.factor
    return table


def sensitivity_table(rows: Sequence[dict], metric: str, tolerance: float) -> Table:
    """``dnnbench lr-sensitivity``: best learning rate and how forgiving each optimizer is."""
    table = Table(title=f"Learning-rate sensitivity ({metric}; forgiving range = within {tolerance:g} of the best)",
                  title_justify="left", header_style="bold")
    for header in ("optimizer", "best lr", f"best {metric}", "forgiving range", "width (decades)", "curve (grid, low → high lr)"):
        table.add_column(header, justify="left" if header in ("optimizer", "forgiving range", "curve (grid, low → high lr)") else "right")
    bars = "▁▂▃▄▅▆▇█"
    for row in rows:
        values = [v if v is not None and not math.isnan(v) else None for v in row["curve"]]
        finite = [v for v in values if v is not None]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        # the tallest bar is the best rate: for a loss, the lowest value
        goodness = [None if v is None else (hi - v if metric.endswith("loss") else v - lo) for v in values]
        spark = "".join("✗" if g is None else bars[int(round(g / (hi - lo or 1) * (len(bars) - 1)))] for g in goodness)
        table.add_row(Text(row["optimizer"], style="bold"), f"{row['best_lr']:.3g}", f"{row['best_metric']:.4f}",
                      f"{row['range'][0]:.3g} … {row['range'][1]:.3g}", f"{row['width_decades']:.2f}", spark)
    table.caption = (f"curve: the taller the bar, the better the {metric}"
                     + (" (lower loss)" if metric.endswith("loss") else "") + "; ✗ = diverged; one compiled program per optimizer")
    return table


def expected_best_table(rows: Sequence[dict], metric: str) -> Table:
    """``dnnbench tune``: the expected best ``metric`` after k of the N candidates (Dodge et al.)."""
    from dnnbench.tuning import sparkline

    n = max((row["n"] for row in rows), default=0)
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if k <= n]
    if n and n not in ks:
        ks.append(n)
    table = Table(title=f"Expected best {metric.replace('_', ' ')} after k tries (of N candidates)",
                  title_justify="left", header_style="bold")
    table.add_column("optimizer", style="bold", overflow="fold")
    for k in ks:
        table.add_column(f"k={k}", justify="right", no_wrap=True)
    table.add_column("curve", no_wrap=True)
    table.add_column("best candidate", overflow="fold")
    for row in rows:
        curve = row["curve"]
        cells = [f"{curve[k - 1]:.4f}" if k <= len(curve) else "" for k in ks]
        best = row["best"]
        text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items()) \
            if best else "every candidate diverged"
        if row["diverged"]:
            text += f" ({row['diverged']} of {row['n']} diverged)"
        table.add_row(row["optimizer"], *cells, sparkline(curve), text)
    table.caption = ("E(best of k) over k candidates drawn without replacement from the N searched (exact order "
                     "statistics); k=1 is the mean candidate, k=N the best; validation set only")
    return table


def target_table(rows: Sequence[dict], target_label: str) -> Table:
    """Time to target per comparison row: median epochs, steps and training seconds over seeds."""
    table = Table(title=f"Time to target {target_label}", title_justify="left", header_style="bold")
    for name, justify in (("row", "left"), ("reached", "right"), ("epochs", "right"), ("steps", "right"),
                          ("train s", "right")):
        table.add_column(name, justify=justify, no_wrap=justify == "right", overflow="fold")
    for row in rows:
        never = row["epoch"] is None
        table.add_row(row["label"], f"{row['reached']}/{row['n']}",
                      "never" if never else f"{row['epoch']:g}",
                      "never" if never or row["step"] is None else f"{row['step']:,.0f}",
                      "never" if never or row["train_s"] is None else f"{row['train_s']:.2f}")
    table.caption = ("median over seeds (never: not reached by a majority); steps are machine-independent, "
                     "seconds are per compiled program (programs share the cores)")
    return table
