"""What each command does, between the Typer layer and the library: no parsing, no Typer.

A command: validate everything into a ``Job`` (frozen configs), load the data, check that the
trials fit it, and only then open the results file, train (rows streamed as groups finish) and
render. So bad input never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from dnnbench import data as datamod
from dnnbench import optim
from dnnbench.config import TrialSpec
from dnnbench.errors import InputError, Interrupted, OutputError, Terminated
from dnnbench.experiments import options, regularizers
from dnnbench.experiments.job import Job
from dnnbench.experiments.optimizers import optimizer_specs
from dnnbench.render.layout import FIT, TableLayout
from dnnbench.render.progress import TrainingProgress
from dnnbench.results import files as output_files
from dnnbench.results import rows as results
from dnnbench.run import runner
from dnnbench.train import engine
from dnnbench.train import threads as xla_threads


def execute(
    job: Job,
    specs: Sequence[TrialSpec],
    *,
    out: Path | None,
    json_lines: bool,
    quiet: bool,
    extra_config: dict[str, Any] | None = None,
    resume: bool = False,
    summary: Any = None,
    force: bool = False,
    inputs: Sequence[Path] = (),
    then: Callable[[list[results.TrialResult]], Sequence[TrialSpec]] | None = None,
    target: Any = None,
) -> list[results.TrialResult]:
    """Load data, check, then train ``specs`` streaming rows to ``out`` / stdout; returns the results.

    ``then``: a second stage that depends on the first one's results (``tune``: the winners'
    final runs after the search): ``then(first_results)`` gives its trials, planned into programs
    of their own and written to the same file, under the same lock, after the first stage's rows.
    ``summary`` then closes the second stage. A resumed file may hold rows of both stages.
    ``target``: the time-to-target each row records (default ``job.target``; a function of the
    trial for suites, whose experiments have their own).

    ``resume``: keep the finished trials already in ``out`` (matched by id), train the others and
    append them. Ctrl-C (or SIGTERM) raises ``Interrupted``, which says how many trials the file holds.
    ``out`` is claimed first (never an input: the data file, ``inputs``, optimizer files; an existing
    file only with ``force`` or ``resume``) and locked for the whole run (``output_files``).
    ``summary``: trials -> the closing ``{"type": "summary"}`` row (statistics over seeds).
    """
    run = runner.Run(
        specs=tuple(specs),
        data=job.data,
        max_parallel=job.max_parallel,
        workers=job.workers,
        target=target if target is not None else job.target,
        backend=job.backend,
    )
    if resume and out is None:
        raise InputError("--resume needs --out: the results file to resume")
    if resume and force:
        raise InputError("--resume keeps the file and --force replaces it; give one of them")
    with contextlib.ExitStack() as held:
        if out is not None:
            held.enter_context(output_files.lock(out))  # first: a second run stops here, at once
            output_files.claim(
                out, inputs=[job.data.path, *inputs, *_optimizer_files(specs)], force=force, resume=resume
            )
        if then is None:
            return _execute(
                job,
                run,
                out=out,
                json_lines=json_lines,
                quiet=quiet,
                extra_config=extra_config,
                resume=resume,
                summary=summary,
            )
        first = _execute(
            job,
            run,
            out=out,
            json_lines=json_lines,
            quiet=quiet,
            extra_config=extra_config,
            resume=resume,
            summary=None,
            later_stage_ok=True,
        )
        second = dataclasses.replace(run, specs=tuple(then(first)))
        return first + _execute(
            job,
            second,
            out=out,
            json_lines=json_lines,
            quiet=quiet,
            extra_config=extra_config,
            resume=out is not None,
            summary=summary,
            earlier=first,
        )


def _optimizer_files(specs: Sequence[TrialSpec]) -> list[Path]:
    """The user optimizer files (``path/to/file.py:factory``) a run reads: inputs, never written."""
    names = {spec.optimizer for spec in specs}
    return [Path(name.rsplit(":", 1)[0]) for name in names if ":" in name and name.rsplit(":", 1)[0].endswith(".py")]


def _execute(
    job: Job,
    run: runner.Run,
    *,
    out: Path | None,
    json_lines: bool,
    quiet: bool,
    extra_config: dict[str, Any] | None,
    resume: bool,
    summary: Any,
    later_stage_ok: bool = False,
    earlier: Sequence[results.TrialResult] = (),
) -> list[results.TrialResult]:
    """``execute`` once ``out`` is claimed and locked.

    Stages (``execute(then=...)``): the first runs with ``later_stage_ok`` (rows it does not know
    may belong to the second stage of an interrupted run), the second with ``earlier`` (the first
    stage's results: their rows are in the file and on stdout already, the header too).
    """

    previous = results.read_resumable(out) if resume and out is not None else None
    show_progress = not quiet and not json_lines and sys.stderr.isatty()
    data = datamod.load(job.data, progress=show_progress)
    engine.check_specs(run.specs, data)
    if job.data.path and not quiet and not earlier:  # a file's classes are inferred: say how many
        print(
            f"dnnbench: {job.data.path}: {data.n_classes} classes (labels 0..{data.n_classes - 1}), "
            f"{data.n_features} features",
            file=sys.stderr,
        )
    key = runner.data_key(job.data, data)
    ids = [results.trial_id(spec, key) for spec in run.specs]
    # the header records effective values: the worker count used, not None for "the default"
    plan, workers = runner.chunks_of(run, data)
    # trials per compiled program, and XLA's threads: both decide a trial's last bits
    effective = {"workers": workers, "plan": [len(chunk) for chunk in plan], "threads": xla_threads.current()}
    head = results.header({**job.describe(), **effective, **(extra_config or {})}, data.describe())
    done: dict[str, results.TrialResult] = {}
    if previous is not None and out is not None:
        head, done = _resume(
            out,
            previous,
            dict(zip(ids, run.specs, strict=True)),
            known=None if later_stage_ok else {t.id for t in earlier},
            head=head,
        )
    # Resume trains again every compiled group with a missing member, whole: a trial's numbers match
    # an uninterrupted run bit for bit only in the same group (XLA's sums change in the last bits
    # with the group's size). Groups are written whole, so after Ctrl-C this costs nothing extra.
    pending = [chunk for chunk in plan if any(ids[i] not in done for i in chunk)]
    todo = [i for chunk in pending for i in chunk]
    written = len(done)
    sinks: list[results.ResultsWriter] = []
    with contextlib.ExitStack() as stack:
        if out is not None:
            sinks.append(
                results.ResultsWriter(stack.enter_context(results.open_results(out, append=resume)), f"--out {out}")
            )
            if not resume:  # a resumed file keeps its own header
                sinks[-1].write(head)
        if json_lines:  # stdout gets the whole run: header, resumed trials, new trials
            sinks.append(results.ResultsWriter(sys.stdout, "stdout"))
            for row in [*([] if earlier else [head]), *(result.to_row() for result in done.values())]:
                sinks[-1].write(row)
        if not todo:
            return _close([done[i] for i in ids], sinks, summary)
        todo_run = dataclasses.replace(run, specs=tuple(run.specs[i] for i in todo))
        progress = stack.enter_context(TrainingProgress(todo_run, enabled=show_progress))

        shared = _executable_trials(run.specs, ids, plan)

        def on_result(result: results.TrialResult) -> None:
            nonlocal written
            if result.id in done:  # trained again only to keep its group whole; already in the file
                return
            result.timing["executable_trials"] = shared.get(result.id)
            with _holding_sigint():
                for sink in sinks:
                    sink.write(result.to_row())
                written += 1

        try:
            position = {i: k for k, i in enumerate(todo)}
            watch: dict[str, Any] = (
                {"on_epoch": progress.on_epoch, "on_group": progress.on_group, "on_status": progress.on_status}
                if show_progress
                else {}
            )  # none: a Ray run then needs no progress actor
            trained = runner.execute(
                todo_run, data, on_result=on_result, groups=[[position[i] for i in chunk] for chunk in pending], **watch
            )
        except KeyboardInterrupt as exc:
            where = f"written to {out}" if out else "written to stdout" if json_lines else "finished (no --out)"
            how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            raise Interrupted(
                f"{how}; {written} of {len(ids)} trials {where}" + ("; --resume continues" if out else ""),
                143 if isinstance(exc, Terminated) else 130,
            ) from None
        except OutputError as exc:
            raise OutputError(
                f"{exc}; {written} of {len(ids)} trials written before it" + (", --resume continues" if out else "")
            ) from None
        new = {ids[i]: result for i, result in zip(todo, trained, strict=True)}
        return _close([done[i] if i in done else new[i] for i in ids], sinks, summary)


def _executable_trials(specs: Sequence[TrialSpec], ids: Sequence[str], plan: Sequence[Sequence[int]]) -> dict[str, int]:
    """Per trial id, how many trials of the run one compiled executable trains: programs of one
    structure and one size share it (``timing.group_size`` is the trials of one program). A tune
    search of 16 candidates cut into 4 programs of 4 shows 16 here: compiled once."""
    count: dict[tuple, int] = {}
    for chunk in plan:
        key = (specs[chunk[0]].structure, len(chunk))
        count[key] = count.get(key, 0) + len(chunk)
    return {ids[i]: count[(specs[chunk[0]].structure, len(chunk))] for chunk in plan for i in chunk}


def _close(trials: list[results.TrialResult], sinks: Sequence[results.ResultsWriter], summary: Any) -> list:
    """Write the summary row, if the command has one, after every trial row."""
    if summary is not None and sinks:
        row = summary(trials)
        with _holding_sigint():
            for sink in sinks:
                sink.write(row)
    return trials


def _resume(
    out: Path,
    previous: tuple[dict[str, Any], list[dict[str, Any]], bool],
    specs: dict[str, TrialSpec],
    known: Collection[str] | None = frozenset(),
    head: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, results.TrialResult]]:
    """The header and finished trials of the file being resumed; rewrites it without the rest.

    ``known``: ids of another stage of the same run that the file may hold (kept, not returned);
    None: any row may belong to a later stage (checked when that stage runs). ``head``: this run's
    header; it replaces the file's when the configuration changed (``--seeds 3`` resuming a run of
    2 seeds), so that the header states what the file holds. How it trains (workers, programs'
    sizes) is not what it holds: a change there keeps the file's header."""
    old, rows, intact = previous
    how = ("workers", "max_parallel", "backend")
    was = (old.get("config") or {}).get("threads", "absent")
    if head is not None and was != "absent" and was != head["config"].get("threads"):
        raise InputError(
            f"--resume: {out} was written with --threads {was}; XLA's threads change a trial's last "
            f"bits, so resume with --threads {was}"
        )
    changed = head is not None and (
        {k: v for k, v in json.loads(json.dumps(head["config"])).items() if k not in how}
        != {k: v for k, v in (old.get("config") or {}).items() if k not in how}
    )
    head = old if head is None or not changed else head
    foreign = [row for row in rows if row["id"] not in specs and known is not None and row["id"] not in known]
    if foreign:
        raise InputError(
            f"--resume: {out} holds {len(foreign)} trial(s) that are not part of this run (other "
            "options or data?); resume with the options that wrote it, or write to a new --out"
        )
    _check_optimizer_files(out, rows)
    finished = {row["id"]: row for row in rows if row["status"] in results.FINISHED}
    if changed or not intact or len(finished) < len(rows):  # a new header, a torn last line, error rows
        text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in [head, *finished.values()])
        results.atomic_write_text(out, text)
    return head, {i: results.from_row(row, specs[i]) for i, row in finished.items() if i in specs}


def _check_optimizer_files(out: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Refuse to resume when an optimizer file the results were trained with has changed since:
    its rows and the new ones would come from different code under one name."""
    for row in rows:
        before = row.get("optimizer_origin") or {}
        if before.get("kind") != "file":
            continue
        now = optim.origin(row["optimizer"])
        if now.get("sha256") != before.get("sha256"):
            raise InputError(
                f"--resume: optimizer file {before.get('path')} changed since {out} was written "
                f"(sha256 {str(before.get('sha256'))[:12]} -> {str(now.get('sha256'))[:12]}); "
                "restore it, or write to a new --out"
            )


@contextlib.contextmanager
def _holding_sigint() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a row is written: a row is written whole and counted, then it
    interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[Any, ...]] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *args: caught.append(args)) for sig in held}
    try:
        yield
    finally:
        for sig in held:
            signal.signal(sig, previous[sig])
        handler = previous[caught[0][0]] if caught else None
        if caught and callable(handler):
            handler(*caught[0])  # the handler that was held: KeyboardInterrupt / Terminated


def compare_optimizers(
    job: Job,
    names: Sequence[str],
    lr: str | None,
    *,
    out: Path | None = None,
    json: bool = False,
    quiet: bool = False,
    resume: bool = False,
    force: bool = False,
    layout: TableLayout = FIT,
) -> list[results.TrialResult]:
    """``dnnbench optimizers``: the paired comparison of ``names`` on one task."""
    from dnnbench.analysis import stats
    from dnnbench.render import tables as report

    layout.check(report.comparison_columns(paired=len(job.seeds) > 1), kept=("optimizer",))
    lrs = options.parse_lr(lr, names)
    specs = optimizer_specs(job, names, lrs, options.apply_hp(job.hp, names))
    trials = execute(
        job,
        specs,
        out=out,
        json_lines=json,
        quiet=quiet,
        resume=resume,
        force=force,
        extra_config={"command": "optimizers", "optimizers": list(names), "lr": lr},
        summary=lambda ts: stats.summary_row(ts, lambda t: t.optimizer, "optimizer"),
    )
    if not json:
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
    out: Path | None = None,
    json: bool = False,
    quiet: bool = False,
    resume: bool = False,
    force: bool = False,
    layout: TableLayout = FIT,
) -> list[results.TrialResult]:
    """``dnnbench regularizers``: each remedy on the same task, seeds and initial weights."""
    from dnnbench.analysis import stats
    from dnnbench.render import tables as report

    layout.check(report.comparison_columns(show_epochs=True, paired=len(job.seeds) > 1), kept=("regularizer",))
    hyperparams = options.apply_hp(job.hp, [optimizer])[optimizer]
    names, strengths, specs = regularizers.comparison_specs(
        job, methods, optimizer, lr, hyperparams, regularizers.given_strengths(job.reg)
    )
    trials = execute(
        job,
        specs,
        out=out,
        json_lines=json,
        quiet=quiet,
        resume=resume,
        force=force,
        extra_config={"command": "regularizers", "methods": names, "strengths": dataclasses.asdict(strengths)},
        summary=lambda ts: stats.summary_row(ts, lambda t: str(t.tags.get("regularizer", "?")), "regularizer"),
    )
    if not json:
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
    out: Path | None = None,
    json: bool = False,
    quiet: bool = False,
    resume: bool = False,
    force: bool = False,
) -> list[results.TrialResult]:
    """``dnnbench diagnose``: one configuration, its verdict, evidence and next commands."""
    from dnnbench.render import tables as report

    hyperparams = options.apply_hp(job.hp, [optimizer])[optimizer]
    specs = [job.trial(optimizer, lr, hyperparams, seed=s) for s in job.seeds]
    trials = execute(
        job,
        specs,
        out=out,
        json_lines=json,
        quiet=quiet,
        resume=resume,
        force=force,
        extra_config={"command": "diagnose"},
    )
    if not json:
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
    *,
    out: Path | None = None,
    json: bool = False,
    quiet: bool = False,
    resume: bool = False,
    force: bool = False,
    backend: str | None = None,
    ray_address: str | None = None,
    ray_max_retries: int | None = None,
    layout: TableLayout = FIT,
) -> list[results.TrialResult]:
    """``dnnbench run``: every experiment of a suite file into one results file, one table each.

    All experiments train in one ``execute`` (so trials of one structure share a compiled program
    across experiments); each row is tagged ``experiment=<name>``. ``out`` defaults to
    ``results/<suite stem>.jsonl``. ``--columns`` names columns of any experiment's table; each
    table shows those it has.
    """
    from dnnbench.experiments import suite
    from dnnbench.render import tables as report

    loaded = suite.load(path)
    layout.check(_suite_columns(loaded), kept=("optimizer", "regularizer"))
    given: dict[str, Any] = {
        k: v
        for k, v in {"backend": backend, "ray_address": ray_address, "ray_max_retries": ray_max_retries}.items()
        if v is not None
    }
    if given:  # the command line's --backend / --ray-address over the suite's [train]
        settings = dataclasses.replace(loaded.job.backend, **given)
        loaded = dataclasses.replace(loaded, job=dataclasses.replace(loaded.job, backend=settings))
    out = out if out is not None else Path("results") / f"{path.stem}.jsonl"
    target_of: dict[object, Any] = {e.name: e.job.target for e in loaded.experiments}
    trials = execute(
        loaded.job,
        loaded.specs,
        out=out,
        json_lines=json,
        quiet=quiet,
        resume=resume,
        force=force,
        extra_config=loaded.describe(),
        inputs=[path],
        target=lambda spec: target_of.get(dict(spec.tags).get("experiment")),
        then=loaded.finals if loaded.tunes else None,
    )
    if not json:
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
    if not quiet:
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
