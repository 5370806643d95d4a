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
        (["--threads", "0"], {}, "threads must be a positive integer, got 0"),
        ([], {"DNNBENCH_THREADS": "many"}, "$DNNBENCH_THREADS must be a positive integer, got 'many'"),
    ],
)
def test_a_bad_thread_count_is_one_line_and_exit_2(argv, env, message, tmp_path):
    out = tmp_path / "r.jsonl"
    got = dnnbench(["diagnose", "--epochs", "1", "--hidden", "8", *argv, "--out", str(out)], env=env)
    assert (got.returncode, got.stderr, got.stdout) == (2, f"dnnbench: error: {message}\n", "")
    assert not out.exists()


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
