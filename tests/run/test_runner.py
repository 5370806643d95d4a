"""The runner: how trials become compiled programs and how several programs train at once.

Concurrency must be invisible in the numbers: a program's results do not depend on what trains
beside it, rows come back in group order whatever finishes first, an error in one program stops
the others, and equal parts of a split group share one executable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.errors import InputError
from dnnbench.run import runner
from dnnbench.train import engine

TRAIN = TrainConfig(epochs=2, batch_size=20)


@pytest.fixture(scope="module")
def ds():
    return split(sources.load_synthetic(train=200, test=50, features=8, classes=3), 0.1)


def specs(n: int, optimizer: str = "adam", hidden: tuple[int, ...] = (16,)) -> tuple[TrialSpec, ...]:
    return tuple(
        TrialSpec(optimizer=optimizer, seed=s, model=ModelConfig(hidden=hidden), train=TRAIN) for s in range(n)
    )


@pytest.mark.parametrize(
    ("sizes", "workers", "want"),
    [
        ([6], 3, [2, 2, 2]),  # equal parts
        ([6], 4, [1] * 6),  # 4 parts of 6 are not equal: the next divisor, 6
        ([7], 2, [1] * 7),  # a prime size becomes single trials
        ([5, 5], 3, [1] * 5 + [5]),  # the first chunk takes the extra worker
        ([3, 3, 3], 3, [3, 3, 3]),  # enough chunks already: unchanged
        ([4], 1, [4]),
    ],
)
def test_balance_cuts_chunks_into_equal_parts_for_the_workers(sizes, workers, want):
    start, chunks = 0, []
    for size in sizes:
        chunks.append(list(range(start, start + size)))
        start += size
    got = runner.balance(chunks, workers)
    assert [len(c) for c in got] == want
    assert [i for c in got for i in c] == list(range(start))  # contiguous, in order, all kept


def test_memory_budget_is_shared_by_the_workers(monkeypatch):
    group = [TrialSpec(seed=s, model=ModelConfig(hidden=(500, 500))) for s in range(12)]
    one = runner.trial_bytes(group[0], n_features=784)
    monkeypatch.setattr(runner, "MEMORY_BUDGET", 6 * one)
    assert [len(c) for c in runner.group_by_structure(group, n_features=784, workers=1)] == [6, 6]
    assert [len(c) for c in runner.group_by_structure(group, n_features=784, workers=2)] == [3, 3, 3, 3]
    # a cap that does not divide the group: near-equal chunks, one executable for 8 + 8
    monkeypatch.setattr(runner, "MEMORY_BUDGET", 10 * one)
    sixteen = [TrialSpec(seed=s, model=ModelConfig(hidden=(500, 500))) for s in range(16)]
    assert [len(c) for c in runner.group_by_structure(sixteen, n_features=784, workers=1)] == [8, 8]
    assert [len(c) for c in runner.near_equal(list(range(13)), 3)] == [5, 4, 4]
    # --max-parallel is the user's word: neither the budget nor the balance changes it
    assert [len(c) for c in runner.group_by_structure(group, max_parallel=12, n_features=784, workers=2)] == [12]


def test_workers_do_not_change_the_numbers(ds):
    group = specs(4) + specs(2, "sgd")
    one = runner.execute(runner.Run(group, max_parallel=1, workers=1), ds)
    many = runner.execute(runner.Run(group, max_parallel=1, workers=3), ds)
    for a, b in zip(one, many, strict=True):
        assert a.id == b.id and a.metrics == b.metrics
        for name in a.history:
            np.testing.assert_array_equal(np.asarray(a.history[name]), np.asarray(b.history[name]), err_msg=name)


def test_equal_parts_of_a_split_group_compile_once(ds):
    group = specs(8, hidden=(13,))  # a shape no other test compiles
    before = engine.compile_count
    trials = runner.execute(runner.Run(group, workers=3), ds)
    assert runner.chunks_of(runner.Run(group, workers=3), ds)[0] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert engine.compile_count - before == 3  # weight init, optimizer init, epoch: shared by the 4 programs
    assert [t.spec.seed for t in trials] == list(range(8)) and all(t.status == "ok" for t in trials)
    # a program reports the time it spent building executables, not its wait for another's: with 4
    # programs sharing 3 executables, at least one built none (it used to report the wait)
    compile_s = [t.timing["compile_s"] for t in trials]
    assert min(compile_s) == 0.0 and max(compile_s) > 0.2


def test_results_come_back_in_group_order_whatever_finishes_first(ds, monkeypatch):
    train_group = engine.train_group

    def slow_first(group, *args, **kwargs):
        if group[0].optimizer == "sgd":
            time.sleep(1.0)  # the first group finishes last
        return train_group(group, *args, **kwargs)

    monkeypatch.setattr(engine, "train_group", slow_first)
    seen: list[str] = []
    threads: set[int] = set()

    def on_result(trial):
        seen.append(trial.optimizer)
        threads.add(threading.get_ident())

    trials = runner.execute(
        runner.Run(specs(1, "sgd") + specs(1, "adam") + specs(1, "rmsprop"), workers=3), ds, on_result=on_result
    )
    assert seen == ["sgd", "adam", "rmsprop"] == [t.optimizer for t in trials]
    assert threads == {threading.get_ident()}  # rows are written from the caller's thread


def test_an_input_error_in_one_program_stops_the_others(ds, monkeypatch):
    train_group = engine.train_group
    epochs_after_error: list[int] = []
    failed = threading.Event()

    def failing(group, data, *, on_epoch=None, **kwargs):
        if group[0].optimizer == "sgd":
            time.sleep(0.3)
            failed.set()
            raise InputError("disk full")

        def watch(epoch, metrics):
            if failed.is_set():
                epochs_after_error.append(epoch)
            on_epoch(epoch, metrics)

        return train_group(group, data, on_epoch=watch, **kwargs)

    monkeypatch.setattr(engine, "train_group", failing)
    long = tuple(
        TrialSpec(
            optimizer="adam", seed=0, model=ModelConfig(hidden=(16,)), train=TrainConfig(epochs=100_000, batch_size=20)
        )
        for _ in range(1)
    )
    start = time.perf_counter()
    with pytest.raises(InputError, match="disk full"):
        runner.execute(runner.Run(specs(1, "sgd") + long, workers=2), ds)
    assert len(epochs_after_error) <= 1  # the adam program stopped at its next epoch
    assert time.perf_counter() - start < 30


def test_a_crash_in_one_program_is_an_error_row_and_the_others_finish(ds, monkeypatch):
    train_group = engine.train_group

    def crashing(group, *args, **kwargs):
        if group[0].optimizer == "sgd":
            raise RuntimeError("out of memory")
        return train_group(group, *args, **kwargs)

    monkeypatch.setattr(engine, "train_group", crashing)
    trials = runner.execute(runner.Run(specs(1, "sgd") + specs(1, "adam"), workers=2), ds)
    assert [t.status for t in trials] == ["error", "ok"]
    assert trials[0].extra["error"] == "RuntimeError: out of memory"
    assert "crashing" in trials[0].extra["traceback"]


def test_workers_must_be_positive():
    with pytest.raises(InputError, match="workers must be a positive integer"):
        runner.Run(specs(1), workers=0)


@pytest.mark.parametrize(
    "backend, cores, threads, programs",
    [
        ("cpu", 2, 1, 2),  # one program per core
        ("cpu", 16, 1, 16),  # no cap: every core trains a program
        ("cpu", 8, 2, 4),  # each program's XLA runs on two threads
        ("cpu", 3, 2, 1),
        ("cpu", 2, 4, 1),  # more threads than cores: one program, never none
        ("cpu", 6, None, 6),  # XLA not sized by dnnbench: one thread's worth each
        ("gpu", 8, 1, 1),  # a GPU's stream runs one program at a time
    ],
)
def test_default_concurrency_is_one_program_per_threads_cores_on_cpu(monkeypatch, backend, cores, threads, programs):
    from dnnbench.train import threads as xla_threads

    monkeypatch.setattr(engine.jax, "default_backend", lambda: backend)
    monkeypatch.setattr(xla_threads, "cores", lambda: cores)
    monkeypatch.setattr(xla_threads, "current", lambda: threads)
    assert engine.concurrency() == programs


_CACHE_PROBE = """
import json, sys
import jax
from jax import monitoring
from dnnbench.run import runner
from dnnbench.train import engine
from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.data import sources, split

hits = []
monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
data = split(sources.load_synthetic(train=200, test=50, features=8, classes=3), 0.1)
spec = TrialSpec(optimizer="sgd", model=ModelConfig(hidden=(11,)), train=TrainConfig(epochs=2, batch_size=20))
[trial] = runner.execute(runner.Run((spec,)), data)
print(json.dumps({"hits": len(hits), "metrics": trial.metrics, "dir": str(engine.compile_cache_dir())}))
"""


def _probe(tmp_path, setting: str) -> tuple[dict, str]:
    import json
    import os
    import subprocess
    import sys

    # JAX's cache alone: the executable store (train.executables) would load the training programs
    # before JAX's cache is asked, and this probe counts JAX's hits
    env = {**os.environ, "DNNBENCH_COMPILE_CACHE": setting, "DNNBENCH_EXECUTABLES": "off"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-c", _CACHE_PROBE], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_a_second_process_loads_its_programs_from_the_compile_cache(tmp_path):
    cache = tmp_path / "xla"
    first, _ = _probe(tmp_path, str(cache))
    assert first["hits"] == 0 and first["dir"] == str(cache)
    assert len(list(cache.iterdir())) >= 3  # weight init, optimizer init, epoch
    second, _ = _probe(tmp_path, str(cache))
    assert second["hits"] >= 3  # nothing of the training compiled again
    assert second["metrics"] == first["metrics"]


def test_the_compile_cache_can_be_off_and_an_unwritable_one_is_skipped_quietly(tmp_path):
    off, _ = _probe(tmp_path, "off")
    assert off["dir"] == "None" and off["hits"] == 0
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bad, err = _probe(tmp_path, str(blocker / "xla"))
    assert bad["hits"] == 0 and bad["metrics"] == off["metrics"]
    assert "Warning" not in err and "cache" not in err.lower()


def test_on_stop_groups_that_finished_are_kept_and_unfinished_ones_are_not(ds, monkeypatch):
    """Group 0 trains long, group 1 finishes, group 2 fails with an InputError: group 1's rows
    still reach on_result (out of order, since the run ends), group 0's never do."""
    train_group = engine.train_group
    finished_1 = threading.Event()

    def scripted(group, *args, **kwargs):
        if group[0].optimizer == "rmsprop":
            assert finished_1.wait(60)
            raise InputError("disk full")
        output = train_group(group, *args, **kwargs)
        if group[0].optimizer == "sgd":
            finished_1.set()
        return output

    monkeypatch.setattr(engine, "train_group", scripted)
    long = (
        TrialSpec(optimizer="adam", model=ModelConfig(hidden=(16,)), train=TrainConfig(epochs=100_000, batch_size=20)),
    )
    seen: list[str] = []
    with pytest.raises(InputError, match="disk full"):
        runner.execute(
            runner.Run(long + specs(1, "sgd") + specs(1, "rmsprop"), workers=3),
            ds,
            on_result=lambda trial: seen.append(trial.optimizer),
        )
    assert seen == ["sgd"]


def test_the_plan_does_not_depend_on_workers_or_cores(ds):
    group = specs(6) + specs(3, "sgd")
    plans = {w: runner.chunks_of(runner.Run(group, workers=w), ds)[0] for w in (1, 2, 4, 7)}
    assert len({json.dumps(p) for p in plans.values()}) == 1


def test_same_rows_bit_for_bit_with_1_2_4_workers_and_one_core(tmp_path):
    """The CLI, in fresh processes: --workers 1, 2, 4 and a single-core affinity give identical rows."""
    argv = [
        sys.executable,
        "-m",
        "dnnbench",
        "optimizers",
        "--optimizers",
        "sgd,adam",
        "--seeds",
        "3",
        "--dataset",
        "synthetic:train=200,test=50,features=8,classes=3",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--quiet",
        "--json",
    ]
    env = {**os.environ, "DNNBENCH_COMPILE_CACHE": "off"}
    outputs = []
    for extra, prefix in (
        (["--workers", "1"], []),
        (["--workers", "2"], []),
        (["--workers", "4"], []),
        ([], ["taskset", "-c", "0"] if shutil.which("taskset") else []),
    ):
        proc = subprocess.run([*prefix, *argv, *extra], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
        outputs.append([(r["id"], r["metrics"], r["history"]) for r in rows if r["type"] == "trial"])
        assert rows[0]["config"]["plan"] == [1, 1, 1, 1, 1, 1]  # two groups of 3 seeds -> 6 single trials
    assert all(o == outputs[0] for o in outputs[1:])


def test_an_output_that_fails_reports_its_first_error_not_the_next_one(ds, monkeypatch):
    # `dnnbench ... --json | head -1`: the first row meets a broken pipe, the runner still emits the
    # groups that finished, and that write fails differently (the stream is closed by then)
    from dnnbench.errors import OutputError

    train_group = engine.train_group
    second_done = threading.Event()

    def first_last(group, *args, **kwargs):
        if group[0].optimizer == "sgd":
            second_done.wait(120)  # the second group has finished when the first is written
            return train_group(group, *args, **kwargs)
        try:
            return train_group(group, *args, **kwargs)
        finally:
            second_done.set()

    monkeypatch.setattr(engine, "train_group", first_last)
    calls = []

    def on_result(trial):
        calls.append(trial.id)
        raise OutputError("stdout: cannot write (Broken pipe)") if len(calls) == 1 else ValueError("closed file")

    with pytest.raises(OutputError, match="Broken pipe"):
        runner.execute(runner.Run(specs(1, "sgd") + specs(1, "adam"), workers=2), ds, on_result=on_result)
    assert len(calls) == 2  # the second group was still offered to the output


def test_a_results_writer_on_a_closed_stream_says_so_in_one_line():
    import io

    from dnnbench.errors import OutputError
    from dnnbench.results.rows import ResultsWriter

    stream = io.StringIO()
    stream.close()
    with pytest.raises(OutputError, match="results.jsonl: cannot write"):
        ResultsWriter(stream, "results.jsonl").write({"type": "trial"})
