"""XLA's CPU threads are a setting of the run, not of the machine (``dnnbench.train.threads``).

The reference-sized MLP is where the thread count shows: with jaxlib 0.10.2 its bias gradients
differ in the last bits between 1 and 2 threads. Each run here is a fresh process, because XLA's
pools are sized once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
RUN = ["optimizers", "--optimizers", "adam,adagrad", "--epochs", "2", "--hidden", "500,500", "--json", "--quiet"]


def dnnbench(
    argv: list[str],
    *,
    cores: list[int] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    return subprocess.run(
        [sys.executable, "-m", "dnnbench", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=pin,
        env={**os.environ, "DNNBENCH_COMPILE_CACHE": "off", **(env or {})},
    )


def trials(stdout: str) -> tuple[dict, list[tuple]]:
    rows = [json.loads(line) for line in stdout.splitlines()]
    return rows[0], [(r["id"], r["metrics"], r["history"]) for r in rows if r["type"] == "trial"]


@pytest.mark.skipif(len(CORES) < 2, reason="needs two cores to compare with one")
def test_the_same_run_gives_the_same_bits_on_one_core_and_on_all_of_them():
    one, every = dnnbench(RUN, cores=CORES[:1]), dnnbench(RUN)
    assert one.returncode == every.returncode == 0, one.stderr + every.stderr
    (head_one, rows_one), (head_all, rows_all) = trials(one.stdout), trials(every.stdout)
    assert head_one["config"]["threads"] == head_all["config"]["threads"] == 1
    assert len(rows_one) == 2 and rows_one == rows_all


@pytest.mark.skipif(len(CORES) < 2, reason="needs two cores for two threads")
def test_threads_is_recorded_and_the_environment_sets_it_like_the_option():
    option, env = dnnbench([*RUN, "--threads", "2"]), dnnbench(RUN, env={"DNNBENCH_THREADS": "2"})
    assert option.returncode == env.returncode == 0, option.stderr + env.stderr
    assert trials(option.stdout)[0]["config"]["threads"] == 2
    assert trials(option.stdout)[1] == trials(env.stdout)[1]


@pytest.mark.parametrize(
    "argv, env, message",
    [
        (["--threads", "0"], {}, "--threads must be a positive integer or auto, got 0"),
        (["--threads", "most"], {}, "--threads must be a positive integer or auto, got 'most'"),
        ([], {"DNNBENCH_THREADS": "many"}, "$DNNBENCH_THREADS must be a positive integer or auto, got 'many'"),
    ],
)
def test_a_bad_thread_count_is_one_line_and_exit_2(argv, env, message, tmp_path):
    out = tmp_path / "r.jsonl"
    got = dnnbench(["diagnose", "--epochs", "1", "--hidden", "8", *argv, "--out", str(out)], env=env)
    assert (got.returncode, got.stderr, got.stdout) == (2, f"dnnbench: error: {message}\n", "")
    assert not out.exists()


@pytest.mark.skipif(len(CORES) < 2, reason="needs two cores to share out")
def test_auto_gives_a_run_of_one_program_every_core_with_the_numbers_of_that_count():
    """Trained in a worker process whose XLA runs every core; the same bits as the driver's own
    XLA started with that many (``--threads N``)."""
    one = ["diagnose", "--optimizer", "adam", "--epochs", "2", "--hidden", "500,500", "--json", "--quiet"]
    auto, every = dnnbench([*one, "--threads", "auto"]), dnnbench([*one, "--threads", str(len(CORES))])
    assert auto.returncode == every.returncode == 0, auto.stderr + every.stderr
    (head_auto, rows_auto), (head_every, rows_every) = trials(auto.stdout), trials(every.stdout)
    assert head_auto["config"]["threads"] == head_every["config"]["threads"] == len(CORES)
    assert len(rows_auto) == 1 and rows_auto == rows_every


@pytest.mark.skipif(len(CORES) < 2, reason="needs two cores to share out")
def test_auto_gives_programs_as_many_as_the_cores_one_thread_each_with_the_numbers_of_one():
    """Two programs on two cores: one thread each, as the default trains them (the driver and a
    worker process), with the rows of ``--threads 1``. On N cores: N // 2 threads each."""
    each = max(1, len(CORES) // 2)
    auto, fixed = dnnbench([*RUN, "--threads", "auto"]), dnnbench([*RUN, "--threads", str(each)])
    assert auto.returncode == fixed.returncode == 0, auto.stderr + fixed.stderr
    (head_auto, rows_auto), (head_fixed, rows_fixed) = trials(auto.stdout), trials(fixed.stdout)
    assert head_auto["config"]["threads"] == head_fixed["config"]["threads"] == each
    assert len(rows_auto) == 2 and rows_auto == rows_fixed


def test_auto_shares_the_cores_out_between_the_programs(xla_started):
    threads = xla_started(1, 16)
    threads.use("Auto")
    assert threads.is_auto() and os.environ[threads.ENV] == "auto"
    assert threads.requested() == 1  # this process's own XLA: the default (the programs get their share)
    assert [threads.for_programs(n) for n in (1, 2, 5, 16, 40)] == [16, 8, 3, 1, 1]


def test_auto_gives_each_program_its_share_where_processes_train_them_else_this_xla(xla_started, monkeypatch):
    from dnnbench.run import backends

    threads = xla_started(2, 16)
    monkeypatch.setattr(backends, "_main_can_be_reimported", lambda: True)
    assert backends.program_threads(backends.Settings("local"), 5) == 2  # not asked for: XLA's own
    threads.use("auto")
    assert [backends.program_threads(backends.Settings(b), 5) for b in ("local", "processes", "threads")] == [3, 3, 2]
    monkeypatch.setattr(backends, "_main_can_be_reimported", lambda: False)  # no worker processes possible
    assert backends.program_threads(backends.Settings("local"), 5) == 2


def test_auto_is_refused_on_ray_whose_nodes_differ_in_cores(monkeypatch):
    from dnnbench.errors import InputError
    from dnnbench.run import backends
    from dnnbench.train import threads

    monkeypatch.setenv(threads.ENV, "auto")
    with pytest.raises(InputError, match=r"--threads auto is for runs on this machine; .* --threads N"):
        backends.session(backends.Settings("ray"))


def test_resume_refuses_other_threads_than_the_file_was_written_with(tmp_path: Path):
    out = tmp_path / "r.jsonl"
    argv = ["optimizers", "--optimizers", "sgd,adam", "--epochs", "1", "--hidden", "8", "--quiet", "--out", str(out)]
    assert dnnbench(argv).returncode == 0
    before = out.read_text()
    got = dnnbench([*argv, "--resume", "--threads", "2"])
    assert got.returncode == 2 and got.stderr == (
        f"dnnbench: error: --resume: {out} was written with --threads 1; XLA's threads change a trial's last "
        "bits, so resume with --threads 1\n"
    )
    assert out.read_text() == before


@pytest.fixture()
def xla_started(monkeypatch):
    """``threads`` as if XLA had started in this process with ``started`` threads on ``cores`` cores."""
    from dnnbench.train import threads

    def start(started: int | None, cores: int):
        monkeypatch.setattr(threads, "_started", [started])
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
        monkeypatch.setenv(threads.ENV, "7")  # use() sets it; monkeypatch puts it back
        return threads

    return start


@pytest.mark.parametrize(
    "started, cores, asked",
    [
        (1, 2, 1),  # the same number: nothing to do
        (2, 2, 3),  # more than the cores: capped, the pool it has
        (4, 4, 9),
        (None, 2, 3),  # JAX started before dnnbench could size it: nothing to hold it to
    ],
)
def test_a_process_takes_the_threads_it_has(xla_started, started, cores, asked):
    threads = xla_started(started, cores)
    threads.use(asked)
    assert os.environ[threads.ENV] == str(asked)


@pytest.mark.parametrize("started, cores, asked", [(1, 2, 2), (2, 4, 1), (2, 4, 3), (2, 2, 1)])
def test_a_process_refuses_other_threads_than_xla_started_with(xla_started, started, cores, asked):
    from dnnbench.errors import InputError

    threads = xla_started(started, cores)
    message = f"XLA already runs with {started} threads in this process; --threads {asked} needs a new process"
    with pytest.raises(InputError) as refused:
        threads.use(asked)
    assert str(refused.value) == message
    assert os.environ[threads.ENV] == "7"  # nothing asked for


def test_class_14_more_threads_than_cores_are_clamped_with_a_notice(tmp_path, tiny, dnnbench_command):
    env = {**os.environ, "DNNBENCH_THREADS": "1000"}
    argv = ["diagnose", *tiny, "--json"]
    proc = subprocess.run(
        [*dnnbench_command, *argv], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    threads = json.loads(proc.stdout.splitlines()[0])["config"]["threads"]
    assert threads == len(os.sched_getaffinity(0)) < 1000
    assert f"1000 XLA threads asked (--threads or $DNNBENCH_THREADS), but XLA runs {threads} in this process" in (
        proc.stderr
    )
