"""The HTML page: one self-contained file (inline CSS, inline SVG, a few lines of inline script).

Nothing is loaded from anywhere: no URL in ``src``/``href``, no web font, no CDN. The page is
complete without script (the script only sorts tables on a header click and opens every
``<details>`` before printing).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import dnnbench.render.html.plots as plots
import dnnbench.render.html.sections as sections
import dnnbench.render.html.tables as tables
from dnnbench.analysis import checking
from dnnbench.errors import printable
from dnnbench.results.metrics import HEADLINE

Row = dict[str, Any]

CSS = """
:root{--fg:#1b1b1b;--muted:#5a5a5a;--line:#d0d0d0;--bad:#fde4dc;--head:#f3f3f3;--accent:#0072B2}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);
 margin:0 auto;padding:1rem 1.5rem 3rem;max-width:1400px;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.25rem;border-bottom:2px solid var(--accent);padding-bottom:.2rem;
 margin-top:2.2rem}h3{font-size:1.1rem;margin-top:1.8rem}h4{margin:1.2rem 0 .4rem}h5{margin:.8rem 0 .2rem}
.muted,caption,figcaption{color:var(--muted);font-size:.9em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.4rem 0;font-variant-numeric:tabular-nums}
caption{caption-side:bottom;text-align:left;padding-top:.3rem}
th,td{border:1px solid var(--line);padding:.25rem .45rem;text-align:left;vertical-align:top}
thead th{background:var(--head);position:sticky;top:0}
table.sortable thead th{cursor:pointer}
th[data-dir=asc]::after{content:" ▲"}th[data-dir=desc]::after{content:" ▼"}
td[data-v]{text-align:right;white-space:nowrap}
td.label{font-weight:600;white-space:nowrap}.mono{font-family:ui-monospace,Menlo,Consolas,monospace}
tr.bad td{background:var(--bad)}td.status{white-space:nowrap}.msg{white-space:normal;max-width:32rem;
 font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
table.kv th{background:var(--head);font-weight:600;white-space:nowrap}table.kv td{max-width:60rem;word-break:break-word}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(22rem,1fr));gap:0 1.5rem}
.run{background:var(--head);padding:.5rem .8rem;border-radius:4px}
.problems{border-left:4px solid #D55E00;background:#fff6f1;padding:.4rem .8rem;margin:.6rem 0}
figure{margin:.6rem 0}figure svg{width:100%;max-width:1100px;height:auto}
details{margin:.3rem 0}summary{cursor:pointer}pre{white-space:pre-wrap;font-size:.85em}
code{font-size:.85em;word-break:break-word}
.sortable td{max-width:24rem}
@media print{body{max-width:none;padding:0;font-size:11px}thead th{position:static}h2,h3{break-after:avoid}
 figure,tr{break-inside:avoid}}
"""

# Click a header to sort by it (numbers by data-v, else text); click again to reverse. Before
# printing, open every <details> so the printout holds the evidence and the numbers too.
SCRIPT = """
document.querySelectorAll("table.sortable thead th").forEach(function(th){
 th.tabIndex=0;th.title="sort";
 function sort(){var t=th.closest("table"),b=t.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th);
  var asc=th.dataset.dir!=="asc";t.querySelectorAll("thead th").forEach(function(h){delete h.dataset.dir;});
  th.dataset.dir=asc?"asc":"desc";
  function key(r){var c=r.cells[i];if(!c)return[2,""];if(c.dataset.v!==undefined)return[0,parseFloat(c.dataset.v)];
   var s=c.textContent.trim();return[s==="\\u2013"||s===""?2:1,s.toLowerCase()];}
  Array.prototype.slice.call(b.rows).map(function(r){return[key(r),r];}).sort(function(x,y){
   if(x[0][0]!==y[0][0])return x[0][0]-y[0][0];var d=x[0][1]<y[0][1]?-1:x[0][1]>y[0][1]?1:0;return asc?d:-d;})
  .forEach(function(p){b.appendChild(p[1]);});}
 th.addEventListener("click",sort);th.addEventListener("keydown",function(e){if(e.key==="Enter")sort();});});
window.addEventListener("beforeprint",function(){document.querySelectorAll("details").forEach(function(d){d.open=true;});});
"""

ENVIRONMENT_KEYS = (
    "dnnbench",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "backend",
    "device_kind",
    "device_count",
    "python",
    "platform",
    "git_commit",
)


@dataclass(frozen=True)
class Source:
    """One results file as read by ``results.read_results``: its name, header, rows, and when it
    was last modified (``date``: the header's own date wins when it has one)."""

    name: str
    header: Row | None
    rows: list[Row]
    modified: str = ""


def _run(source: Source) -> str:
    header = source.header or {}
    env = header.get("environment") or {}
    config = header.get("config") or {}
    command = header.get("command")
    run = {
        "command": shlex.join(map(str, command)) if isinstance(command, list) else command,
        "date": header.get("date")
        or header.get("created")
        or (f"{source.modified} (file modified)" if source.modified else None),
        "trials": len(source.rows),
    }
    environment = {k: env.get(k) for k in ENVIRONMENT_KEYS} | {
        k: v for k, v in env.items() if k not in ENVIRONMENT_KEYS
    }
    options: dict[str, Any] = {}
    for key, value in config.items():
        if key in ("data", "experiments"):
            continue
        options[key] = value
    blocks = [
        ("run", run),
        ("environment", environment),
        ("data", header.get("data") or config.get("data") or {}),
        ("data options", config.get("data") or {}),
        ("model and training options", options),
    ]
    grid = "".join(f"<div><h4>{escape(title)}</h4>{tables.kv(items)}</div>" for title, items in blocks if items)
    full = (
        f"<details><summary>the whole header line (JSON)</summary><pre>{tables.pretty_json(header)}</pre></details>"
        if header
        else '<p class="problems">this results file has no header line: environment unknown</p>'
    )
    data = header.get("data") or {}
    sizes = "/".join(str(data[k]) for k in ("train", "val", "test") if k in data)
    facts = [
        ("command", run["command"]),
        ("date", run["date"]),
        ("dnnbench", env.get("dnnbench")),
        ("JAX", env.get("jax")),
        ("Flax", env.get("flax")),
        ("Optax", env.get("optax")),
        ("device", f"{env.get('backend')} ({env.get('device_kind')})" if env else None),
        ("commit", (env.get("git_commit") or "")[:12] or None),
        ("data", f"{data.get('source') or data.get('name')} (train/val/test {sizes})" if data else None),
    ]
    line = " · ".join(
        f"{escape(k)} <code>{escape(str(v))}</code>" if k == "command" else f"{escape(k)} <b>{escape(str(v))}</b>"
        for k, v in facts
        if v
    )
    return (
        f'<p class="run">{line}</p><details><summary>run, environment, data and options in full</summary>'
        f'<div class="grid">{grid}</div>{full}</details>'
    )


def _problems(section: sections.Section) -> str:
    bad = sections.problems(section)
    if not bad:
        return ""
    items = "".join(
        f"<li><b>{escape(t.label)}</b> seed {escape(str(t.spec.seed))}: {escape(tables.status_text(t))}</li>"
        for t in bad
    )
    counts: dict[str, int] = {}
    for t in bad:
        counts[t.status] = counts.get(t.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    return (
        f'<div class="problems"><details {"open" if len(bad) <= 20 else ""}><summary>⚠ {len(bad)} of '
        f"{len(section.trials) + len(section.search)} trials did not end ok: {escape(summary)}</summary><ul>{items}"
        "</ul></details></div>"
    )


def _section(section: sections.Section, anchor: str) -> str:
    parts = [
        f'<section id="{anchor}"><h3>{escape(section.title)}</h3>',
        f'<p class="muted">{len(section.trials)} trials, {len(section.summaries)} rows'
        + (f", {escape(section.command)}" if section.command else "")
        + "</p>",
        _problems(section),
        "<h4>Comparison</h4>",
        tables.comparison(section),
    ]
    curves = plots.curves(section, f"{anchor}-c-")
    if curves:
        parts += ["<h4>Learning curves</h4>", curves]
    budget = plots.expected_best(section, f"{anchor}-b-")
    if budget:
        parts += [f"<h4>Tuning: {len(section.search)} search candidates</h4>", budget]
    sensitivity = plots.sensitivity(section, f"{anchor}-s-")
    if sensitivity:
        parts += ["<h4>Learning-rate sensitivity</h4>", sensitivity]
    flow = tables.gradient_flow(section)
    if flow:
        parts += [
            f"<details{' open' if section.command == 'sweep' else ''}><summary><b>Gradient flow</b> per layer"
            f"</summary>{flow}</details>"
        ]
    parts += [
        f"<details><summary><b>All {len(section.trials)} trials</b> (id, seed, status, tags)</summary>"
        f"{tables.trials(section)}</details></section>"
    ]
    return "".join(parts)


def render(
    sources: Sequence[Source],
    *,
    baseline: Source | None = None,
    tolerance: float = checking.DEFAULT_TOLERANCE,
    generated: str = "",
) -> str:
    """The whole page for ``sources`` (and their check against ``baseline``, when given)."""
    body, toc = [], []
    for i, source in enumerate(sources, 1):
        file_anchor = f"file{i}"
        toc.append(f'<li><a href="#{file_anchor}">{escape(source.name)}</a> ({len(source.rows)} trials)</li>')
        body.append(f'<h2 id="{file_anchor}">{escape(source.name)}</h2>{_run(source)}')
        if baseline is not None:
            report = checking.check(baseline.rows, source.rows, tolerance=tolerance, metrics=(HEADLINE,))
            verdict = "FAIL" if report.failed else "PASS"
            body.append(f"<h3>Check against {escape(baseline.name)}: {verdict}</h3>{tables.check(report)}")
        for j, section in enumerate(sections.split(source.name, source.header, source.rows), 1):
            body.append(_section(section, f"s{i}-{j}"))
    title = "dnnbench report: " + ", ".join(s.name for s in sources)
    stamp = f" · generated {escape(generated)}" if generated else ""
    # Every string from a file is escaped for HTML where it is placed; its control characters (NUL,
    # ESC, the bidirectional overrides) are escaped here, once for the whole page: none is markup.
    return printable(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>dnnbench report</h1><p class="muted">{len(sources)} results file'
        f"{'s' if len(sources) != 1 else ''}{stamp}; tables sort by a click on a header</p>"
        f"<nav><ul>{''.join(toc)}</ul></nav></header><main>{''.join(body)}</main>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
