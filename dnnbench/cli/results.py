"""Commands that read results files and never train: ``check``, ``plot``, ``export``, ``report``, ``profile``.

Thin: parse, call the library, render. They are defined on this module's ``app``, which the main
app (``cli.app``) combines with the other families. Errors are ``DnnbenchError``s, which the
app's ``main()`` turns into one line and exit code 2; ``check`` itself exits 1 when the current
results regress against the baseline (for CI).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dnnbench.errors import DataError, InputError, one_of, printable
from dnnbench.results import files as output_files
from dnnbench.results.metrics import CURVES, HEADLINE

CHECK_FORMATS = ("table", "markdown", "github-benchmark")

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

Results = Annotated[Path, typer.Argument(help="A results file (JSON Lines) written with --out.", show_default=False)]
Force = Annotated[
    bool, typer.Option("--force", help="Replace --out if it exists (without it, an existing file is never replaced).")
]
Metrics = Annotated[
    list[str] | None,
    typer.Option("--metric", help="A metric (repeat for several), e.g. test_acc, val_loss.", show_default=False),
]
WIDE_HELP = (
    "Never drop a column to fit the terminal: print tables at their natural width (wider than the terminal "
    "if need be; for a file or a pager)."
)
COLUMNS_HELP = (
    "Show only these columns of the results table, comma-separated (test_acc,status or the headers as "
    "printed), in the table's order; its first column (optimizer, label, row) always shows. An unknown "
    "name is an error that lists the valid ones."
)
Wide = Annotated[bool, typer.Option("--wide", help=WIDE_HELP)]
Columns = Annotated[str | None, typer.Option("--columns", help=COLUMNS_HELP, show_default=False)]


def _load(path: Path, *, need_trials: bool = True) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    from dnnbench.results.rows import read_results

    header, rows = read_results(path)
    if need_trials and not rows:
        raise DataError(f"{path}: no trial rows")
    return header, rows


def _append_summary(text: str) -> None:
    """Add ``text`` to the GitHub Actions job summary when running there; a warning if it cannot."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    try:
        with open(target, "a", encoding="utf-8") as stream:
            stream.write(text + "\n")
    except OSError as exc:
        print(f"dnnbench: warning: cannot append to $GITHUB_STEP_SUMMARY {target} ({exc.strerror})", file=sys.stderr)


@app.command()
def check(
    baseline: Annotated[Path, typer.Argument(help="The reference results file.", show_default=False)],
    current: Annotated[Path, typer.Argument(help="The results file to judge.", show_default=False)],
    tolerance: Annotated[
        float,
        typer.Option(
            help=(
                "Allowed mean change of a row before it counts as worse (absolute, e.g. 0.005 = half a point "
                "of accuracy)."
            )
        ),
    ] = 0.005,
    metric: Metrics = None,
    format_: Annotated[
        str,
        typer.Option("--format", help="table | markdown | github-benchmark (customBiggerIsBetter JSON of CURRENT)."),
    ] = "table",
    strict: Annotated[
        bool, typer.Option("--strict", help="Also fail on an uncertain row (its 95% interval straddles the tolerance).")
    ] = False,
    wide: Wide = False,
    columns: Columns = None,
) -> None:
    """Compare CURRENT with BASELINE per comparison row over seeds; exit 1 if a row got worse (its seed-paired 95%
    interval lies beyond the tolerance; one seed: the change itself), a trial newly diverged, ended in error or went
    missing."""
    from dnnbench.analysis import checking

    if format_ not in CHECK_FORMATS:
        raise one_of("--format", format_, CHECK_FORMATS)
    layout = _layout(wide, columns, "check")
    metrics = tuple(metric or (HEADLINE,))
    _, base_rows = _load(baseline, need_trials=False)
    _, cur_rows = _load(current, need_trials=False)
    result = checking.check(base_rows, cur_rows, tolerance=tolerance, metrics=metrics, strict=strict)
    summary = checking.markdown(result)
    if format_ == "github-benchmark":
        print(json.dumps(checking.github_benchmark(cur_rows, metrics=metrics), indent=2))
    elif format_ == "markdown":
        print(summary)
    else:
        from dnnbench.render import results as report_results

        report_results.console(layout=layout).print(report_results.check_table(result, layout))
    _append_summary(summary)
    if result.failed:
        raise typer.Exit(1)


def _plot_budget(
    path: Path, header: dict[str, Any] | None, rows: list[dict[str, Any]], out: Path, *, force: bool
) -> None:
    from dnnbench.analysis.expected_best import curves
    from dnnbench.render import plots as plotting

    search = [r for r in rows if r.get("phase") == "search"]
    if not search:
        raise InputError(f"{path}: no tune search rows (phase = search); --budget plots a `dnnbench tune` run")
    metric = ((header or {}).get("config") or {}).get("metric") or "val_acc"
    output_files.claim(out, inputs=[path], force=force)
    found = curves(
        [(r["optimizer"], r["status"], r.get("metrics") or {}, r.get("hyperparams") or {}) for r in search], metric
    )
    n = max(row["n"] for row in found)
    print(
        f"wrote {plotting.plot_expected_best(found, out, metric=metric, title=f'Expected best after k of {n} tries')}"
    )


@app.command()
def plot(
    results: Results,
    out: Annotated[Path, typer.Option(help="The figure to write: .png, .svg or .pdf.")] = Path("curves.png"),
    metric: Metrics = None,
    terminal: Annotated[
        bool, typer.Option("--terminal", help="Draw text charts on stdout instead of writing a figure.")
    ] = False,
    budget: Annotated[
        bool,
        typer.Option(
            "--budget",
            help=(
                "Draw a tune run's expected-best curves (best validation score after k tries) instead of "
                "learning curves."
            ),
        ),
    ] = False,
    force: Force = False,
) -> None:
    """Learning curves per epoch: one panel per metric, one line per optimizer (mean over seeds, min–max band)."""
    from dnnbench.render import plots as plotting

    header, rows = _load(results)
    if budget:
        return _plot_budget(results, header, rows, out, force=force)
    if not terminal:
        output_files.claim(out, inputs=[results], force=force)
    if terminal:
        for i, name in enumerate(metric or ("val_acc",)):
            print(("\n" if i else "") + plotting.terminal_curves(rows, name))
        return
    written = plotting.plot_curves(rows, out, metrics=tuple(metric or CURVES), header=header)
    print(f"wrote {written}")


@app.command()
def export(
    results: Results,
    csv: Annotated[
        bool, typer.Option("--csv", help="CSV, one line per trial (the default and only format for now).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Write to this file (atomically) instead of stdout.")] = None,
    force: Force = False,
) -> None:
    """Flatten a results file into a table: ids, optimizer, seed, status, hyperparameters, tags, final metrics,
    timings."""
    from dnnbench.analysis import export as flat

    if out is not None:
        output_files.claim(out, inputs=[results], force=force)
    _, rows = _load(results)
    text = flat.to_csv(rows)
    if out is None:
        sys.stdout.write(text)
        return
    output_files.write_atomic(out, text)
    print(f"wrote {out} ({len(rows)} trials)", file=sys.stderr)


@app.command()
def report(
    results: Annotated[
        list[Path],
        typer.Argument(help="One or more results files (JSON Lines) written with --out.", show_default=False),
    ],
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write one self-contained HTML page (tables, curves, environment; no network) to this file.",
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="With --html: check every results file against this "
            "baseline (as `dnnbench check`) and show the verdicts.",
            show_default=False,
        ),
    ] = None,
    force: Force = False,
    wide: Wide = False,
    columns: Columns = None,
) -> None:
    """Re-render the comparison table of results files (mean ± std over seeds), no training; --html writes a page."""
    from dnnbench.analysis import export as flat
    from dnnbench.render import results as report_results

    if html is None and baseline is not None:
        raise InputError("--baseline needs --html (for a check in the terminal: dnnbench check BASE CURRENT)")
    layout = _layout(wide, columns, "report")
    if html is not None:
        _report_html(results, html, baseline=baseline, force=force)
        return
    for i, path in enumerate(results):
        header, rows = _load(path)
        data = (header or {}).get("data") or {}
        title = f"{path.name}: {data.get('source') or data.get('name') or 'results'}, {len(rows)} trials"
        if i:
            print()
        report_results.console(layout=layout).print(
            report_results.results_table(flat.summarize(rows), title=title, layout=layout)
        )


def _report_html(results: list[Path], out: Path, *, baseline: Path | None, force: bool) -> None:
    """Read every results file (and the baseline), render the page, write it atomically."""
    import datetime

    from dnnbench.render import html as html_report

    output_files.claim(out, inputs=[*results, baseline], force=force, option="--html")

    def source(path: Path) -> html_report.Source:
        header, rows = _load(path)
        modified = datetime.datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat(timespec="seconds")
        return html_report.Source(str(path), header, rows, modified)

    sources = [source(path) for path in results]
    base = None
    if baseline is not None:
        _, base_rows = _load(baseline, need_trials=False)
        base = html_report.Source(str(baseline), None, base_rows)
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    page = html_report.render(sources, baseline=base, generated=now)
    output_files.write_atomic(out, page, option="--html")
    print(f"wrote {out} ({len(page.encode()) / 1e6:.2f} MB, {sum(len(s.rows) for s in sources)} trials)")


@app.command()
def profile(
    results: Annotated[
        list[Path],
        typer.Argument(
            help="Results files; each file, or each experiment of a suite's file, is one task.", show_default=False
        ),
    ],
    target: Annotated[
        str | None,
        typer.Option("--target", help="METRIC=VALUE to reach (default: the target the rows recorded with --target)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also draw the profiles to this figure (.png, .svg, .pdf).")] = None,
    force: Force = False,
    wide: Wide = False,
    columns: Columns = None,
) -> None:
    """Performance profiles across tasks: for each optimizer, the fraction of tasks reached within τ x the fastest's
    steps."""
    from dnnbench.analysis import profiles, targets
    from dnnbench.render import plots as plotting
    from dnnbench.render import results as report_results

    goal = targets.parse_target(target)
    layout = _layout(wide, columns, "profile")
    tasks: dict[str, list[dict[str, Any]]] = {}
    for path in results:
        _, rows = _load(path)
        for row in rows:
            experiment = row.get("experiment")
            tasks.setdefault(f"{path.name}:{experiment}" if experiment else path.name, []).append(row)
    if out is not None:
        output_files.claim(out, inputs=list(results), force=force)
    times = profiles.task_times(tasks, goal)
    found, skipped = profiles.profiles(times)
    label = goal.label if goal else _recorded_target(tasks)
    report_results.console(layout=layout).print(
        report_results.profile_table(found, len(times) - len(skipped), label, layout)
    )
    if skipped:
        tasks_named = printable(", ".join(skipped), newlines=False)  # experiment names from the files
        print(f"dnnbench: no optimizer reached the target on {tasks_named}: left out", file=sys.stderr)
    if out is not None:
        print(f"wrote {plotting.plot_profiles(found, profiles.TAUS, out, title=f'Performance profiles: {label}')}")


def _recorded_target(tasks: dict[str, list[dict[str, Any]]]) -> str:
    from dnnbench.analysis import targets

    found = {(r["target"]["metric"], r["target"]["value"]) for rows in tasks.values() for r in rows if r.get("target")}
    return ", ".join(targets.Target(m, v).label for m, v in sorted(found)) or "target"


def _layout(wide: bool, columns: str | None, table: str) -> Any:
    """``--wide`` / ``--columns`` checked against the columns of ``table`` (check, profile, report),
    before any file is read."""
    from dnnbench.render import results as report_results

    layout = report_results.TableLayout.from_options(wide, columns)
    known = {
        "check": (report_results.CHECK_COLUMNS, ("row",)),
        "profile": (report_results.PROFILE_COLUMNS, ("optimizer",)),
        "report": (report_results.RESULTS_COLUMNS, ("label",)),
    }[table]
    layout.check(*known)
    return layout
