"""The underfitting toolbox's commands: ``sweep`` and ``lr-sensitivity`` (no Typer here).

Both build trials from a ``Job``, run them through ``commands.execute`` (so results
files, ``--json``, progress and resume behave as everywhere) and render tables.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from dnnbench import optim
from dnnbench.analysis import stats
from dnnbench.cli import commands
from dnnbench.cli.output import Output
from dnnbench.config import Variation
from dnnbench.errors import InputError
from dnnbench.experiments import options, sensitivity, sweep, tuning
from dnnbench.experiments.job import Job
from dnnbench.render import tables as report
from dnnbench.results.metrics import SORTABLE
from dnnbench.results.rows import TrialResult


def run_sweep(
    job: Job,
    vary: Sequence[str],
    *,
    optimizer: str,
    lr: float | None,
    width: int | None,
    sort: str,
    given: Collection[str] = (),
    output: Output,
) -> list[TrialResult]:
    """``dnnbench sweep``: the cartesian product of ``--vary`` levels; trials and main-effects tables.

    ``given``: the options given on the command line; one that ``--vary`` also sets is an error
    naming both (which one was meant is not ours to guess)."""
    if sort not in SORTABLE:
        raise InputError(f"--sort: unknown metric {sort!r}; valid: {', '.join(SORTABLE)}")
    factors = sweep.parse_vary(vary, optimizer)
    _check_conflicts(factors, job, lr, width, given)
    layout = output.layout
    layout.check(report.sweep_columns(sort, paired=len(job.seeds) > 1), kept=list(factors))
    swept = [label for label, _ in factors["optimizer"]] if "optimizer" in factors else [optimizer]
    hp = options.apply_hp(job.hp, options.check_optimizers(list(dict.fromkeys([optimizer, *swept]))))
    base = job.trial(optimizer, lr if "optimizer" not in factors else None, hp[optimizer])
    width = width if width is not None else job.model.hidden[0]
    if width <= 0:
        raise InputError(f"--width must be a positive integer, got {width}")
    specs = sweep.sweep_specs(factors, base, job.seeds, width, lr=lr, hyperparams=hp)
    for line in sweep.shadowed(factors, swept):
        print(f"dnnbench: {line}", file=sys.stderr)
    trials = commands.execute(
        job,
        specs,
        extra_config={"command": "sweep", "vary": list(vary), "sort": sort},
        summary=lambda ts: stats.summary_row(ts, lambda t: sweep.levels_label(t.tags, list(factors)), "levels", sort),
        output=output,
    )
    if not output.json:
        names = list(factors)
        summaries = stats.summarize(trials, lambda t: sweep.levels_label(t.tags, names))
        stats.add_grad_ratios(summaries)
        higher = not sort.endswith("loss")
        summaries.sort(key=lambda s: _sort_key(s.stats[sort].mean, higher))
        paired = stats.paired_to_best(summaries, sort, higher) if len(job.seeds) > 1 else None
        console = report.make_console(layout=layout)
        console.print(
            report.sweep_table(
                summaries,
                names,
                metric=sort,
                paired=paired,
                layout=layout,
                title=f"Sweep over {', '.join(names)} on {_data_label(job)}",
            )
        )
        console.print(
            report.main_effects_table(stats.main_effects(trials, names, sort, higher), sort, layout.without_choice())
        )
        commands.print_time_to_target(job, trials, lambda t: sweep.levels_label(t.tags, names), layout)
    return trials


def _check_conflicts(
    factors: dict[str, Any], job: Job, lr: float | None, width: int | None, given: Collection[str]
) -> None:
    """An option that ``--vary`` sets too (``--lr 0.5 --vary lr=...``, ``--hp b1=0.5 --vary b1=...``),
    and ``--width`` without ``--vary depth``, are errors: one of them would be ignored."""
    for key in factors:
        option = "lr" if key == "lr" else key if key in sweep.FACTORS and key != "depth" else None
        if option is not None and (option in given or (option == "lr" and lr is not None)):
            raise InputError(
                f"--{option.replace('_', '-')} and --vary {key} both set {key}; give its values in --vary only"
            )
        if key in sweep.FACTORS:
            continue
        target, _, name = key.rpartition(".")
        for hp_target, hp_name, value in job.hp:
            if hp_name == name and (not hp_target or not target or hp_target == target):
                hp_text = f"{hp_target + '.' if hp_target else ''}{hp_name}={value}"
                raise InputError(f"--hp {hp_text} and --vary {key} both set {name}; give its values in --vary only")
    if width is not None and "depth" not in factors:
        raise InputError(
            "--width is the layers' width when --vary depth is swept; without --vary depth it sets nothing"
        )


def _sort_key(value: float, higher: bool) -> float:
    if value != value:  # NaN (diverged everywhere) sorts last
        return float("inf")
    return -value if higher else value


def run_sensitivity(
    job: Job,
    optimizers: Sequence[str],
    *,
    lr_min: float,
    lr_max: float,
    points: int,
    metric: str,
    tolerance: float,
    output: Output,
) -> tuple[list[TrialResult], list[dict[str, Any]]]:
    """``dnnbench lr-sensitivity``: a log-spaced learning-rate grid per optimizer, one program each."""
    options.check_optimizers(optimizers)
    layout = output.layout
    layout.check(report.sensitivity_columns(metric), kept=("optimizer",))
    if metric.startswith("val") and job.data.val_split == 0:
        raise InputError("lr-sensitivity decides on the validation set; use --val-split > 0 or --metric train_acc")
    if not tolerance >= 0:
        raise InputError(f"--tolerance must be >= 0, got {tolerance}")
    grid = sensitivity.lr_grid(lr_min, lr_max, points)
    specs = sensitivity.sensitivity_specs(
        optimizers, grid, job.trial(), job.seeds, options.apply_hp(job.hp, optimizers)
    )
    trials = commands.execute(
        job,
        specs,
        extra_config={"command": "lr-sensitivity", "grid": grid, "metric": metric, "tolerance": tolerance},
        output=output,
    )
    rows = sensitivity.analyze(trials, metric, tolerance)
    if not output.json:
        report.make_console(layout=layout).print(report.sensitivity_table(rows, metric, tolerance, layout))
    return trials, rows


def _data_label(job: Job) -> str:
    return Path(job.data.path).name if job.data.path else job.data.dataset


def run_tuned(job: Job, optimizers: Sequence[str], *, output: Output) -> list[TrialResult]:
    """``dnnbench optimizers --tune``: each optimizer at its default and at its tuned learning rate.

    The tuned rate is the best of the default lr-sensitivity grid on the validation set (trained
    with the job's epochs and seeds, not written to the results file); then both rates train
    side by side on the same seeds, weights and batches, and the table shows them paired.
    """
    if job.data.val_split == 0:
        raise InputError("--tune chooses learning rates on the validation set; use --val-split > 0")
    layout = output.layout
    layout.check(report.comparison_columns(), kept=("optimizer",))
    grid = sensitivity.lr_grid(1e-5, 10.0, 13)
    hp = options.apply_hp(job.hp, optimizers)

    def tuned_rates(grid_trials: Sequence[TrialResult]) -> dict[str, float]:
        return {row["optimizer"]: row["best_lr"] for row in sensitivity.analyze(grid_trials, "val_acc", 0.02)}

    def finals(rates: dict[str, float] | None, lrs: Sequence[float] = ()) -> list:
        """Each optimizer at its default rate and at ``rates``' (every grid rate in ``lrs``: those
        it could tune to), on the job's seeds."""
        variations = []
        for name in optimizers:
            choices = [("default", optim.resolve_spec(name).default_lr)]
            choices += [("tuned", lr) for lr in ([rates[name]] if rates and name in rates else lrs)]
            # a NaN rate: every grid point diverged, nothing to tune to
            variations += [Variation(name, lr, hp[name], tags=(("lr_choice", c),)) for c, lr in choices if lr == lr]
        return list(job.trials(variations))

    # The grid only chooses the rates (it is not written); the comparison is, checked before the grid trains.
    later = commands.Later(
        specs=lambda grid_trials: finals(tuned_rates(grid_trials) if grid_trials else None),
        possible=lambda: finals(None, grid),
        config=lambda grid_trials: {"grid": grid, "tuned_lr": tuned_rates(grid_trials)},
        first_written=False,
    )
    trials = commands.execute(
        job,
        sensitivity.sensitivity_specs(optimizers, grid, job.trial(), job.seeds, hp),
        extra_config={"command": "optimizers --tune"},
        then=later,
        output=output,
    )
    if not output.json:
        summaries = stats.summarize(trials, lambda t: f"{t.optimizer} ({t.tags['lr_choice']})")
        title = f"Optimizers on {_data_label(job)}: default vs tuned learning rate (grid 1e-5 … 10, best val acc)"
        report.make_console(layout=layout).print(
            report.comparison_table(summaries, title=title, label_header="optimizer", layout=layout)
        )
    return trials


def run_tune(
    job: Job,
    optimizers: Sequence[str],
    *,
    budget: int,
    space: Sequence[str],
    metric: str = "val_acc",
    output: Output,
) -> list[TrialResult]:
    """``dnnbench tune``: each optimizer tuned under the same budget, then default vs tuned.

    Search: ``budget`` quasi-random candidates per optimizer (one compiled program each) on the
    search seed (``--seed``), selected on the validation set only. Final: each optimizer at its
    defaults and at its winner on ``--seeds`` fresh seeds (seed + 1, ...), paired.
    """
    planned = tuning.plan(
        job,
        optimizers,
        budget=budget,
        metric=metric,
        settings=tuning.parse_space(space),
        hyperparams=options.apply_hp(job.hp, optimizers),
    )
    layout = output.layout
    layout.check(report.comparison_columns(paired=len(planned.final_seeds) > 1), kept=("optimizer",))
    trials = commands.execute(
        job,
        planned.search,
        then=commands.Later(planned.finals, planned.possible_finals),
        extra_config={"command": "tune", **planned.describe()},
        summary=lambda ts: stats.summary_row(ts, commands.tune_label, "optimizer"),
        output=output,
    )
    if not output.json:
        commands.print_tune_tables(job, planned, trials, _data_label(job), layout=layout)
    return trials
