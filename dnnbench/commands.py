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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnnbench import data as datamod
from dnnbench import engine, results, runner
from dnnbench.config import MAX_SEED, MAX_SEEDS, DataConfig, ModelConfig, Regularization, TrainConfig, TrialSpec
from dnnbench.errors import InputError, Interrupted


@dataclass(frozen=True)
class Job:
    """Everything the shared options say: data, model, training, regularization, seeds."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    reg: Regularization
    seeds: tuple[int, ...]
    max_parallel: int | None = None
    workers: int | None = None

    @classmethod
    def from_cli(cls, *, dataset: str, data: Path | None, data_dir: Path | None, no_verify: bool,
                 val_split: float, label_noise: float, hidden: str, activation: str, residual: bool, precision: str, loss: str,
                 epochs: int, batch_size: int, train_eval_samples: int, seeds: int, seed: int, max_parallel: int | None,
                 workers: int | None,
                 l1: float, l2: float, dropout: float, dropout_mode: str, early_stopping: bool, monitor: str,
                 patience: int, min_delta: float, augment_shift: int, augment_noise: float,
                 train_fraction: float) -> Job:
        if not 0 < seeds <= MAX_SEEDS:
            raise InputError(f"seeds must be a positive integer up to {MAX_SEEDS}, got {seeds}")
        if not 0 <= seed or seed + seeds - 1 > MAX_SEED:
            raise InputError(f"seeds {seed}..{seed + seeds - 1} must lie in [0, {MAX_SEED}]")
        if max_parallel is not None and max_parallel <= 0:
            raise InputError(f"max parallel must be a positive integer, got {max_parallel}")
        if workers is not None and workers <= 0:
            raise InputError(f"workers must be a positive integer, got {workers}")
        return cls(
            data=DataConfig(dataset=dataset, path=str(data) if data else None, val_split=val_split,
                            data_dir=str(data_dir) if data_dir else None, verify=not no_verify,
                            label_noise=label_noise),
            model=ModelConfig(hidden=parse_hidden(hidden), activation=activation, residual=residual,
                              precision=precision),
            train=TrainConfig(epochs=epochs, batch_size=batch_size, loss=loss, train_eval_samples=train_eval_samples),
            reg=Regularization(l1=l1, l2=l2, dropout=dropout, dropout_mode=dropout_mode,
                               early_stopping=early_stopping, monitor=monitor, patience=patience,
                               min_delta=min_delta, augment_shift=augment_shift, augment_noise=augment_noise,
                               train_fraction=train_fraction),
            seeds=tuple(range(seed, seed + seeds)),
            max_parallel=max_parallel,
            workers=workers,
        )

    def describe(self) -> dict[str, Any]:
        import dataclasses

        return {key: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
                for key, value in dataclasses.asdict(self).items()}


def parse_hidden(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--hidden must be comma-separated positive integers like 500,500, got {text!r}") from None


def execute(job: Job, specs: Sequence[TrialSpec], *, out: Path | None, json_lines: bool, quiet: bool,
            extra_config: dict[str, Any] | None = None, resume: bool = False,
            summary: Any = None) -> list[results.TrialResult]:
    """Load data, check, then train ``specs`` streaming rows to ``out`` / stdout; returns the results.

    ``resume``: keep the finished trials already in ``out`` (matched by id), train the others and
    append them. Ctrl-C raises ``Interrupted``, which says how many trials the file holds.
    ``summary``: trials -> the closing ``{"type": "summary"}`` row (statistics over seeds).
    """
    from dnnbench import report

    run = runner.Run(specs=tuple(specs), data=job.data, max_parallel=job.max_parallel, workers=job.workers)
    if resume and out is None:
        raise InputError("--resume needs --out: the results file to resume")
    previous = results.read_resumable(out) if resume and out is not None else None
    show_progress = not quiet and not json_lines and sys.stderr.isatty()
    data = datamod.load(job.data, progress=show_progress)
    engine.check_specs(run.specs, data)
    key = runner.data_key(job.data, data)
    ids = [results.trial_id(spec, key) for spec in run.specs]
    head = results.header({**job.describe(), **(extra_config or {})}, data.describe())
    done: dict[str, results.TrialResult] = {}
    if previous is not None and out is not None:
        head, done = _resume(out, previous, dict(zip(ids, run.specs, strict=True)))
    # Resume trains again every compiled group with a missing member, whole: a trial's numbers match
    # an uninterrupted run bit for bit only in the same group (XLA's sums change in the last bits
    # with the group's size). Groups are written whole, so after Ctrl-C this costs nothing extra.
    pending = [chunk for chunk in runner.chunks_of(run, data)[0] if any(ids[i] not in done for i in chunk)]
    todo = [i for chunk in pending for i in chunk]
    written = len(done)
    sinks: list[results.ResultsWriter] = []
    with contextlib.ExitStack() as stack:
        if out is not None:
            sinks.append(results.ResultsWriter(stack.enter_context(results.open_results(out, append=resume))))
            if not resume:  # a resumed file keeps its own header
                sinks[-1].write(head)
        if json_lines:  # stdout gets the whole run: header, resumed trials, new trials
            sinks.append(results.ResultsWriter(sys.stdout))
            for row in [head, *(result.to_row() for result in done.values())]:
                sinks[-1].write(row)
        if not todo:
            return _close([done[i] for i in ids], sinks, summary)
        todo_run = dataclasses.replace(run, specs=tuple(run.specs[i] for i in todo))
        progress = stack.enter_context(_progress(report, todo_run, show_progress))

        def on_result(result: results.TrialResult) -> None:
            nonlocal written
            if result.id in done:  # trained again only to keep its group whole; already in the file
                return
            with _holding_sigint():
                for sink in sinks:
                    sink.write(result.to_row())
                written += 1

        try:
            position = {i: k for k, i in enumerate(todo)}
            trained = runner.execute(todo_run, data, on_result=on_result, on_epoch=progress.on_epoch,
                                     on_group=progress.on_group,
                                     groups=[[position[i] for i in chunk] for chunk in pending])
        except KeyboardInterrupt:
            where = f"written to {out}" if out else "written to stdout" if json_lines else "finished (no --out)"
            raise Interrupted(f"interrupted; {written} of {len(ids)} trials {where}") from None
        new = {ids[i]: result for i, result in zip(todo, trained, strict=True)}
        return _close([done[i] if i in done else new[i] for i in ids], sinks, summary)


def _close(trials: list[results.TrialResult], sinks: Sequence[results.ResultsWriter], summary: Any) -> list:
    """Write the summary row, if the command has one, after every trial row."""
    if summary is not None and sinks:
        row = summary(trials)
        with _holding_sigint():
            for sink in sinks:
                sink.write(row)
    return trials


def _resume(out: Path, previous: tuple[dict[str, Any], list[dict[str, Any]], bool],
            specs: dict[str, TrialSpec]) -> tuple[dict[str, Any], dict[str, results.TrialResult]]:
    """The header and finished trials of the file being resumed; rewrites it without the rest."""
    head, rows, intact = previous
    foreign = [row for row in rows if row["id"] not in specs]
    if foreign:
        raise InputError(f"--resume: {out} holds {len(foreign)} trial(s) that are not part of this run (other "
                         "options or data?); resume with the options that wrote it, or write to a new --out")
    finished = {row["id"]: row for row in rows if row["status"] in results.FINISHED}
    if not intact or len(finished) < len(rows):  # a torn last line, or error rows to train again
        text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in [head, *finished.values()])
        results.atomic_write_text(out, text)
    return head, {i: results.from_row(row, specs[i]) for i, row in finished.items()}


@contextlib.contextmanager
def _holding_sigint() -> Iterator[None]:
    """Hold Ctrl-C while a row is written: a row is written whole and counted, then it interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[Any, ...]] = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])  # Python's default handler: KeyboardInterrupt


@contextlib.contextmanager
def _progress(report: Any, run: runner.Run, enabled: bool) -> Iterator[Any]:
    with report.TrainingProgress(run, enabled=enabled) as progress:
        yield progress


def compare_optimizers(job: Job, names: Sequence[str], lr: str | None, *, out: Path | None = None,
                       json: bool = False, quiet: bool = False, resume: bool = False) -> list[results.TrialResult]:
    """``dnnbench optimizers``: the paired comparison of ``names`` on one task."""
    from dnnbench import report, stats

    lrs = runner.parse_lr(lr, names)
    specs = runner.optimizer_specs(names, lrs, job.seeds, model=job.model, train=job.train, reg=job.reg)
    trials = execute(job, specs, out=out, json_lines=json, quiet=quiet, resume=resume,
                     extra_config={"command": "optimizers", "optimizers": list(names), "lr": lr},
                     summary=lambda ts: stats.summary_row(ts, lambda t: t.optimizer, "optimizer"))
    if not json:
        report.make_console().print(optimizers_table(job, trials))
    return trials


def optimizers_table(job: Job, trials: Sequence[results.TrialResult], title: str = "Optimizers") -> Any:
    """The comparison table of an optimizer comparison: one row per optimizer, mean ± std over seeds."""
    from dnnbench import report, stats

    summaries = stats.summarize(trials, lambda t: t.optimizer)
    title = f"{title} on {_data_label(job)}: {_model_label(job)}, {job.train.epochs} epochs, batch {job.train.batch_size}"
    paired = stats.paired_to_best(summaries, "test_acc") if len(job.seeds) > 1 else None
    return report.comparison_table(summaries, title=title, label_header="optimizer", paired=paired)


def compare_regularizers(job: Job, methods: str | None, optimizer: str, lr: float | None, *,
                         out: Path | None = None, json: bool = False, quiet: bool = False,
                         resume: bool = False) -> list[results.TrialResult]:
    """``dnnbench regularizers``: each remedy on the same task, seeds and initial weights."""
    from dnnbench import report, stats

    names, strengths, specs = regularizer_specs(job, methods, optimizer, lr)
    trials = execute(job, specs, out=out, json_lines=json, quiet=quiet, resume=resume,
                     extra_config={"command": "regularizers", "methods": names,
                                   "strengths": dataclasses.asdict(strengths)},
                     summary=lambda ts: stats.summary_row(ts, lambda t: t.tags.get("regularizer", "?"), "regularizer"))
    if not json:
        report.make_console().print(regularizers_table(job, trials, optimizer))
    return trials


def regularizer_specs(job: Job, methods: str | None, optimizer: str,
                      lr: float | None) -> tuple[list[str], Any, tuple[TrialSpec, ...]]:
    """The methods, their strengths (``--l1`` etc. or the defaults) and one trial per method and seed."""
    from dnnbench import regularizers

    image_like = _image_like(job)
    names = regularizers.parse_methods(methods, image_like)
    r = job.reg
    default = regularizers.Strengths()
    strengths = regularizers.Strengths(
        l1=r.l1 or default.l1, l2=r.l2 or default.l2, dropout=r.dropout or default.dropout,
        patience=r.patience, augment_shift=r.augment_shift or default.augment_shift,
        augment_noise=r.augment_noise or default.augment_noise,
    )
    hyper = (("learning_rate", lr),) if lr is not None else ()
    base = TrialSpec(optimizer=optimizer, hyperparams=hyper, model=job.model, train=job.train, reg=job.reg)
    if "early_stopping" in names or "all" in names:
        if job.data.val_split == 0:
            raise InputError("early stopping needs a validation set; use --val-split > 0 or leave it out of --methods")
    return names, strengths, regularizers.method_specs(names, base, job.seeds, strengths, image_like)


def regularizers_table(job: Job, trials: Sequence[results.TrialResult], optimizer: str,
                       title: str = "Regularizers") -> Any:
    """The comparison table of a regularizer comparison: one row per method, mean ± std over seeds."""
    from dnnbench import report, stats

    summaries = stats.summarize(trials, lambda t: t.tags.get("regularizer", "?"))
    title = (f"{title} on {_data_label(job)} (train fraction {job.reg.train_fraction:g}): "
             f"{_model_label(job)}, {optimizer}, {job.train.epochs} epochs, batch {job.train.batch_size}")
    paired = stats.paired_to_best(summaries, "test_acc") if len(job.seeds) > 1 else None
    return report.comparison_table(summaries, title=title, label_header="regularizer", show_epochs=True,
                                   paired=paired)


def _image_like(job: Job) -> bool:
    """Whether the data are single-channel images (augmentation by shifts makes sense)."""
    if job.data.path:
        return True  # checked against the loaded data by the engine; a clear error if not
    name = job.data.dataset.split(":")[0]
    return name in ("digits", "mnist", "fashion-mnist")


def diagnose_one(job: Job, optimizer: str, lr: float | None, *, out: Path | None = None, json: bool = False,
                 quiet: bool = False, resume: bool = False) -> list[results.TrialResult]:
    """``dnnbench diagnose``: one configuration, its verdict, evidence and next commands."""
    from dnnbench import report

    hyper = (("learning_rate", lr),) if lr is not None else ()
    specs = [TrialSpec(optimizer=optimizer, hyperparams=hyper, seed=s, model=job.model, train=job.train,
                       reg=job.reg) for s in job.seeds]
    trials = execute(job, specs, out=out, json_lines=json, quiet=quiet, resume=resume,
                     extra_config={"command": "diagnose"})
    if not json:
        console = report.make_console()
        for trial in trials:
            console.print(report.diagnosis_panel(trial))
    return trials


def list_datasets(data_dir: Path | None) -> None:
    """``dnnbench datasets``: the catalogue and what is available offline / cached."""
    from dnnbench import report
    from dnnbench.data import mnist, sources

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



def run_suite(path: Path, *, out: Path | None = None, json: bool = False, quiet: bool = False,
              resume: bool = False) -> list[results.TrialResult]:
    """``dnnbench run``: every experiment of a suite file into one results file, one table each.

    All experiments train in one ``execute`` (so trials of one structure share a compiled program
    across experiments); each row is tagged ``experiment=<name>``. ``out`` defaults to
    ``results/<suite stem>.jsonl``.
    """
    from dnnbench import report, suite

    loaded = suite.load(path)
    out = out if out is not None else Path("results") / f"{path.stem}.jsonl"
    trials = execute(loaded.job, loaded.specs, out=out, json_lines=json, quiet=quiet, resume=resume,
                     extra_config=loaded.describe())
    if not json:
        console = report.make_console()
        for experiment in loaded.experiments:
            mine = [t for t in trials if t.tags.get("experiment") == experiment.name]
            kind = experiment.kind
            title = kind.capitalize() if experiment.name == kind else f"{experiment.name}: {kind}"
            if kind == "optimizers":
                table = optimizers_table(experiment.job, mine, title=title)
            else:
                table = regularizers_table(experiment.job, mine, experiment.settings.get("optimizer", "adam"), title=title)
            console.print(table)
    if not quiet:
        print(f"dnnbench: {len(trials)} trials of {len(loaded.experiments)} experiments in {out}", file=sys.stderr)
    return trials
