"""Backends on a real local Ray cluster: the same numbers as local threads, rows in group order,
a killed worker retried, a failing program isolated, Ctrl-C then --resume, Ray missing.

One cluster (2 CPUs) for the whole module, started once and shut down at its end; every test of
this module runs in one pytest-xdist worker (``xdist_group`` + ``--dist loadgroup``). Subprocesses
join that cluster through ``RAY_ADDRESS`` (Ray's token authentication, on by default, included).
Nothing here stops a cluster or process it did not start.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dnnbench import cli
from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.run import backends, runner

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")

RAY = backends.Settings("ray")
SMALL = [
    "--dataset",
    "synthetic:train=200,test=50,features=8,classes=3",
    "--hidden",
    "8",
    "--batch-size",
    "20",
    "--quiet",
]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs; its address, for subprocesses."""
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def ds():
    return split(sources.load_synthetic(train=200, test=50, features=8, classes=3), 0.1)


def specs(optimizers: tuple[str, ...] = ("sgd", "adam"), seeds: int = 2, epochs: int = 2) -> tuple[TrialSpec, ...]:
    return tuple(
        TrialSpec(optimizer=o, seed=s, model=ModelConfig(hidden=(8,)), train=TrainConfig(epochs=epochs, batch_size=20))
        for o in optimizers
        for s in range(seeds)
    )


def numbers(trials) -> list:
    return trial_rows([json.loads(json.dumps(t.to_row())) for t in trials])


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def trial_rows(items: list[dict]) -> list[tuple]:
    return [(r["id"], r["status"], r["metrics"], r["history"]) for r in items if r["type"] == "trial"]


def env(address: str) -> dict[str, str]:
    return {**os.environ, "RAY_ADDRESS": address, "DNNBENCH_COMPILE_CACHE": "off"}


def program_pids() -> list[int]:
    """This session's Ray workers running a program now (Ray titles them ``ray::train_program``):
    descendants of this process -- the cluster's raylet is its child -- never another user's."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::train_program") and _ours(int(entry.name)):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _ours(pid: int) -> bool:
    for _ in range(4):  # worker -> raylet -> this process
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if pid == os.getpid():
            return True
    return False


def test_ray_gives_the_local_rows_bit_for_bit_in_group_order(cluster, ds):
    trials = specs()
    local = runner.execute(runner.Run(trials), ds)
    order: list[str] = []
    remote = runner.execute(runner.Run(trials, backend=RAY), ds, on_result=lambda r: order.append(r.id))
    assert numbers(remote) == numbers(local)
    assert all(t.status == "ok" for t in remote)
    plan, _ = runner.chunks_of(runner.Run(trials), ds)
    assert len(plan) == 4  # two groups of 2 seeds -> four programs, four Ray tasks
    assert order == [remote[i].id for chunk in plan for i in chunk]  # emitted in group order


def test_the_cli_writes_the_same_results_file_with_either_backend(cluster, tmp_path):
    argv = ["optimizers", "--optimizers", "sgd,adam", "--seeds", "2", "--epochs", "2", *SMALL]
    assert cli.main([*argv, "--out", str(tmp_path / "local.jsonl")]) == 0
    assert cli.main([*argv, "--out", str(tmp_path / "ray.jsonl"), "--backend", "ray"]) == 0
    local, remote = rows(tmp_path / "local.jsonl"), rows(tmp_path / "ray.jsonl")
    assert trial_rows(remote) == trial_rows(local) and len(trial_rows(remote)) == 4
    assert remote[0]["config"]["backend"] == {"backend": "ray", "ray_address": None, "ray_max_retries": 2}
    assert remote[0]["config"]["threads"] == local[0]["config"]["threads"] == 1
    assert remote[-1]["type"] == local[-1]["type"] == "summary"


def watched(settings: backends.Settings, ds, trials) -> tuple[list, dict]:
    """Train ``trials`` on Ray with every progress callback; the rows and what the callbacks heard."""
    heard: dict[str, list] = {"groups": [], "epochs": [], "statuses": []}
    got = runner.execute(
        runner.Run(trials, backend=settings),
        ds,
        on_group=lambda g, n, s: heard["groups"].append((g, n, len(s))),
        on_epoch=lambda g, epoch, metrics: heard["epochs"].append((g, epoch, sorted(metrics))),
        on_status=heard["statuses"].append,
    )
    return got, heard


def test_progress_on_a_cluster_shows_running_queued_finished_programs_nodes_and_epochs(cluster, ds):
    trials = specs(("sgd", "adam", "rmsprop"), seeds=2, epochs=150)  # 4 programs of a few seconds, 2 CPUs
    got, heard = watched(RAY, ds, trials)
    assert numbers(got) == numbers(runner.execute(runner.Run(trials), ds))  # progress changes no number
    statuses = heard["statuses"]
    assert statuses[0] == backends.Status(finished=0, running=0, queued=4, nodes_in_use=0, nodes=1)
    assert statuses[-1] == backends.Status(finished=4, running=0, queued=0, nodes_in_use=0, nodes=1)
    assert all(s.finished + s.running + s.queued == 4 for s in statuses)
    assert max(s.running for s in statuses) == 2  # two 1-CPU programs at once on 2 CPUs, never more
    assert {s.nodes_in_use for s in statuses} == {0, 1}
    assert [f for f in (s.finished for s in statuses)] == sorted(s.finished for s in statuses)
    plan, _ = runner.chunks_of(runner.Run(trials), ds)
    assert sorted(heard["groups"]) == [(g, 4, len(chunk)) for g, chunk in enumerate(plan)]  # one bar per program
    for g in range(4):  # every epoch of every program, in order, as it ended on the worker
        epochs = [epoch for h, epoch, _ in heard["epochs"] if h == g]
        assert epochs[-1] == 149 and epochs == sorted(epochs) and len(epochs) >= 100, (g, epochs[:5], len(epochs))
    assert all("val_acc" in names for _, _, names in heard["epochs"])


def test_tasks_declare_the_drivers_xla_threads_as_cpus(cluster, ds, monkeypatch):
    from dnnbench.train import threads

    trials = specs(("sgd", "adam"), seeds=1, epochs=100)
    monkeypatch.setattr(threads, "current", lambda: 2)  # a driver started with --threads 2
    got, heard = watched(RAY, ds, trials)
    assert max(s.running for s in heard["statuses"]) == 1  # 2-CPU tasks on a 2-CPU cluster: one at a time
    assert numbers(got) == numbers(runner.execute(runner.Run(trials), ds))


def test_a_killed_worker_is_retried_and_nothing_is_lost(cluster, ds, capfd):
    trials = specs(("sgd", "adam"), seeds=1, epochs=300)  # two programs of a few seconds each
    done: dict[str, list] = {}
    thread = threading.Thread(
        target=lambda: done.setdefault("rows", runner.execute(runner.Run(trials, backend=RAY), ds))
    )
    thread.start()
    deadline, killed = time.monotonic() + 120, None
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        pids = program_pids()
        if pids:
            time.sleep(1.0)  # mid-program
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    thread.join(300)
    assert killed is not None, "no program was seen running"
    assert "rows" in done, "the run raised"
    assert [t.status for t in done["rows"]] == ["ok", "ok"], [t.extra.get("error") for t in done["rows"]]
    assert numbers(done["rows"]) == numbers(runner.execute(runner.Run(trials), ds))  # the retry: same numbers
    captured = capfd.readouterr()  # Ray's word of the dead worker went to stderr: stdout is --json's stream
    assert "A worker died" not in captured.out and "A worker died" in captured.err


FAILING = """import jax
import optax

def make(learning_rate=0.1):
    sgd = optax.sgd(learning_rate)

    def update(updates, state, params=None):
        # dnnbench's up-front check traces this on (3, 4) weights and passes; the real model fails
        if any(leaf.shape[0] > 4 for leaf in jax.tree.leaves(updates)):
            raise RuntimeError("boom on real weights")
        return sgd.update(updates, state, params)

    return optax.GradientTransformation(sgd.init, update)
"""


def test_a_failing_program_gives_error_rows_and_the_others_are_kept(cluster, ds, tmp_path):
    path = tmp_path / "failing.py"
    path.write_text(FAILING)
    trials = specs(("adam", f"{path}:make"), seeds=1)
    got = runner.execute(runner.Run(trials, backend=RAY), ds)
    assert [t.status for t in got] == ["ok", "error"]
    assert got[1].extra["error"] == "RuntimeError: boom on real weights"
    assert "boom" in got[1].extra["traceback"]
    local = runner.execute(runner.Run(trials), ds)  # as the local backend reports it
    assert numbers(got) == numbers(local) and got[1].extra["error"] == local[1].extra["error"]


def test_ctrl_c_cancels_the_tasks_keeps_finished_groups_and_resume_completes(cluster, tmp_path):
    out = tmp_path / "r.jsonl"
    argv = [
        sys.executable,
        "-m",
        "dnnbench",
        "optimizers",
        "--optimizers",
        "sgd,adam",
        "--seeds",
        "3",
        "--epochs",
        "100",
        *SMALL,
        "--backend",
        "ray",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(argv, env=env(cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and len(out.read_text().splitlines()) >= 2:  # the header and a finished program
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    kept = trial_rows(rows(out))
    assert 1 <= len(kept) < 6 and f"{len(kept)} of 6 trials written to {out}; --resume continues" in err
    deadline = time.monotonic() + 30
    while program_pids() and time.monotonic() < deadline:  # force-cancelled: no program goes on
        time.sleep(0.2)
    assert program_pids() == []
    resumed = subprocess.run([*argv, "--resume"], env=env(cluster), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    full = tmp_path / "full.jsonl"  # uninterrupted, on local threads (in this process: no start-up)
    assert cli.main([*argv[3:-4], "--out", str(full)]) == 0
    assert trial_rows(rows(out))[: len(kept)] == kept  # the finished groups kept as they were
    assert sorted(trial_rows(rows(out))) == sorted(trial_rows(rows(full)))  # bit-identical to an uninterrupted run


def test_without_ray_installed_backend_ray_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    assert cli.main(["optimizers", "--optimizers", "adam", "--epochs", "1", *SMALL, "--backend", "ray"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "dnnbench: error: Ray is not installed: pip install 'dnnbench[ray]'\n"
    assert captured.out == ""


def test_a_suite_chooses_its_backend_in_train(tmp_path):
    from dnnbench.experiments import suite

    path = tmp_path / "s.toml"
    path.write_text(
        '[train]\nepochs = 1\nbackend = "ray"\nray_max_retries = 1\n\n[[experiment]]\nkind = "optimizers"\n'
    )
    assert suite.load(path).job.backend == backends.Settings("ray", None, 1)
    path.write_text('[train]\nepochs = 1\nbackend = "spark"\n\n[[experiment]]\nkind = "optimizers"\n')
    with pytest.raises(Exception, match=r"s\.toml:3: \[train\] .*unknown backend 'spark'"):
        suite.load(path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- Ray addresses: one line within seconds, nothing written before the cluster answers, SIGTERM -> 143


@pytest.fixture()
def resumable(tmp_path, run, tiny) -> Path:
    path = tmp_path / "r.jsonl"
    code, _, err = run("diagnose", *tiny, "--out", path, "--json")
    assert code == 0, err
    return path


@pytest.fixture
def closed_port():
    """A port nothing listens on for the whole test: bound here but never listening (connections
    are refused), so no other process -- a Ray cluster of another test starting meanwhile -- can
    take it, as it could a port closed right away."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.parametrize("where", ["option", "env"])
def test_class_5_a_bad_or_unreachable_ray_address_is_one_line_and_writes_nothing(
    tmp_path, resumable, where, monkeypatch, run, tiny, closed_port
):
    pytest.importorskip("ray")
    before = _sha(resumable)
    for address, said in [
        ("garbage", "is not a Ray address"),
        (f"127.0.0.1:{closed_port}", "cannot reach the Ray cluster at 127.0.0.1:"),
    ]:
        given = ["--ray-address", address] if where == "option" else []
        if where == "env":
            monkeypatch.setenv("RAY_ADDRESS", address)
        for out, extra in [(tmp_path / "new.jsonl", []), (resumable, ["--resume"])]:
            start = time.monotonic()
            code, _, err = run("diagnose", *tiny, "--backend", "ray", *given, "--out", out, *extra)
            assert code == 2, err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and said in lines[0] and "Traceback" not in err, err
            assert ("--ray-address" if where == "option" else "$RAY_ADDRESS") in lines[0] or said.startswith("is not")
            assert time.monotonic() - start < 60
        assert not (tmp_path / "new.jsonl").exists()
        assert _sha(resumable) == before


def test_class_5_token_auth_is_used_when_a_token_is_at_hand(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from dnnbench.run.backends import ray as ray_backend

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.setenv(name, "")  # restored after the test, whatever _use_token_auth sets
        monkeypatch.delenv(name)
    assert ray_backend._use_token_auth() is False and "RAY_AUTH_MODE" not in os.environ
    missing = ray_backend._cannot_join("h:1", RuntimeError("InvalidAuthToken: token is missing"), token=False)
    assert "requires token authentication and no token was found" in str(missing)
    assert "~/.ray/auth_token" in str(missing) and "$RAY_AUTH_TOKEN" in str(missing)
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("0" * 32)
    assert ray_backend._use_token_auth() is True and os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # said explicitly: respected
    assert ray_backend._use_token_auth() is False
    wrong = ray_backend._cannot_join("h:1", RuntimeError("Unauthenticated"), token=True)
    assert "refused this machine's token" in str(wrong)


SILENT = """\
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
held = []
s.settimeout(0.5)
while True:  # accepts, never answers: a port where no Ray cluster speaks
    try:
        held.append(s.accept()[0])
        print("connected", flush=True)
    except socket.timeout:
        pass
"""


def test_class_5_sigterm_while_waiting_for_a_cluster_exits_143_and_writes_nothing(tmp_path, tiny, dnnbench_command):
    pytest.importorskip("ray")
    (tmp_path / "silent.py").write_text(SILENT)
    server = subprocess.Popen([sys.executable, "silent.py"], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    proc = None
    try:
        port = int(server.stdout.readline())
        out = tmp_path / "r.jsonl"
        argv = ["diagnose", *tiny, "--backend", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", str(out)]
        proc = subprocess.Popen([*dnnbench_command, *argv], stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        ready, _, _ = select.select([server.stdout], [], [], 30)  # dnnbench is at the address: waiting
        assert ready and server.stdout.readline().strip() == "connected"
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 143, err
        assert err.strip().splitlines()[-1] == "dnnbench: terminated (SIGTERM)"
        assert not out.exists() and not (tmp_path / ".r.jsonl.lock").exists()
    finally:
        for started in (proc, server):
            if started is not None and started.poll() is None:
                started.kill()
                started.wait()
