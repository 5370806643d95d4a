"""Regression check of a results file against a baseline, for CI: which trials got worse.

Trials are matched by ``id`` (a hash of the full config, seed and data), so a check compares the
same experiment run twice. Accuracy-like metrics (``*_acc``) are worse when they drop by more than
the tolerance, loss-like ones (``*_loss``) when they rise by more than it. A check fails when a
metric is worse, a trial newly diverged, a current trial ended in error, or a baseline trial is
missing from the current file. An empty baseline is an error (nothing to compare: a gate with a
lost baseline must not pass); trials only in the current file are listed as new, not as passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dnnbench import export
from dnnbench.errors import DataError, InputError

Row = dict[str, Any]

VERDICTS = ("ok", "worse", "better", "newly diverged", "error", "missing", "new")
FAILING = ("worse", "newly diverged", "error", "missing")
BROKEN = ("diverged", "error")
# Absorbs float noise in ``current - baseline`` so a change of exactly the tolerance is ok.
_EPS = 1e-12


def higher_is_better(metric: str) -> bool:
    """True for ``*_acc``, False for ``*_loss``; ``InputError`` for anything else."""
    if metric.endswith("_acc"):
        return True
    if metric.endswith("_loss"):
        return False
    raise InputError(f"metric {metric!r} is neither accuracy-like (*_acc) nor loss-like (*_loss); "
                     f"valid: {', '.join(export.FINAL_METRICS)}")


@dataclass(frozen=True)
class CheckEntry:
    """One trial and metric: both values, their difference (current - baseline), the verdict."""

    trial_id: str
    label: str
    metric: str
    baseline: float | None
    current: float | None
    difference: float | None
    verdict: str


@dataclass(frozen=True)
class CheckReport:
    """Every entry of a check, in baseline order then new trials, and the rule that judged them."""

    entries: list[CheckEntry]
    tolerance: float
    metrics: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(e.verdict in FAILING for e in self.entries)

    @property
    def failures(self) -> list[CheckEntry]:
        return [e for e in self.entries if e.verdict in FAILING]

    def summary(self) -> str:
        """One line: pass/fail, what failed, and the rule."""
        compared = {e.trial_id for e in self.entries if e.verdict != "new"}
        new = list(dict.fromkeys(e.label for e in self.entries if e.verdict == "new"))
        rule = f"tolerance {self.tolerance:g} on {', '.join(self.metrics)}"
        counts = ", ".join(f"{n} {v}" for v, n in self.counts.items() if n and v not in ("ok", "new"))
        listed = f"; {len(new)} new in CURRENT, not compared: {', '.join(new)}" if new else ""
        if self.failed:
            return f"FAIL: {counts} ({len(compared)} trials, {rule}){listed}"
        return (f"PASS: {len(compared)} trials within {rule}" + (f"; {counts}" if counts else "")
                + listed)


def _value(row: Row | None, metric: str) -> float | None:
    if row is None:
        return None
    value = export.number((row.get("metrics") or {}).get(metric))
    return None if math.isnan(value) else value


def _by_id(rows: Sequence[Row], what: str) -> dict[str, Row]:
    export.require(rows, what)
    out: dict[str, Row] = {}
    for row in rows:
        if row["id"] in out:
            raise DataError(f"{what}: trial id {row['id']} appears twice")
        out[row["id"]] = row
    return out


def _verdict(base: Row | None, cur: Row | None, b: float | None, c: float | None, metric: str,
             tolerance: float) -> str:
    if cur is None:
        return "missing"
    if base is None:
        return "new"
    if cur.get("status") == "error":
        return "error"
    if cur.get("status") in BROKEN and base.get("status") == "ok":
        return "newly diverged"
    if b is None or c is None:
        # A number that disappeared (e.g. an interrupted run) is a regression; one that appeared is not.
        return "worse" if c is None and b is not None else "better" if b is None and c is not None else "ok"
    gain = (c - b) if higher_is_better(metric) else (b - c)
    if gain < -tolerance - _EPS:
        return "worse"
    if gain > tolerance + _EPS:
        return "better"
    return "ok"


def check(baseline_rows: Sequence[Row], current_rows: Sequence[Row], *, tolerance: float = 0.01,
          metrics: Sequence[str] = ("test_acc",)) -> CheckReport:
    """Compare ``current_rows`` with ``baseline_rows`` trial by trial (matched by ``id``)."""
    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
        raise InputError(f"--tolerance must be a number >= 0, got {tolerance!r}")
    metrics = tuple(dict.fromkeys(metrics))
    if not metrics:
        raise InputError("no metric to check; give --metric, e.g. test_acc")
    for metric in metrics:
        higher_is_better(metric)
    if not baseline_rows:
        raise DataError("the baseline has no trials to compare; a check against an empty or lost baseline "
                        "cannot pass (write one with --out, then commit it)")
    base, cur = _by_id(baseline_rows, "baseline"), _by_id(current_rows, "current")
    swept = export.swept_keys([*base.values(), *cur.values()])
    entries = []
    for trial_id in [*base, *(i for i in cur if i not in base)]:
        b_row, c_row = base.get(trial_id), cur.get(trial_id)
        name = export.trial_label(b_row or c_row, swept)  # type: ignore[arg-type]
        for metric in metrics:
            b, c = _value(b_row, metric), _value(c_row, metric)
            diff = c - b if b is not None and c is not None else None
            verdict = _verdict(b_row, c_row, b, c, metric, float(tolerance))
            entries.append(CheckEntry(trial_id, name, metric, b, c, diff, verdict))
    counts = {v: sum(e.verdict == v for e in entries) for v in VERDICTS}
    return CheckReport(entries, float(tolerance), metrics, counts)


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def markdown(report: CheckReport) -> str:
    """A GitHub-flavoured table of every entry and a one-line verdict (for a job summary)."""
    mark = {"worse": "❌ worse", "newly diverged": "❌ newly diverged", "error": "❌ error", "missing": "❌ missing",
            "better": "✅ better", "new": "🆕 new", "ok": "ok"}
    lines = ["### dnnbench check", "",
             "| trial | id | metric | baseline | current | Δ | verdict |",
             "|---|---|---|---:|---:|---:|---|"]
    for e in report.entries:
        name = e.label.replace("|", "\\|")
        lines.append(f"| {name} | `{e.trial_id}` | {e.metric} | {_cell(e.baseline)} | {_cell(e.current)} "
                     f"| {_cell(e.difference, True)} | {mark[e.verdict]} |")
    verdict = report.summary()
    lines += ["", f"**{verdict.split(':', 1)[0]}**:{verdict.split(':', 1)[1]}", ""]
    return "\n".join(lines)


def github_benchmark(rows: Sequence[Row], *, metrics: Sequence[str] = ("test_acc",)) -> list[dict[str, Any]]:
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
                out.append({"name": f"{export.trial_label(row, swept)} {metric}", "unit": "accuracy",
                            "value": value, "extra": f"id {row['id']}, status {row.get('status')}"})
    return out
