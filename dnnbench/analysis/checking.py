"""Regression check of a results file against a baseline, for CI: which comparison rows got worse.

Trials are matched by ``id`` (a hash of the full config, seed and data), so a check compares the
same experiment run twice; trials of one comparison row (one label over its seeds) are compared
as a whole. Per row and metric the seed-paired changes (current - baseline, same trial id) give a
mean and a Student-t 95% interval: the row is ``worse`` when the whole interval lies beyond the
tolerance in the bad direction, ``uncertain`` when the interval straddles it, ``better`` when it
lies beyond it in the good direction, else ``ok``. With one seed there is no interval and the
change itself is judged (the per-trial rule). Accuracy-like metrics (``*_acc``) get worse when they
drop, loss-like ones (``*_loss``) when they rise.

Per trial, a check also fails when a trial newly diverged, ended in error, lost its value, or is
missing from the current file. An empty baseline is an error (a gate with a lost baseline must not
pass); trials only in the current file are listed as new, not as passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dnnbench.analysis import export
from dnnbench.analysis.stats import Stat
from dnnbench.errors import DataError, InputError, printable
from dnnbench.results.metrics import FINAL, HEADLINE

Row = dict[str, Any]

ROW_VERDICTS = ("ok", "worse", "uncertain", "better")
TRIAL_VERDICTS = ("newly diverged", "error", "lost value", "missing", "new")
VERDICTS = (*ROW_VERDICTS, *TRIAL_VERDICTS)
FAILING = ("worse", "newly diverged", "error", "lost value", "missing")
BROKEN = ("diverged", "error")
DEFAULT_TOLERANCE = 0.005
# Absorbs float noise in ``current - baseline`` so a change of exactly the tolerance is ok.
_EPS = 1e-12


def higher_is_better(metric: str) -> bool:
    """True for ``*_acc``, False for ``*_loss``; ``InputError`` for anything else."""
    if metric.endswith("_acc"):
        return True
    if metric.endswith("_loss"):
        return False
    raise InputError(
        f"metric {metric!r} is neither accuracy-like (*_acc) nor loss-like (*_loss); valid: {', '.join(FINAL)}"
    )


@dataclass(frozen=True)
class RowCheck:
    """One comparison row and metric over its paired seeds: the means, the mean change (current -
    baseline), its 95% interval (``None`` with one seed) and the verdict."""

    label: str
    metric: str
    n: int
    baseline: float
    current: float
    difference: float
    ci95: tuple[float, float] | None
    verdict: str


@dataclass(frozen=True)
class CheckEntry:
    """One trial and metric: both values, their difference, and the verdict: the trial's own
    (missing, new, error, ...) or else the verdict of its row."""

    trial_id: str
    label: str
    metric: str
    baseline: float | None
    current: float | None
    difference: float | None
    verdict: str
    row: str = ""


@dataclass(frozen=True)
class CheckReport:
    """Every row and trial of a check, in baseline order then new trials, and the rule that judged them."""

    rows: list[RowCheck]
    entries: list[CheckEntry]
    tolerance: float
    metrics: tuple[str, ...]
    strict: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failing(self) -> tuple[str, ...]:
        return (*FAILING, "uncertain") if self.strict else FAILING

    @property
    def problems(self) -> list[CheckEntry]:
        """Trials with a verdict of their own (not their row's)."""
        return [e for e in self.entries if e.verdict in TRIAL_VERDICTS]

    @property
    def failed(self) -> bool:
        return any(r.verdict in self.failing for r in self.rows) or any(
            e.verdict in self.failing for e in self.problems
        )

    def summary(self) -> str:
        """One line: pass/fail, what failed or changed, and the rule."""
        compared = len({e.trial_id for e in self.entries if e.verdict != "new"})
        new = list(dict.fromkeys(e.label for e in self.entries if e.verdict == "new"))
        labels = len({r.label for r in self.rows})
        rule = f"tolerance {self.tolerance:g} on {', '.join(self.metrics)}" + (", strict" if self.strict else "")
        counts = ", ".join(f"{n} {v}" for v, n in self.counts.items() if n and v not in ("ok", "new"))
        listed = f"; {len(new)} new in CURRENT, not compared: {', '.join(new)}" if new else ""
        if self.failed:
            return f"FAIL: {counts} ({labels} rows, {compared} trials, {rule}){listed}"
        return f"PASS: {labels} rows ({compared} trials) within {rule}" + (f"; {counts}" if counts else "") + listed


def _value(row: Row | None, metric: str) -> float | None:
    if row is None:
        return None
    value = export.number((row.get("metrics") or {}).get(metric))
    # an infinite accuracy or loss is no measurement: a lost value, never "better"
    return value if math.isfinite(value) else None


def _by_id(rows: Sequence[Row], what: str) -> dict[str, Row]:
    export.require(rows, what)
    out: dict[str, Row] = {}
    for row in rows:
        if row["id"] in out:
            raise DataError(f"{what}: trial id {row['id']} appears twice")
        out[row["id"]] = row
    return out


def _trial_verdict(base: Row | None, cur: Row | None, b: float | None, c: float | None) -> str | None:
    """The trial's own verdict, or ``None`` when its row's verdict applies."""
    if cur is None:
        return "missing"
    if base is None:
        return "new"
    if cur.get("status") == "error":
        return "error"
    if cur.get("status") in BROKEN and base.get("status") == "ok":
        return "newly diverged"
    if c is None and b is not None:
        return "lost value"  # e.g. an interrupted run: a number that disappeared is a regression
    return None


def _judge(gain: tuple[float, float], tolerance: float) -> str:
    """The verdict of a change in the good direction, known to lie in ``[low, high]``."""
    low, high = gain
    if high < -tolerance - _EPS:
        return "worse"
    if low < -tolerance - _EPS:
        return "uncertain"
    if low > tolerance + _EPS:
        return "better"
    return "ok"


def row_check(label: str, metric: str, pairs: Sequence[tuple[float, float]], tolerance: float) -> RowCheck:
    """Judge one row from its (baseline, current) values, one pair per seed."""
    diffs = [c - b for b, c in pairs]
    base, cur = (sum(v) / len(v) for v in zip(*pairs, strict=True))
    if len(diffs) == 1:
        ci = None
        interval = (diffs[0], diffs[0])
    else:
        stat = Stat.of(diffs)
        # Identical changes on every seed have std 0: the interval is the point, not NaN.
        ci = interval = stat.ci95 if stat.std > 0 else (stat.mean, stat.mean)
    mean = sum(diffs) / len(diffs)
    gain = interval if higher_is_better(metric) else (-interval[1], -interval[0])
    return RowCheck(label, metric, len(diffs), base, cur, mean, ci, _judge(gain, tolerance))


def check(
    baseline_rows: Sequence[Row],
    current_rows: Sequence[Row],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    metrics: Sequence[str] = (HEADLINE,),
    strict: bool = False,
) -> CheckReport:
    """Compare ``current_rows`` with ``baseline_rows`` per comparison row over seeds (trials matched by ``id``)."""
    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
        raise InputError(f"--tolerance must be a number >= 0, got {tolerance!r}")
    metrics = tuple(dict.fromkeys(metrics))
    if not metrics:
        raise InputError("no metric to check; give --metric, e.g. test_acc")
    for metric in metrics:
        higher_is_better(metric)
    if not baseline_rows:
        raise DataError(
            "the baseline has no trials to compare; a check against an empty or lost baseline "
            "cannot pass (write one with --out, then commit it)"
        )
    base, cur = _by_id(baseline_rows, "baseline"), _by_id(current_rows, "current")
    swept = export.swept_keys([*base.values(), *cur.values()])
    trials = []  # (id, row label, trial label, metric, b, c, own verdict)
    for trial_id in [*base, *(i for i in cur if i not in base)]:
        b_row, c_row = base.get(trial_id), cur.get(trial_id)
        either: Row = b_row or c_row  # type: ignore[assignment]
        for metric in metrics:
            b, c = _value(b_row, metric), _value(c_row, metric)
            trials.append(
                (
                    trial_id,
                    export.label(either, swept),
                    export.trial_label(either, swept),
                    metric,
                    b,
                    c,
                    _trial_verdict(b_row, c_row, b, c),
                )
            )
    pairs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _, row, _, metric, b, c, own in trials:
        if own is None and b is not None and c is not None:
            pairs.setdefault((row, metric), []).append((b, c))
    rows = [row_check(label, metric, p, float(tolerance)) for (label, metric), p in pairs.items()]
    verdict_of = {(r.label, r.metric): r.verdict for r in rows}
    entries = [
        CheckEntry(
            i,
            name,
            metric,
            b,
            c,
            c - b if b is not None and c is not None else None,
            own or verdict_of.get((row, metric), "ok"),
            row,
        )
        for i, row, name, metric, b, c, own in trials
    ]
    counts = {v: sum(r.verdict == v for r in rows) for v in ROW_VERDICTS}
    counts.update({v: sum(e.verdict == v for e in entries) for v in TRIAL_VERDICTS})
    return CheckReport(rows, entries, float(tolerance), metrics, strict, counts)


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def interval(row: RowCheck) -> str:
    """``[-0.0091, -0.0069]``, or ``one seed`` where the change itself was judged."""
    if row.ci95 is None:
        return "one seed"
    return f"[{row.ci95[0]:+.4f}, {row.ci95[1]:+.4f}]"


def rule(report: CheckReport) -> str:
    """The rule in words, for a caption or a step summary."""
    tol = f"{report.tolerance:g}"
    return (
        f"per row, the mean seed-paired change (current - baseline) and its Student-t 95% interval: worse "
        f"when the whole interval is beyond -{tol} (a loss: +{tol}), uncertain when it straddles it"
        f"{' (fails: --strict)' if report.strict else ''}, better when it is beyond +{tol}; one seed: the "
        f"change itself"
    )


def markdown(report: CheckReport) -> str:
    """GitHub-flavoured tables of every row (with its interval) and every trial problem, and the verdict."""
    mark = {
        "worse": "❌ worse",
        "newly diverged": "❌ newly diverged",
        "error": "❌ error",
        "missing": "❌ missing",
        "lost value": "❌ lost value",
        "better": "✅ better",
        "new": "🆕 new",
        "ok": "ok",
        "uncertain": "❌ uncertain" if report.strict else "⚠️ uncertain",
    }
    lines = [
        "### dnnbench check",
        "",
        "| row | metric | seeds | baseline | current | Δ mean | 95% interval | verdict |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in report.rows:
        lines.append(
            f"| {_md(r.label)} | {r.metric} | {r.n} | {_cell(r.baseline)} "
            f"| {_cell(r.current)} | {_cell(r.difference, True)} | {interval(r)} | {mark[r.verdict]} |"
        )
    if report.problems:
        lines += ["", "| trial | id | metric | baseline | current | verdict |", "|---|---|---|---:|---:|---|"]
        for e in report.problems:
            lines.append(
                f"| {_md(e.label)} | `{e.trial_id}` | {e.metric} | {_cell(e.baseline)} "
                f"| {_cell(e.current)} | {mark[e.verdict]} |"
            )
    verdict = report.summary()
    lines += ["", f"**{verdict.split(':', 1)[0]}**:{verdict.split(':', 1)[1]}", "", f"Rule: {rule(report)}.", ""]
    return printable("\n".join(lines))  # labels and ids come from files: no control character gets through


def github_benchmark(rows: Sequence[Row], *, metrics: Sequence[str] = (HEADLINE,)) -> list[dict[str, Any]]:
    """Entries for github-action-benchmark's ``customBiggerIsBetter`` tool, one per trial and metric.

    Only accuracy-like metrics fit a bigger-is-better chart; trials without a value (diverged) are
    left out rather than charted as 0, and the status goes into ``extra``.
    """
    for metric in metrics:
        if not higher_is_better(metric):
            raise InputError(f"github-benchmark is bigger-is-better; {metric!r} is a loss, use an *_acc metric")
    export.require(rows)
    swept = export.swept_keys(rows)
    out = []
    for row in rows:
        for metric in metrics:
            value = _value(row, metric)
            if value is not None:
                out.append(
                    {
                        "name": f"{export.trial_label(row, swept)} {metric}",
                        "unit": "accuracy",
                        "value": value,
                        "extra": f"id {row['id']}, status {row.get('status')}",
                    }
                )
    return out
