"""What each command does, between the Typer layer and the library: no parsing, no Typer.

A command: validate everything into a ``Job`` (frozen configs) and its trials, run them through
the results-file session (``session.execute``: every check before the file is opened, rows
streamed as groups finish) and render. So bad input never leaves a half-written file behind.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dnnbench import optim
from dnnbench.cli.output import Output
from dnnbench.cli.session import Later, execute
from dnnbench.config import Variation
from dnnbench.errors import InputError
from dnnbench.experiments import options, regularizers
from dnnbench.experiments.job import Job
from dnnbench.experiments.optimizers import optimizer_specs
from dnnbench.render.layout import FIT, TableLayout
from dnnbench.results import rows as results

__all__ = ["Later", "Output", "execute"]  # used by ``explore`` through this module too


def compare_optimizers(
    job: Job,
    names: Sequence[str],
    lr: str | None,
    *,
    output: Output,
) -> list[results.TrialResult]:
    """``dnnbench optimizers``: the paired comparison of ``names`` on one task."""
    from dnnbench.analysis import stats
    from dnnbench.render import tables as report

    layout = output.layout
    layout.check(report.comparison_columns(paired=len(job.seeds) > 1), kept=("optimizer",))
    lrs = options.parse_lr(lr, names)
    specs = optimizer_specs(job, names, lrs, options.apply_hp(job.hp, names))
    trials = execute(
        job,
        specs,
        output=output,
        extra_config={"command": "optimizers", "optimizers": list(names), "lr": lr},
        summary=lambda ts: stats.summary_row(ts, lambda t: t.optimizer, "optimizer"),
    )
    if not output.json:
        report.make_console(layout=layout).print(optimizers_table(job, trials, layout=layout))
        print_time_to_target(job, trials, lambda t: t.optimizer, layout)
    return trials


def optimizers_table(
    job: Job, trials: Sequence[results.TrialResult], title: str = "Optimizers", layout: TableLayout | None = None
) -> Any:
    """The comparison table of an optimizer comparison: one row per optimizer, mean ± std over seeds."""
    from dnnbench.analysis import stats
    from dnnbench.render import tables as report

    summaries = stats.summarize(trials, lambda t: t.optimizer)
    title = (
        f"{title} on {_data_label(job)}: {_model_label(job)}, {job.train.epochs} epochs, batch {job.train.batch_size}"
    )
    paired = stats.paired_to_best(summaries, "test_acc") if len(job.seeds) > 1 else None
    return report.comparison_table(summaries, title=title, label_header="optimizer", paired=paired, layout=layout)


def compare_regularizers(
    job: Job,
    methods: str | None,
    optimizer: str,
    lr: float | None,
    *,
    output: Output,
) -> list[results.TrialResult]:
    """``dnnbench regularizers``: each remedy on the same task, seeds and initial weights."""
    from dnnbench.analysis import stats
    from dnnbench.render import tables as report

    layout = output.layout
    layout.check(report.comparison_columns(show_epochs=True, paired=len(job.seeds) > 1), kept=("regularizer",))
    hyperparams = options.apply_hp(job.hp, [optimizer])[optimizer]
    names, strengths, specs = regularizers.comparison_specs(
        job, methods, optimizer, lr, hyperparams, regularizers.given_strengths(job.reg)
    )
    trials = execute(
        job,
        specs,
        output=output,
        extra_config={"command": "regularizers", "methods": names, "strengths": dataclasses.asdict(strengths)},
        summary=lambda ts: stats.summary_row(ts, lambda t: str(t.tags.get("regularizer", "?")), "regularizer"),
    )
    if not output.json:
        # the note wraps to the terminal even with --wide (only tables are printed at full width)
        report.make_console().print(regularizers.data_note(job))
        report.make_console(layout=layout).print(
            regularizers_table(job, trials, optimizer, strengths=strengths, layout=layout)
        )
        print_time_to_target(job, trials, lambda t: str(t.tags.get("regularizer", "?")), layout)
    return trials


def regularizers_table(
    job: Job,
    trials: Sequence[results.TrialResult],
    optimizer: str,
    title: str = "Regularizers",
    strengths: regularizers.Strengths | None = None,
    layout: TableLayout | None = None,
) -> Any:
    """The comparison table of a regularizer comparison: one row per method, mean ± std over seeds."""
    from dnnbench.analysis import stats
    from dnnbench.render import tables as report

    summaries = stats.summarize(trials, lambda t: str(t.tags.get("regularizer", "?")))
    title = (
        f"{title} on {_data_label(job)} (train fraction {job.reg.train_fraction:g}): "
        f"{_model_label(job)}, {optimizer}, {job.train.epochs} epochs, batch {job.train.batch_size}"
    )
    paired = stats.paired_to_best(summaries, "test_acc") if len(job.seeds) > 1 else None
    augmented = {"augment", "all"} & {t.tags.get("regularizer") for t in trials}
    note = regularizers.augment_note(strengths, regularizers.image_data(job.data)) if strengths and augmented else ""
    return report.comparison_table(
        summaries, title=title, label_header="regularizer", show_epochs=True, paired=paired, note=note, layout=layout
    )


def diagnose_one(
    job: Job,
    optimizer: str,
    lr: float | None,
    *,
    output: Output,
) -> list[results.TrialResult]:
    """``dnnbench diagnose``: one configuration, its verdict, evidence and next commands."""
    from dnnbench.render import tables as report

    hyperparams = options.apply_hp(job.hp, [optimizer])[optimizer]
    specs = list(job.trials([Variation(optimizer, lr, hyperparams)]))
    trials = execute(
        job,
        specs,
        output=output,
        extra_config={"command": "diagnose"},
    )
    if not output.json:
        console = report.make_console()
        for trial in trials:
            console.print(report.diagnosis_panel(trial))
            console.print(report.next_commands(trial), soft_wrap=True)
    return trials


def tune_label(trial: Any) -> str:
    """A tune comparison row: the optimizer and its choice (``adam (tuned)``)."""
    return f"{trial.optimizer} ({trial.tags.get('choice')})"


def print_tune_tables(
    job: Job,
    planned: Any,
    trials: Sequence[results.TrialResult],
    where: str,
    title: str = "Tuned",
    layout: TableLayout | None = None,
) -> None:
    """``tune``'s tables: default vs tuned on the final seeds (paired), the expected-best curves
    of the search, and the time to target when asked."""
    from dnnbench.analysis import stats
    from dnnbench.analysis.expected_best import curves
    from dnnbench.render import tables as report

    search = [t for t in trials if t.tags.get("phase") == "search"]
    final = [t for t in trials if t.tags.get("phase") == "final"]
    summaries = stats.summarize(final, tune_label)
    paired = stats.paired_to_best(summaries, "test_acc") if len(planned.final_seeds) > 1 else None
    layout = layout or FIT
    console = report.make_console(layout=layout)
    console.print(
        report.comparison_table(
            summaries,
            paired=paired,
            label_header="optimizer",
            layout=layout,
            title=f"{title} on {where}: budget {planned.budget} per optimizer, selected on {planned.metric}, "
            f"{len(planned.final_seeds)} fresh seeds",
        )
    )
    candidates = [(t.optimizer, t.status, t.metrics, dict(t.spec.hyperparams)) for t in search]
    console.print(
        report.expected_best_table(curves(candidates, planned.metric), planned.metric, layout.without_choice())
    )
    print_time_to_target(job, final, tune_label, layout)


def print_time_to_target(
    job: Job, trials: Sequence[results.TrialResult], label: Callable[[Any], str], layout: TableLayout | None = None
) -> None:
    """The time-to-target table under a comparison, when the job has a ``--target`` (``--wide``
    applies to it; ``--columns`` names the comparison's columns only)."""
    from dnnbench.analysis import stats, targets
    from dnnbench.render import tables as report

    if job.target is None:
        return
    layout = (layout or FIT).without_choice()
    summaries = stats.summarize(trials, label)
    rows = [targets.over_seeds(s.label, [t.extra.get("target") for t in s.trials]) for s in summaries]
    report.make_console(layout=layout).print(report.target_table(rows, job.target.label, layout))


def list_optimizers(named: Sequence[str] = (), *, every: bool = False) -> None:
    """``dnnbench optimizers --list [--all]``: built-ins with their rules, plugins, the optimizers
    named by ``--optimizers``, and with ``every`` (or ``--optimizers all``) each optax optimizer:
    default learning rate and its source, or why it cannot run."""
    from dnnbench.optim import catalogue, user
    from dnnbench.render import tables as report

    every = every or options.ALL in named
    named = [n for n in named if n != options.ALL]
    specs = list(dict.fromkeys([*optim.NAMES, *sorted(user.plugins()), *named]))
    if every:
        specs += catalogue.qualified_names()
    rows = []
    refused: dict[str, str] = {}
    for spec in dict.fromkeys(specs):
        try:
            optim.resolve(spec)  # loads it, and checks that it runs with its defaults
            rows.append(optim.describe_spec(spec))
        except InputError as exc:
            if spec in named or spec in optim.NAMES:
                raise
            refused[spec] = str(exc)
    in_all = set(optim.every()[0]) if every else set()
    outside = [row["spec"] for row in rows if every and row["spec"] not in in_all and row["spec"] not in named]
    report.make_console().print(
        report.optimizers_list_table(
            rows, refused, recipe=optim.RECIPE, fallback_lr=optim.FALLBACK_LR, outside_all=outside
        )
    )


def list_datasets(data_dir: Path | None) -> None:
    """``dnnbench datasets``: the catalogue and what is available offline / cached."""
    from dnnbench.data import mnist, sources
    from dnnbench.render import tables as report

    rows = []
    for name, info in sources.CATALOG.items():
        row = {"name": name, **info}
        if name in mnist.INFO:
            status = mnist.dataset_status(name, data_dir)
            row["source"] = mnist.INFO[name]["source"]
            row["offline"] = status["cached"]
            row["where"] = status["path"] + (f" ({status['form']})" if status["form"] else " (not cached)")
        else:
            row["where"] = "bundled" if name == "digits" else "generated on the fly"
        rows.append(row)
    report.make_console().print(report.datasets_table(rows))


def _data_label(job: Job) -> str:
    return Path(job.data.path).name if job.data.path else job.data.dataset


def _model_label(job: Job) -> str:
    m = job.model
    return f"MLP {'-'.join(map(str, m.hidden))} {m.activation}{' residual' if m.residual else ''}"


def run_suite(
    path: Path,
    output: Output,
    *,
    backend: str | None = None,
    ray_address: str | None = None,
    ray_max_retries: int | None = None,
) -> list[results.TrialResult]:
    """``dnnbench run``: every experiment of a suite file into one results file, one table each.

    All experiments train in one ``execute`` (so trials of one structure share a compiled program
    across experiments); each row is tagged ``experiment=<name>``. ``out`` defaults to
    ``results/<suite stem>.jsonl``. ``--backend``, ``--ray-address``, ``--ray-max-retries``: over
    the suite's ``[train]`` where given. ``--columns`` names columns of any experiment's table; each
    table shows those it has.
    """
    from dnnbench.experiments import suite
    from dnnbench.render import tables as report

    loaded = suite.load(path)
    layout = output.layout
    layout.check(_suite_columns(loaded), kept=("optimizer", "regularizer"))
    given: dict[str, Any] = {
        k: v
        for k, v in {"backend": backend, "ray_address": ray_address, "ray_max_retries": ray_max_retries}.items()
        if v is not None
    }
    if given:  # the command line's --backend / --ray-address over the suite's [train]
        settings = dataclasses.replace(loaded.job.backend, **given)
        loaded = dataclasses.replace(loaded, job=dataclasses.replace(loaded.job, backend=settings))
    out = output.out if output.out is not None else Path("results") / f"{path.stem}.jsonl"
    output = dataclasses.replace(output, out=out)
    target_of: dict[object, Any] = {e.name: e.job.target for e in loaded.experiments}
    trials = execute(
        loaded.job,
        loaded.specs,
        output=output,
        extra_config=loaded.describe(),
        inputs=[path],
        target=lambda spec: target_of.get(dict(spec.tags).get("experiment")),
        then=Later(loaded.finals, loaded.possible_finals) if loaded.tunes else None,
    )
    if not output.json:
        console = report.make_console(layout=layout)
        for experiment in loaded.experiments:
            mine = [t for t in trials if t.tags.get("experiment") == experiment.name]
            kind = experiment.kind
            title = kind.capitalize() if experiment.name == kind else f"{experiment.name}: {kind}"
            if experiment.tuning is not None:
                print_tune_tables(experiment.job, experiment.tuning, mine, _data_label(experiment.job), title, layout)
                continue
            if kind == "optimizers":
                table = optimizers_table(experiment.job, mine, title=title, layout=layout)
                label = lambda t: t.optimizer  # noqa: E731
            else:
                table = regularizers_table(
                    experiment.job, mine, experiment.settings.get("optimizer", "adam"), title=title, layout=layout
                )
                label = lambda t: str(t.tags.get("regularizer", "?"))  # noqa: E731
            console.print(table)
            print_time_to_target(experiment.job, mine, label, layout)
    if not output.quiet:
        print(f"dnnbench: {len(trials)} trials of {len(loaded.experiments)} experiments in {out}", file=sys.stderr)
    return trials


def _suite_columns(loaded: Any) -> dict[str, str]:
    """Every column some experiment's comparison table of the suite has (for ``--columns``)."""
    from dnnbench.render import tables as report

    kinds = set()
    for e in loaded.experiments:
        final_seeds = e.tuning.final_seeds if e.tuning is not None else e.job.seeds
        kinds.add((e.kind == "regularizers", len(final_seeds) > 1))
    union = {}
    for show_epochs, paired in kinds:
        union.update(report.comparison_columns(show_epochs=show_epochs, paired=paired))
    return {key: header for key, header in report.COMPARISON_COLUMNS.items() if key in union}
