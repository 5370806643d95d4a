"""HTML tables of the report: the comparison per label, every trial, gradient flow, a check.

Every cell is escaped text. Numeric cells carry their raw value in ``data-v`` so the page's small
sort script orders them as numbers; without script the tables read the same, in file order.
Trials that did not end ok are highlighted (a class and a ⚠ mark, not colour alone).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from dnnbench.analysis import export, stats
from dnnbench.analysis.checking import FAILING, CheckReport
from dnnbench.analysis.export import RowTrial
from dnnbench.render.html.sections import Section
from dnnbench.results.metrics import BEST_VAL_ACC, HEADLINE

#: (header, metric, higher is better) of the comparison table's metric columns.
METRIC_COLUMNS = (
    ("train loss", "train_loss", False),
    ("train acc", "train_acc", True),
    ("val acc", "val_acc", True),
    ("best val acc", "best_val_acc", True),
    ("test acc", "test_acc", True),
)
MESSAGE_CHARS = 240


def cell(text: str, value: float | None = None, *, cls: str = "", raw: bool = False) -> str:
    attrs = f' class="{cls}"' if cls else ""
    if value is not None and math.isfinite(value):
        attrs += f' data-v="{value:.10g}"'
    return f"<td{attrs}>{text if raw else escape(text)}</td>"


def table(headers: Sequence[str], rows: Iterable[str], *, caption: str = "", numeric: Sequence[bool] = ()) -> str:
    """A sortable table: ``rows`` are ready ``<tr>`` strings."""
    heads = "".join(
        f'<th scope="col"{" class=num" if i < len(numeric) and numeric[i] else ""}>{escape(h)}</th>'
        for i, h in enumerate(headers)
    )
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return (
        f'<div class="scroll"><table class="sortable">{cap}<thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def stat_text(stat: stats.Stat, digits: int = 4) -> str:
    if stat.n == 0 or not math.isfinite(stat.mean):
        return "–"
    if stat.n > 1:  # one digit fewer over seeds, as in the terminal: the std says the last one is noise
        return f"{stat.mean:.{max(digits - 1, 1)}f} ± {stat.std:.{max(digits - 1, 1)}f}"
    return f"{stat.mean:.{digits}f}"


def show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(show, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={show(v)}" for k, v in value.items())
    return "–" if value is None else str(value)


def _best(summaries: Sequence[stats.Summary], metric: str, higher: bool) -> str | None:
    means = {
        s.label: s.stats[metric].mean for s in summaries if s.stats[metric].n and math.isfinite(s.stats[metric].mean)
    }
    if len(means) < 2:
        return None
    return (max if higher else min)(means, key=means.__getitem__)


def origin(row: dict[str, Any]) -> str:
    """Where the optimizer came from: ``builtin``, ``optax: lion``, ``file: examples/lion.py``."""
    found = row.get("optimizer_origin")
    if not isinstance(found, dict):
        return ""
    kind, spec = found.get("kind"), found.get("spec")
    return str(kind) if not spec or spec == row.get("optimizer") else f"{kind}: {spec}"


def _values(trials: Sequence[RowTrial], get: Any) -> str:
    return "; ".join(dict.fromkeys(v for v in (get(t) for t in trials) if v))


def _hyperparams(trials: Sequence[RowTrial]) -> str:
    keys = list(dict.fromkeys(k for t in trials for k in (t.row.get("hyperparams") or {})))
    parts = []
    for key in keys:
        values = dict.fromkeys(show((t.row.get("hyperparams") or {}).get(key)) for t in trials)
        parts.append(f"{export.SHORT.get(key, key)}={'|'.join(values)}")
    return ", ".join(parts)


def _evidence(trial: RowTrial) -> str:
    diagnosis = trial.diagnosis or {}
    evidence = diagnosis.get("evidence") or {}
    items = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(show(v))}</td></tr>" for k, v in evidence.items())
    remedies = "".join(f"<li><code>{escape(str(r))}</code></li>" for r in diagnosis.get("remedies") or [])
    return (
        f"<p>seed {escape(str(trial.spec.seed))}: <b>{escape(str(diagnosis.get('label')))}</b></p>"
        + (f'<table class="kv">{items}</table>' if items else "")
        + (f"<p>next experiments:</p><ol>{remedies}</ol>" if remedies else "")
    )


def _diagnosis_cell(summary: stats.Summary[RowTrial]) -> str:
    trials = summary.trials
    if not summary.diagnoses:
        return cell("–")
    counts = ", ".join(
        f"{k}" + ("" if n == len(trials) else f" ×{n}")
        for k, n in sorted(summary.diagnoses.items(), key=lambda kv: -kv[1])
    )
    first: dict[str, RowTrial] = {}
    for t in trials:
        if t.diagnosis:
            first.setdefault(t.diagnosis["label"], t)
    body = "".join(_evidence(t) for t in first.values())
    return cell(f"<details><summary>{escape(counts)}</summary>{body}</details>", raw=True)


def status_text(trial: RowTrial) -> str:
    if trial.status == "diverged":
        return f"diverged @ epoch {trial.diverged_epoch}" if trial.diverged_epoch else "diverged"
    message = trial.row.get("error")
    return f"{trial.status}: {message}" if message else trial.status


def _status_cell(summary: stats.Summary[RowTrial]) -> tuple[str, bool]:
    trials = summary.trials
    parts = []
    for status, count in summary.statuses.items():
        text = status if count == len(trials) else f"{status} ×{count}"
        if status == "diverged":
            epochs = sorted({t.diverged_epoch for t in trials if t.diverged_epoch})
            text += (" @ epoch " + ",".join(map(str, epochs))) if epochs else ""
        parts.append(text)
    bad = any(s != "ok" for s in summary.statuses)
    messages = list(dict.fromkeys(str(t.row["error"]) for t in trials if t.row.get("error")))
    html = escape("; ".join(parts))
    if messages:
        html += "".join(
            f'<div class="msg">{escape(m[:MESSAGE_CHARS])}{"…" if len(m) > MESSAGE_CHARS else ""}</div>'
            for m in messages
        )
    return cell(("⚠ " if bad else "") + html, raw=True, cls="status"), bad


def _paired_cell(section: Section, label: str) -> str:
    paired = section.paired.get(label)
    if paired is None or not math.isfinite(paired.mean_diff):
        return cell("–")
    if paired.n and paired.wins == paired.losses == 0 and abs(paired.mean_diff) < 1e-12:
        return cell("best", 0.0)
    lo, hi = paired.ci95
    return cell(
        f"{paired.mean_diff:+.4f} [{lo:+.4f}, {hi:+.4f}] {paired.wins}/{paired.ties}/{paired.losses}", paired.mean_diff
    )


def comparison(section: Section) -> str:
    """The terminal's comparison table: one row per label, best mean of each metric in bold."""
    show_paired = bool(section.paired)
    show_grad = any(s.stats["grad_ratio_start"].n for s in section.summaries)
    reach = _time_to_target(section)
    headers = ["row", *section.tag_keys, "hyperparameters (optimizer origin)"]
    headers += [h for h, _, _ in METRIC_COLUMNS] + ["best epoch"]
    headers += ["Δ test acc [95% CI] W/T/L"] if show_paired else []
    headers += ["grad first/last start → end"] if show_grad else []
    headers += [f"time to {reach[0]}: median epoch · steps (reached)"] if reach else []
    headers += ["diagnosis", "compile + train s", "samples/s", "status"]
    best = {m: _best(section.summaries, m, higher) for _, m, higher in METRIC_COLUMNS}
    rows = []
    for s in section.summaries:
        trials = s.trials
        cells = [cell(s.label, cls="label")]
        cells += [cell(_values(trials, lambda t, k=key: t.tags.get(k))) for key in section.tag_keys]
        where = _values(trials, lambda t: origin(t.row))
        cells.append(
            cell(
                escape(_hyperparams(trials)) + (f'<div class="muted">{escape(where)}</div>' if where else ""), raw=True
            )
        )
        for _, metric, _ in METRIC_COLUMNS:
            st = s.stats[metric]
            text = escape(stat_text(st))
            cells.append(cell(f"<strong>{text}</strong>" if best[metric] == s.label else text, st.mean, raw=True))
        cells.append(cell(stat_text(s.stats["best_epoch"], 1), s.stats["best_epoch"].mean))
        if show_paired:
            cells.append(_paired_cell(section, s.label))
        if show_grad:
            a, b = s.stats["grad_ratio_start"], s.stats["grad_ratio_end"]
            cells.append(cell(f"{a.mean:.2g} → {b.mean:.2g}" if a.n else "–", b.mean))
        if reach:
            r = reach[1].get(s.label) or {}
            text = f"epoch {show(r['epoch'])} · {show(r['step'])} steps" if r.get("epoch") is not None else "never"
            cells.append(cell(f"{text} ({r.get('reached', 0)}/{r.get('n', 0)})", export.number(r.get("step"))))
        cells.append(_diagnosis_cell(s))
        compile_s, train_s, rate = (s.stats[k] for k in ("compile_s", "train_s", "samples_per_s"))
        cells.append(cell(f"{fmt(compile_s.mean, 1)} + {fmt(train_s.mean, 2)}", compile_s.mean + train_s.mean))
        cells.append(cell(f"{rate.mean:,.0f}" if rate.n else "–", rate.mean))
        status, bad = _status_cell(s)
        cells.append(status)
        rows.append(f"<tr{' class=bad' if bad else ''}>{''.join(cells)}</tr>")
    caption = (
        f"mean ± std over {section.seeds} seeds (ok trials only); best mean of each metric in bold"
        + (
            "; Δ = seed-paired difference in test accuracy to the best row, bootstrap 95% CI, wins/ties/losses"
            if show_paired
            else ""
        )
        if section.seeds > 1
        else "one seed per row; best of each metric in bold"
    )
    return table(headers, rows, caption=caption)


def _time_to_target(section: Section) -> tuple[str, dict[str, dict[str, Any]]] | None:
    """The recorded target's name and, per label, ``targets.over_seeds``'s medians over seeds."""
    from dnnbench.analysis import targets

    recorded = [t.row["target"] for t in section.trials if isinstance(t.row.get("target"), dict)]
    if not recorded:
        return None
    names = dict.fromkeys(
        f"{r.get('metric')} {'>=' if str(r.get('metric')).endswith('acc') else '<='} {show(r.get('value'))}"
        for r in recorded
    )
    found = [targets.over_seeds(s.label, [t.row.get("target") for t in s.trials]) for s in section.summaries]
    return " / ".join(names), {r["label"]: r for r in found}


def trials(section: Section) -> str:
    """Every trial of the section, one line each, with its tags (any tag becomes a column)."""
    headers = [
        "id",
        "row",
        "seed",
        *section.tag_keys,
        "status",
        "test acc",
        "best val acc",
        "best epoch",
        "stopped epoch",
        "diagnosis",
        "hyperparameters",
        "origin",
        "train s",
    ]
    rows = []
    for t in section.trials:
        bad = t.status != "ok"
        message = status_text(t)
        cells = [
            cell(str(t.row.get("id")), cls="mono"),
            cell(t.label),
            cell(show(t.spec.seed), export.number(t.spec.seed)),
        ]
        cells += [cell(t.tags.get(k, "")) for k in section.tag_keys]
        cells.append(cell(("⚠ " if bad else "") + escape(message[:MESSAGE_CHARS]), raw=True, cls="status"))
        cells += [cell(fmt(t.metrics.get(m, math.nan)), t.metrics.get(m)) for m in (HEADLINE, BEST_VAL_ACC)]
        cells.append(cell(show(t.row.get("best_epoch")), export.number(t.row.get("best_epoch"))))
        cells.append(cell(show(t.row.get("stopped_epoch")), export.number(t.row.get("stopped_epoch"))))
        cells.append(cell((t.diagnosis or {}).get("label", "–")))
        cells.append(cell(show(t.row.get("hyperparams") or {})))
        cells.append(cell(origin(t.row)))
        cells.append(cell(fmt(t.timing.get("train_s", math.nan), 2), t.timing.get("train_s")))
        rows.append(f"<tr{' class=bad' if bad else ''}>{''.join(cells)}</tr>")
    return table(headers, rows)


def gradient_flow(section: Section) -> str:
    """Per row and layer (input first): the mean gradient norm of the weights at the first and the last epoch."""
    layers = max((len(n[0]) for t in section.trials if (n := t.history.get("grad_norm")) and n[0]), default=0)
    if not layers:
        return ""
    rows = []
    for s in section.summaries:
        cells = [cell(s.label, cls="label")]
        for layer in range(layers):
            first, last = (
                stats.Stat.of(
                    [
                        export.number(n[e][layer])
                        for t in s.trials
                        if (n := t.history.get("grad_norm")) and len(n[e]) > layer
                    ]
                )
                for e in (0, -1)
            )
            cells.append(cell(f"{first.mean:.3g} → {last.mean:.3g}" if first.n else "–", last.mean))
        a, b = s.stats["grad_ratio_start"], s.stats["grad_ratio_end"]
        cells.append(cell(f"{a.mean:.2g} → {b.mean:.2g}" if a.n else "–", b.mean))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    headers = ["row", *[f"layer {i + 1}" for i in range(layers)], "first/last ratio"]
    return table(
        headers,
        rows,
        caption="mean gradient norm of each layer's weights, first epoch → last epoch "
        "(layer 1 = input layer); a first/last ratio ≪ 1 is a vanishing gradient",
    )


def check(report: CheckReport) -> str:
    """``dnnbench check`` against the baseline: regressions first, then the rest in file order."""
    entries = sorted(report.entries, key=lambda e: e.verdict not in FAILING)
    rows = []
    for e in entries:
        bad = e.verdict in FAILING
        cells = [
            cell(e.label),
            cell(e.trial_id, cls="mono"),
            cell(e.metric),
            cell(fmt(e.baseline), e.baseline),
            cell(fmt(e.current), e.current),
            cell("–" if e.difference is None else f"{e.difference:+.4f}", e.difference),
            cell(("⚠ " if bad else "") + e.verdict, cls="status"),
        ]
        rows.append(f"<tr{' class=bad' if bad else ''}>{''.join(cells)}</tr>")
    return table(["trial", "id", "metric", "baseline", "current", "Δ", "verdict"], rows, caption=report.summary())


def kv(items: dict[str, Any]) -> str:
    """A two-column key/value table (the run's environment, data, options)."""
    rows = "".join(
        f"<tr><th scope=row>{escape(str(k))}</th><td>{escape(show(v))}</td></tr>"
        for k, v in items.items()
        if v not in (None, "", [], {})
    )
    return f'<table class="kv">{rows}</table>'


def pretty_json(value: Any) -> str:
    return escape(json.dumps(value, indent=1, default=str))
