"""What one section of the HTML report shows, computed from results rows through ``dnnbench.analysis.stats``.

A section is one results file, or one experiment of a suite's results file. Its rows are read by
``results.read_results`` (the CLI does that), labelled as ``dnnbench report`` labels them
(``export.label``: optimizer, tag values, swept settings) and summarised by ``stats.summarize``
and ``stats.paired_to_best`` through ``export.RowTrial``, a read-only view of a row with the attributes
those functions read from a ``TrialResult`` -- so no JAX and no ``TrialSpec`` are needed to read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dnnbench.analysis import export, stats
from dnnbench.analysis.export import RowTrial
from dnnbench.results.metrics import HEADLINE

Row = dict[str, Any]

#: Rows of a results file that differ in one of these tags become separate sections.
SECTION_TAG = "experiment"


@dataclass
class Section:
    """One comparison: its rows as trials, a summary per label, and the paired differences."""

    title: str
    source: str
    header: Row | None
    trials: list[RowTrial]
    summaries: list[stats.Summary[RowTrial]]
    paired: dict[str, stats.Paired] = field(default_factory=dict)
    seeds: int = 1
    tag_keys: list[str] = field(default_factory=list)
    search: list[Row] = field(default_factory=list)  # a tune run's search candidates (phase = search)

    @property
    def command(self) -> str:
        return str(((self.header or {}).get("config") or {}).get("command") or "")


def _without_tag(row: Row, tag: str) -> Row:
    """``row`` without the section's own tag, so labels do not repeat the section's name."""
    out = {k: v for k, v in row.items() if k != tag}
    config = out.get("config")
    if isinstance(config, dict) and isinstance(config.get("tags"), dict):
        out["config"] = {**config, "tags": {k: v for k, v in config["tags"].items() if k != tag}}
    return out


def split(source: str, header: Row | None, rows: Sequence[Row]) -> list[Section]:
    """The sections of one results file: one per experiment (suite files), else one."""
    export.require(rows, source)
    parts: dict[str, list[Row]] = {}
    for row in rows:
        parts.setdefault(export.tags(row).get(SECTION_TAG, ""), []).append(row)
    out = []
    for name, members in parts.items():
        view = [_without_tag(r, SECTION_TAG) for r in members] if name else list(members)
        # a tune run: the comparison is its final rows (default vs tuned); the search candidates
        # feed the expected-best curves
        search = [r for r in view if export.tags(r).get("phase") == "search"]
        compared = [r for r in view if export.tags(r).get("phase") != "search"] or view
        command = ((header or {}).get("config") or {}).get("command") or "results"
        section = build(f"experiment {name}" if name else str(command), source, header, compared)
        section.search = search
        out.append(section)
    return out


def build(title: str, source: str, header: Row | None, rows: Sequence[Row]) -> Section:
    """Label, summarise (``stats.summarize``) and pair (``stats.paired_to_best``) ``rows``."""
    trials = export.row_trials(rows)
    summaries = stats.summarize(trials, lambda t: t.label)
    stats.add_grad_ratios(summaries)
    seeds = max((len({t.spec.seed for t in s.trials}) for s in summaries), default=1)
    paired = stats.paired_to_best(summaries, HEADLINE) if seeds > 1 and len(summaries) > 1 else {}
    tag_keys = list(dict.fromkeys(k for t in trials for k in t.tags))
    return Section(title, source, header, trials, summaries, paired, seeds, tag_keys)


def ranked(section: Section, limit: int) -> list[stats.Summary[RowTrial]]:
    """At most ``limit`` summaries for plots: the best by mean paired metric first, the rest dropped."""
    if len(section.summaries) <= limit:
        return list(section.summaries)

    def score(s: stats.Summary[RowTrial]) -> float:
        value = s.stats[HEADLINE].mean
        return -value if math.isfinite(value) else math.inf

    return sorted(section.summaries, key=score)[:limit]


def epoch_stats(summary: stats.Summary[RowTrial], metric: str) -> list[stats.Stat]:
    """Per epoch (from 1), the metric over the summary's seeds that have a finite value there."""
    series = [[export.number(v) for v in (t.history.get(metric) or [])] for t in summary.trials]
    length = max((len(s) for s in series), default=0)
    return [stats.Stat.of([s[e] for s in series if e < len(s)]) for e in range(length)]


def problems(section: Section) -> list[RowTrial]:
    """Trials that did not end ok (diverged, error, interrupted, ...): shown first, never dropped --
    a tune run's search candidates included."""
    search = [
        RowTrial.of(r, f"{r.get('optimizer')} candidate {export.tags(r).get('candidate', '?')}") for r in section.search
    ]
    return [t for t in [*section.trials, *search] if t.status != "ok"]


def uses_schedule(section: Section) -> bool:
    """True when a learning-rate schedule other than constant ran (the lr curve is worth a plot)."""
    for t in section.trials:
        schedule = (t.row.get("config") or {}).get("schedule") or {}
        if isinstance(schedule, dict) and schedule.get("kind") not in (None, "constant"):
            return bool(t.history.get("lr"))
        lr = [export.number(v) for v in t.history.get("lr") or []]
        if len({v for v in lr if math.isfinite(v)}) > 1:
            return True
    return False
