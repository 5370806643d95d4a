"""A training command's results-file session: every check first, then the rows, streamed.

``execute`` claims and locks ``--out``, joins the backend (a Ray cluster answers before anything
is written), loads the data, checks the trials -- and a second stage's plan (``Later``) and a
resumed file's rows against both stages -- and only then opens the file and trains, writing each
group's rows as it finishes (the file and ``--json``'s stdout). Ctrl-C, SIGTERM and SIGHUP keep
what finished and say so (``Interrupted``); a stop whose exception Python dropped is noticed at
the next check (``errors.check_stop``).
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
from dnnbench.cli import streams
from dnnbench.cli.output import Output
from dnnbench.config import TrialSpec
from dnnbench.errors import InputError, Interrupted, OutputError, check_stop, stop_signal
from dnnbench.experiments.job import Job
from dnnbench.render.progress import TrainingProgress
from dnnbench.results import files as output_files
from dnnbench.results import rows as results
from dnnbench.run import backends, runner
from dnnbench.train import engine
from dnnbench.train import threads as xla_threads


@dataclasses.dataclass(frozen=True)
class Later:
    """A second stage that depends on the first one's results (``tune``: the winners' final runs
    after the search), planned into programs of its own and written to the same file, under the
    same lock, after the first stage's rows.

    ``specs(first_results)``: its trials. ``specs([])`` is its plan without those results (the
    defaults' runs), built and checked against the data before anything trains, so that a stage
    that cannot run is refused before the first one is written. ``possible()``: every trial it
    could have whatever the first stage's results (a superset: every candidate as the winner),
    built only when a resumed file holds rows that neither stage explains yet. ``config``: what its
    header adds once the first stage is known. ``first_written``: whether the first stage's rows
    go to the results file (``optimizers --tune``'s grid only chooses the rates; it is not written).
    """

    specs: Callable[[list[results.TrialResult]], Sequence[TrialSpec]]
    possible: Callable[[], Sequence[TrialSpec]]
    config: Callable[[list[results.TrialResult]], dict[str, Any]] | None = None
    first_written: bool = True


def execute(
    job: Job,
    specs: Sequence[TrialSpec],
    *,
    output: Output,
    extra_config: dict[str, Any] | None = None,
    summary: Any = None,
    inputs: Sequence[Path] = (),
    then: Later | None = None,
    target: Any = None,
) -> list[results.TrialResult]:
    """Load data, check, then train ``specs`` streaming rows to ``output.out`` / stdout (``output.json``);
    returns the results.

    ``then``: a second stage that depends on the first one's results (``Later``); ``summary`` then
    closes the second stage, and a resumed file may hold rows of both stages. Every check of both
    stages -- the second stage's plan, a resumed file's rows against what either stage can hold --
    happens before anything trains or is written; rows of the second stage that followed from
    first-stage results that have changed since (a search given more candidates) are dropped,
    with a line that says so, once the first stage has chosen again.
    ``target``: the time-to-target each row records (default ``job.target``; a function of the
    trial for suites, whose experiments have their own).

    ``output.resume``: keep the finished trials already in ``out`` (matched by id), train the others
    and append them. Ctrl-C (or SIGTERM) raises ``Interrupted``, which says how many trials the file
    holds. ``out`` is claimed first (never an input: the data file, ``inputs``, optimizer files; an
    existing file only with ``force`` or ``resume``) and locked for the whole run (``output_files``).
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
    out, resume = output.out, output.resume
    if resume and out is None:
        raise InputError("--resume needs --out: the results file to resume")
    if resume and output.force:
        raise InputError("--resume keeps the file and --force replaces it; give one of them")
    with contextlib.ExitStack() as held:
        if out is not None:
            held.enter_context(output_files.lock(out))  # first: a second run stops here, at once
            output_files.claim(
                out, inputs=[job.data.path, *inputs, *_optimizer_files(specs)], force=output.force, resume=resume
            )
        held.enter_context(backends.session(job.backend))  # a Ray cluster answers before anything is written
        if then is None:
            return _execute(job, run, output, extra_config=extra_config, summary=summary)
        written = then.first_written
        unwritten = dataclasses.replace(output, out=None, json=False, quiet=output.quiet or output.json, resume=False)
        first = _execute(
            job,
            run,
            output if written else unwritten,
            extra_config=extra_config,
            summary=None,
            later=then,
            resumed=out if resume else None,
        )
        second = dataclasses.replace(run, specs=tuple(then.specs(first)))
        config = {**(extra_config or {}), **(then.config(first) if then.config else {})}
        return (first if written else []) + _execute(
            job,
            second,
            dataclasses.replace(output, resume=out is not None and (written or resume)),
            extra_config=config,
            summary=summary,
            earlier=first if written else (),
            stale=then.possible,
            announce=False,
        )


def _optimizer_files(specs: Sequence[TrialSpec]) -> list[Path]:
    """The user optimizer files (``path/to/file.py:factory``) a run reads: inputs, never written."""
    names = {spec.optimizer for spec in specs}
    return [Path(name.rsplit(":", 1)[0]) for name in names if ":" in name and name.rsplit(":", 1)[0].endswith(".py")]


def _execute(
    job: Job,
    run: runner.Run,
    output: Output,
    *,
    extra_config: dict[str, Any] | None,
    summary: Any,
    later: Later | None = None,
    resumed: Path | None = None,
    earlier: Sequence[results.TrialResult] = (),
    stale: Callable[[], Sequence[TrialSpec]] | None = None,
    announce: bool = True,
) -> list[results.TrialResult]:
    """``execute`` once ``output.out`` is claimed and locked (``output``: this stage's).

    Stages (``execute(then=...)``): the first runs with ``later`` (the second stage: its plan is
    checked now, and the rows of ``resumed``, the file being resumed, must belong to one stage or
    the other), the second with ``earlier`` (the first stage's results: their rows are in the file
    and on stdout already, the header too) and ``stale`` (every trial it could have had: its rows
    that this run's first stage no longer leads to are dropped).
    """
    out, json_lines, quiet, resume = output.out, output.json, output.quiet, output.resume
    previous = results.read_resumable(out) if resume and out is not None else None
    show_progress = not quiet and not json_lines and sys.stderr.isatty()
    data = datamod.load(job.data, progress=show_progress)
    engine.check_specs(run.specs, data)
    if job.data.path and not quiet and announce:  # a file's classes are inferred: say how many
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
    threads = runner.program_threads(run, plan)  # --threads auto: the cores shared out between them
    effective = {"workers": workers, "plan": [len(chunk) for chunk in plan], "threads": threads}
    head = results.header({**job.describe(), **effective, **(extra_config or {})}, data.describe())
    known: Collection[str] = {t.id for t in earlier}
    if later is not None:  # the second stage's plan, and what a resumed file may hold of it: checked now
        planned = list(later.specs([]))
        if planned:
            engine.check_specs(planned, data)
        if resumed is not None:
            old, rows, _ = previous if previous is not None else results.read_resumable(resumed)
            known = _later_ids(resumed, rows, ids if out is not None else [], planned, later.possible, key)
            if out is None:  # the first stage is not written: check the file now, as its resume will
                _check_threads(resumed, old, head)
                _check_optimizer_files(resumed, rows)
    done: dict[str, results.TrialResult] = {}
    if previous is not None and out is not None:
        head, done = _resume(
            out,
            previous,
            dict(zip(ids, run.specs, strict=True)),
            known=known,
            head=head,
            stale=(lambda: {results.trial_id(s, key) for s in stale()}) if stale is not None else None,
        )
    # Resume trains again every compiled group with a missing member, whole: a trial's numbers match
    # an uninterrupted run bit for bit only in the same group (XLA's sums change in the last bits
    # with the group's size). Groups are written whole, so after Ctrl-C this costs nothing extra.
    pending = [chunk for chunk in plan if any(ids[i] not in done for i in chunk)]
    todo = [i for chunk in pending for i in chunk]
    written = len(done)
    sinks: list[results.ResultsWriter] = []
    check_stop()  # a stop whose raise Python dropped (in a garbage-collection callback) ends the run here
    _say_once(engine.compile_cache_problem())
    asked = xla_threads.requested()
    if threads is not None and asked > threads and not xla_threads.is_auto():  # at most one per core
        _say_once(
            f"{asked} XLA threads asked (--threads or ${xla_threads.ENV}), but XLA runs {threads} in this "
            f"process (at most one per core it may use); the header records {threads}"
        )
    with contextlib.ExitStack() as stack:
        if out is not None:
            sinks.append(
                results.ResultsWriter(stack.enter_context(results.open_results(out, append=resume)), f"--out {out}")
            )
            if not resume:  # a resumed file keeps its own header
                sinks[-1].write(head)
        if json_lines:  # stdout gets the whole run: header, resumed trials, new trials
            sinks.append(results.ResultsWriter(streams.rows_stdout(), "stdout"))
            for row in [*([] if earlier else [head]), *(result.to_row() for result in done.values())]:
                sinks[-1].write(row)
        if not todo:
            return _close([done[i] for i in ids], sinks, summary)
        todo_run = dataclasses.replace(run, specs=tuple(run.specs[i] for i in todo))
        progress = stack.enter_context(TrainingProgress(todo_run, enabled=show_progress))

        shared = _executable_trials(run.specs, ids, plan)

        def on_result(result: results.TrialResult) -> None:
            nonlocal written
            if result.id not in done:  # else trained again only to keep its group whole; already in the file
                result.timing["executable_trials"] = shared.get(result.id)
                with _holding_sigint():
                    for sink in sinks:
                        sink.write(result.to_row())
                    written += 1
            check_stop()  # after the row: what finished is kept

        try:
            position = {i: k for k, i in enumerate(todo)}
            watch: dict[str, Any] = (
                {"on_epoch": progress.on_epoch, "on_group": progress.on_group, "on_status": progress.on_status}
                if show_progress
                else {}
            )  # none: a Ray run then needs no progress actor
            trained = runner.execute(
                todo_run,
                data,
                on_result=on_result,
                groups=[[position[i] for i in chunk] for chunk in pending],
                threads=threads,
                **watch,
            )
            check_stop()
        except KeyboardInterrupt as exc:
            where = f"written to {out}" if out else "written to stdout" if json_lines else "finished (no --out)"
            signum = stop_signal(exc)
            how = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
            raise Interrupted(
                f"{how}; {written} of {len(ids)} trials {where}" + ("; --resume continues" if out else ""),
                128 + signum,
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


_said: set[str] = set()


def _say_once(warning: str | None) -> None:
    """A warning line on stderr, once per process (a second stage or command does not repeat it)."""
    if warning and warning not in _said:
        _said.add(warning)
        from dnnbench.errors import printable

        print(f"dnnbench: warning: {printable(warning, newlines=False)}", file=sys.stderr)


def _later_ids(
    out: Path,
    rows: Sequence[dict[str, Any]],
    first: Sequence[str],
    planned: Sequence[TrialSpec],
    possible: Callable[[], Sequence[TrialSpec]],
    key: dict[str, Any],
) -> set[str]:
    """The ids of the second stage's rows that resumed file ``out`` may hold, checked before the
    first stage trains: every row must be a trial of the first stage (ids ``first``), of the second
    stage's plan without first-stage results (``planned``), or one it could have (``possible``)."""
    ids = {results.trial_id(spec, key) for spec in planned}
    firsts = set(first)
    unexplained = [row for row in rows if row["id"] not in ids and row["id"] not in firsts]
    if unexplained:
        ids |= {results.trial_id(spec, key) for spec in possible()}
        foreign = [row for row in unexplained if row["id"] not in ids]
        if foreign:
            raise _foreign(out, len(foreign))
    return ids


def _foreign(out: Path, count: int) -> InputError:
    return InputError(
        f"--resume: {out} holds {count} trial(s) that are not part of this run (other "
        "options or data?); resume with the options that wrote it, or write to a new --out"
    )


def _resume(
    out: Path,
    previous: tuple[dict[str, Any], list[dict[str, Any]], bool],
    specs: dict[str, TrialSpec],
    known: Collection[str] = frozenset(),
    head: dict[str, Any] | None = None,
    stale: Callable[[], set[str]] | None = None,
) -> tuple[dict[str, Any], dict[str, results.TrialResult]]:
    """The header and finished trials of the file being resumed; rewrites it without the rest.

    ``known``: ids of another stage of the same run that the file may hold (kept, not returned).
    ``stale``: the ids of rows this stage could have had (a second stage, before its first stage
    chose again): such rows are dropped, and a line says so. ``head``: this run's header; it
    replaces the file's when the configuration changed (``--seeds 3`` resuming a run of 2 seeds),
    so that the header states what the file holds. How it trains (workers, programs' sizes) is not
    what it holds: a change there keeps the file's header."""
    old, rows, intact = previous
    how = ("workers", "max_parallel", "backend")
    if head is not None:
        _check_threads(out, old, head)
    changed = head is not None and (
        {k: v for k, v in json.loads(json.dumps(head["config"])).items() if k not in how}
        != {k: v for k, v in (old.get("config") or {}).items() if k not in how}
    )
    head = old if head is None or not changed else head
    foreign = [row for row in rows if row["id"] not in specs and row["id"] not in known]
    dropped: set[str] = set()
    if foreign and stale is not None:
        could = stale()
        dropped = {row["id"] for row in foreign if row["id"] in could}
        foreign = [row for row in foreign if row["id"] not in could]
    if foreign:
        raise _foreign(out, len(foreign))
    _check_optimizer_files(out, rows)
    if dropped:
        print(
            f"dnnbench: --resume: {len(dropped)} final run(s) in {out} followed from first-stage results "
            "that have changed since (a search with more candidates, or errored ones trained again); "
            "they are dropped and the runs this search leads to are trained",
            file=sys.stderr,
        )
    finished = {row["id"]: row for row in rows if row["status"] in results.FINISHED and row["id"] not in dropped}
    if changed or not intact or len(finished) < len(rows):  # a new header, a torn last line, error rows
        text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in [head, *finished.values()])
        results.atomic_write_text(out, text)
    return head, {i: results.from_row(row, specs[i]) for i, row in finished.items() if i in specs}


def _check_threads(out: Path, old: dict[str, Any], head: dict[str, Any]) -> None:
    was = (old.get("config") or {}).get("threads", "absent")
    if was != "absent" and was != head["config"].get("threads"):
        raise InputError(
            f"--resume: {out} was written with --threads {was}; XLA's threads change a trial's last "
            f"bits, so resume with --threads {was}"
        )


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
    """Hold Ctrl-C, SIGTERM and SIGHUP while a row is written: a row is written whole and counted,
    then it interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[Any, ...]] = []
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda *args: caught.append(args)) for sig in held}
    try:
        yield
    finally:
        for sig in held:
            signal.signal(sig, previous[sig])
        handler = previous[caught[0][0]] if caught else None
        if caught and callable(handler):
            handler(*caught[0])  # the handler that was held: KeyboardInterrupt / Terminated
