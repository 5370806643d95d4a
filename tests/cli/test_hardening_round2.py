"""Issue 22, classes 1, 2, 3, 5, 7, 11 and 14: odd inputs on the newer surfaces, one test per class.

Each class is fixed by one mechanism: ``commands.Later`` checks a second stage before the first
trains; ``optim.user.guarded`` makes ``sys.exit`` in user code an error; ``errors.STOPS`` records
every stop signal so that none is lost; ``streams.rows_only`` keeps a ``--json`` stdout for rows;
``backends.session`` joins a Ray cluster before anything is written. Tiny data throughout.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnnbench.cli import main
from dnnbench.run import backends, runner

TINY = [
    "--dataset",
    "synthetic:train=200,test=50,features=8,classes=3",
    "--hidden",
    "8",
    "--epochs",
    "1",
    "--batch-size",
    "50",
    "-q",
]


def _run(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _dnnbench() -> list[str]:
    script = Path(sys.executable).with_name("dnnbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dnnbench"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def no_training(monkeypatch):
    """Any training fails the test: a refusal must come before anything trains."""

    def train(*args, **kwargs):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(runner, "execute", train)


# ---- 1. a multi-stage command checks every stage before anything trains or is written


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    """A finished ``tune`` of sgd: 2 search candidates, then default and tuned on 1 seed."""
    path = tmp_path_factory.mktemp("tune") / "t.jsonl"
    code, _, err = _run("tune", *TINY, "--optimizers", "sgd", "--budget", 2, "--seeds", 1, "--out", path)
    assert code == 0, err
    return path


def test_class_1_tune_resume_checks_every_stage_before_writing(tmp_path, tuned, monkeypatch):
    path = tmp_path / "t.jsonl"
    path.write_bytes(tuned.read_bytes())
    before = _sha(path)
    with monkeypatch.context() as patch:
        patch.setattr(runner, "execute", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
        # other options: no row of the file is part of this run -- refused before the search trains
        code, _, err = _run(
            "tune", *TINY, "--epochs", 2, "--optimizers", "sgd", "--budget", 4, "--out", path, "--resume"
        )
        assert code == 2, err
        assert "holds 4 trial(s) that are not part of this run" in err
        assert _sha(path) == before
        # optimizers --tune: its grid is not written, and an existing --out is refused before the grid trains
        code, _, err = _run("optimizers", *TINY, "--optimizers", "sgd", "--tune", "--out", path)
        assert code == 2 and "already exists" in err
        assert _sha(path) == before

    # More candidates, and the file's search no longer wins: its tuned final run is dropped (said so),
    # the new winner's trained; the file resumes with the new options (and still with the old ones).
    rows = _rows(path)
    for row in rows:
        if row.get("phase") == "search":
            row["metrics"]["val_acc"] = 0.0  # the new candidates win
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    old_tuned = next(r["id"] for r in rows if r.get("choice") == "tuned")
    code, _, err = _run("tune", *TINY, "--optimizers", "sgd", "--budget", 4, "--seeds", 1, "--out", path, "--resume")
    assert code == 0, err
    assert "1 final run(s) in" in err and "dropped" in err
    after = _rows(path)
    assert [r.get("candidate") for r in after if r.get("phase") == "search"] == [0, 1, 2, 3]
    tuned_rows = [r for r in after if r.get("choice") == "tuned"]
    assert len(tuned_rows) == 1 and tuned_rows[0]["id"] != old_tuned
    assert tuned_rows[0]["hyperparams"] in [r["hyperparams"] for r in after if r.get("candidate") in (2, 3)]


def test_class_1_a_final_stage_that_cannot_be_built_is_refused_before_the_search(tmp_path, no_training):
    factory = tmp_path / "req.py"
    factory.write_text("import optax\n\ndef make(learning_rate=0.01, *, b):\n    return optax.sgd(learning_rate, b)\n")
    out = tmp_path / "r.jsonl"
    code, _, err = _run(
        "tune", *TINY, "--optimizers", f"{factory}:make", "--space", "b=0.5..0.9", "--budget", 2, "--out", out
    )
    assert code == 2
    assert "defaults" in err and "needs a value for 'b'" in err and "--hp b=" in err
    assert not out.exists()
    suite = tmp_path / "s.toml"
    suite.write_text(
        '[data]\ndataset = "synthetic:train=200,test=50,features=8,classes=3"\n[model]\nhidden = [8]\n'
        f'[train]\nepochs = 1\nbatch_size = 50\n[[experiment]]\nkind = "tune"\noptimizers = ["{factory}:make"]\n'
        "budget = 2\n[experiment.space]\n" + f'"{factory}:make" = {{b = "0.5..0.9"}}\n'
    )
    code, _, err = _run("run", suite, "--out", out, "-q")
    assert code == 2 and "needs a value for 'b'" in err, err
    assert not out.exists()


# ---- 2. sys.exit / KeyboardInterrupt in user code: one line and exit 2 before training, an error row during it


@pytest.mark.parametrize(
    ("code_text", "said"),
    [
        (
            "import sys\nsys.exit(3)\n\ndef make(learning_rate=0.01):\n    pass\n",
            "opt.py:2: loading the optimizer file",
        ),
        ("import sys\n\ndef make(learning_rate=0.01):\n    sys.exit(0)\n", "the factory raised"),
        ("def make(learning_rate=0.01):\n    raise KeyboardInterrupt\n", "no Ctrl-C came"),
    ],
)
def test_class_2_sys_exit_in_user_code_before_training_is_one_line_and_exit_2(tmp_path, code_text, said, no_training):
    (tmp_path / "opt.py").write_text(code_text)
    out = tmp_path / "r.jsonl"
    code, stdout, err = _run("optimizers", *TINY, "--optimizers", f"{tmp_path / 'opt.py'}:make", "--out", out)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnnbench: error: ") and said in lines[0], err
    assert "UserCodeExit" in lines[0]
    assert not out.exists()


UPDATE_EXITS = """\
import sys

import jax
import optax


def make(learning_rate=0.01):
    inner = optax.sgd(learning_rate)

    def update(grads, state, params=None):
        if max(leaf.size for leaf in jax.tree.leaves(grads)) > 12:  # the real model, not dnnbench's 3x4 check
            sys.exit(0)
        return inner.update(grads, state, params)

    return optax.GradientTransformation(inner.init, update)
"""


@pytest.mark.parametrize("backend", [name for name in backends.NAMES if name != "ray"])
def test_class_2_sys_exit_while_training_is_an_error_row_and_exit_1(tmp_path, backend):
    (tmp_path / "opt.py").write_text(UPDATE_EXITS)
    out = tmp_path / "r.jsonl"
    code, _, err = _run(
        "optimizers", *TINY, "--optimizers", f"sgd,{tmp_path / 'opt.py'}:make", "--out", out, "--backend", backend
    )
    assert code == 1, err
    rows = _rows(out)
    assert [r["type"] for r in rows] == ["header", "trial", "trial", "summary"]
    status = {r["optimizer"].split(":")[-1]: r for r in rows[1:3]}
    assert status["sgd"]["status"] == "ok"
    assert status["make"]["status"] == "error" and status["make"]["error"] == "UserCodeExit: sys.exit(0) was called"
    assert "1 of 2 trials ended in error" in err


# ---- 7. with --json, stdout holds the rows only


PRINTS = """\
import optax

print("import says hello")


def make(learning_rate=0.01):
    print("factory says hello")
    inner = optax.sgd(learning_rate)

    def update(grads, state, params=None):
        print("update says hello")
        return inner.update(grads, state, params)

    return optax.GradientTransformation(inner.init, update)
"""


def test_class_7_user_code_output_goes_to_stderr_while_rows_go_to_stdout(tmp_path):
    (tmp_path / "opt.py").write_text(PRINTS)
    spec = f"{tmp_path / 'opt.py'}:make"
    # a real process: fd 1 is stdout, and the worker processes of the local backend inherit it
    argv = ["optimizers", *TINY, "--optimizers", f"sgd,adam,{spec}", "--workers", "2", "--json"]
    proc = subprocess.run([*_dnnbench(), *argv], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]  # every line is a row
    assert [r["type"] for r in rows] == ["header", "trial", "trial", "trial", "summary"]
    for said in ("import says hello", "factory says hello", "update says hello"):
        assert said in proc.stderr
    # in-process (a StringIO stdout) too, and for a suite
    code, stdout, err = _run(*argv)
    assert code == 0, err
    assert [json.loads(line)["type"] for line in stdout.splitlines()][0] == "header"
    assert "factory says hello" in err and "hello" not in stdout


# ---- 3. a SIGTERM always ends the run with 143, even when Python drops its handler's exception

LOSES_A_SIGTERM = """\
import gc
import os
import signal

import optax


def _collecting(phase, info):
    # A SIGTERM that lands while a garbage-collection callback runs (as JAX's does): the handler's
    # exception is printed ("Exception ignored in ...") and dropped by Python.
    if phase == "start":
        gc.callbacks.remove(_collecting)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecodes, inside this callback
            pass


gc.callbacks.append(_collecting)
gc.collect()


def make(learning_rate=0.01):
    return optax.sgd(learning_rate)
"""


def test_class_3_a_sigterm_lost_in_a_gc_callback_still_ends_the_run_with_143(tmp_path):
    (tmp_path / "opt.py").write_text(LOSES_A_SIGTERM)
    out = tmp_path / "r.jsonl"
    argv = ["optimizers", *TINY, "--optimizers", "opt.py:make", "--out", str(out)]
    proc = subprocess.run([*_dnnbench(), *argv], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "Exception ignored" in proc.stderr  # the handler's raise was lost, as in the issue
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "dnnbench: terminated (SIGTERM)"
    assert not out.exists()  # noticed before anything was written
    assert not (tmp_path / ".r.jsonl.lock").exists()


# ---- 14. SIGHUP ends a run like SIGTERM: one line, 129, finished trials kept, the lock released


def test_class_14_sighup_is_handled_like_sigterm(tmp_path):
    out = tmp_path / "r.jsonl"
    argv = [*TINY, "--epochs", "5000", "--optimizers", "sgd,adam", "--workers", "1", "--out", str(out)]
    proc = subprocess.Popen([*_dnnbench(), "optimizers", *argv], stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not (out.exists() and out.read_text()):
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 129, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dnnbench: terminated (SIGHUP); "), err
    assert lines[0].endswith(f"of 2 trials written to {out}; --resume continues")
    assert _rows(out)[0]["type"] == "header"
    assert not (tmp_path / ".r.jsonl.lock").exists()


# ---- 5. Ray addresses: one line within seconds, nothing written before the cluster answers, SIGTERM -> 143


@pytest.fixture()
def resumable(tmp_path) -> Path:
    path = tmp_path / "r.jsonl"
    code, _, err = _run("diagnose", *TINY, "--out", path, "--json")
    assert code == 0, err
    return path


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


@pytest.mark.parametrize("where", ["option", "env"])
def test_class_5_a_bad_or_unreachable_ray_address_is_one_line_and_writes_nothing(
    tmp_path, resumable, where, monkeypatch
):
    pytest.importorskip("ray")
    before = _sha(resumable)
    for address, said in [
        ("garbage", "is not a Ray address"),
        (f"127.0.0.1:{_closed_port()}", "cannot reach the Ray cluster at 127.0.0.1:"),
    ]:
        given = ["--ray-address", address] if where == "option" else []
        if where == "env":
            monkeypatch.setenv("RAY_ADDRESS", address)
        for out, extra in [(tmp_path / "new.jsonl", []), (resumable, ["--resume"])]:
            start = time.monotonic()
            code, _, err = _run("diagnose", *TINY, "--backend", "ray", *given, "--out", out, *extra)
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


def test_class_5_sigterm_while_waiting_for_a_cluster_exits_143_and_writes_nothing(tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "silent.py").write_text(SILENT)
    server = subprocess.Popen([sys.executable, "silent.py"], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    proc = None
    try:
        port = int(server.stdout.readline())
        out = tmp_path / "r.jsonl"
        argv = ["diagnose", *TINY, "--backend", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", str(out)]
        proc = subprocess.Popen([*_dnnbench(), *argv], stderr=subprocess.PIPE, text=True, cwd=tmp_path)
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


# ---- 11. options that contradict each other are an error naming both (or a rule, printed)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["sweep", "--vary", "lr=0.1,0.2", "--lr", "0.5"], ["--lr", "--vary lr"]),
        (["sweep", "--vary", "l2=0.1,0.2", "--l2", "0.5"], ["--l2", "--vary l2"]),
        (["sweep", "--vary", "optimizer=sgd,adam", "--optimizer", "sgd"], ["--optimizer", "--vary optimizer"]),
        (["sweep", "--hp", "b1=0.5", "--vary", "b1=0.8,0.9"], ["--hp b1=0.5", "--vary b1"]),
        (["sweep", "--hp", "adam.b1=0.5", "--vary", "b1=0.8,0.9"], ["--hp adam.b1=0.5", "--vary b1"]),
        (["sweep", "--vary", "optimizer=sgd,adam", "--vary", "b1=0.5,0.9"], ["--vary b1", "--vary optimizer", "sgd"]),
        (["sweep", "--vary", "optimizer=sgd,adam", "--vary", "adam.b1=0.5,0.9"], ["--vary adam.b1", "sgd"]),
        (["sweep", "--width", "16", "--vary", "lr=0.1,0.2"], ["--width", "--vary depth"]),
        (["tune", "--space", "b1=0.8..0.9", "--space", "b1=0.5..0.6"], ["--space sets b1 twice"]),
        (
            ["tune", "--space", "lr=1e-3..1e-1", "--space", "learning_rate=1e-2..1"],
            ["--space sets learning_rate twice"],
        ),
        (["optimizers", "--tune", "--lr", "0.1"], ["--lr", "--tune"]),
        (["optimizers", "--list", "--tune"], ["--list", "--tune"]),
        (["diagnose", "--decay-to", "0.5"], ["--decay-to", "--schedule constant"]),
        (["diagnose", "--schedule", "cosine", "--step-every", "1"], ["--step-every", "--schedule cosine"]),
    ],
)
def test_class_11_conflicting_options_are_an_error_naming_both(argv, words, no_training):
    code, _, err = _run(argv[0], *TINY, *argv[1:])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_class_11_a_key_that_is_a_knob_and_a_hyperparameter_follows_a_printed_rule(tmp_path):
    (tmp_path / "opt.py").write_text(
        "import optax\n\ndef make(learning_rate=0.01, warmup: float = 0.0):\n    return optax.sgd(learning_rate)\n"
    )
    spec = f"{tmp_path / 'opt.py'}:make"
    code, stdout, err = _run("sweep", *TINY, "--epochs", 2, "--optimizer", spec, "--vary", "warmup=0.1,0.2", "--json")
    assert code == 0, err
    assert f"--vary warmup varies the training option --warmup, not the hyperparameter 'warmup' of {spec}" in err
    trials = [json.loads(line) for line in stdout.splitlines()][1:3]
    assert [t["config"]["schedule"]["warmup"] for t in trials] == [0.1, 0.2]  # the knob, as said
    # a schedule option beside a varied kind is for the kinds that use it: no conflict
    code, _, err = _run("sweep", *TINY, "--vary", "schedule=constant,cosine", "--decay-to", 0.5, "--json")
    assert code == 0, err


# ---- 14. the smaller ones


SUITE = """\
[data]
dataset = "synthetic:train=200,test=50,features=8,classes=3"

[model]
hidden = [8]

[train]
epochs = 1
batch_size = 50

[[experiment]]
kind = "optimizers"
optimizers = ["sgd"]
"""


def test_class_14_a_suite_with_a_byte_order_mark_runs(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_bytes(b"\xef\xbb\xbf" + SUITE.encode())
    code, _, err = _run("run", suite, "--out", tmp_path / "s.jsonl", "--json")
    assert code == 0, err


def test_class_14_an_unusable_compile_cache_is_said_once(tmp_path, monkeypatch):
    cache = tmp_path / "a-file"
    cache.write_text("")
    monkeypatch.setenv("DNNBENCH_COMPILE_CACHE", str(cache))
    code, _, err = _run("tune", *TINY, "--optimizers", "sgd", "--budget", 2, "--seeds", 1, "--json")  # two stages
    assert code == 0, err
    said = [line for line in err.splitlines() if "DNNBENCH_COMPILE_CACHE" in line]
    assert said == [
        f"dnnbench: warning: $DNNBENCH_COMPILE_CACHE {cache}: cannot be made a folder (File exists); "
        "compiled programs are not cached"
    ]


def test_class_14_more_threads_than_cores_are_clamped_with_a_notice(tmp_path):
    env = {**os.environ, "DNNBENCH_THREADS": "1000"}
    argv = ["diagnose", *TINY, "--json"]
    proc = subprocess.run([*_dnnbench(), *argv], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    threads = json.loads(proc.stdout.splitlines()[0])["config"]["threads"]
    assert threads == len(os.sched_getaffinity(0)) < 1000
    assert f"1000 XLA threads asked (--threads or $DNNBENCH_THREADS), but XLA runs {threads} in this process" in (
        proc.stderr
    )


def test_class_14_a_module_without_the_factory_lists_its_functions(no_training):
    code, _, err = _run("diagnose", *TINY, "--optimizer", "optax:adamm")
    assert code == 2
    line = err.strip()
    assert "optimizer module optax has no function 'adamm'; its functions: adam, radam, " in line
    assert "none" not in line and "optax.NAME" in line


def test_class_14_one_file_spec_spelled_two_ways_gives_one_trial_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "x.py").write_text(
        "import optax\n\ndef f(learning_rate=0.01, b=0.9):\n    return optax.sgd(learning_rate, b)\n"
    )
    ids = set()
    for spelling, hp in [("opt/x.py:f", "./opt/x.py:f.b=0.5"), ("./opt/x.py:f", "opt//x.py:f.b=0.5")]:
        code, stdout, err = _run("diagnose", *TINY, "--optimizer", spelling, "--hp", hp, "--json")
        assert code == 0, err
        trial = json.loads(stdout.splitlines()[1])
        assert trial["optimizer"] == "opt/x.py:f" and trial["hyperparams"]["b"] == 0.5
        ids.add(trial["id"])
    assert len(ids) == 1


LOOPS = """\
import jax
import optax


def make(learning_rate=0.01, n: int = 2):
    inner = optax.sgd(learning_rate)

    def update(grads, state, params=None):
        for _ in range(n):  # unrolled when traced: n copies in the program
            grads = jax.tree.map(lambda x: x * 1.0, grads)
        return inner.update(grads, state, params)

    return optax.GradientTransformation(inner.init, update)
"""


def test_class_14_a_static_integer_that_repeats_work_in_every_update_is_bounded(tmp_path, no_training):
    start = time.monotonic()
    code, _, err = _run("diagnose", *TINY, "--optimizer", "optax.contrib.muon", "--hp", "ns_steps=100000000")
    assert code == 2
    assert "ns_steps=100000000 repeats work inside every update" in err and "ns_steps <= " in err
    (tmp_path / "loop.py").write_text(LOOPS)
    code, _, err = _run("diagnose", *TINY, "--optimizer", f"{tmp_path / 'loop.py'}:make", "--hp", "n=100000000")
    assert code == 2 and "n=100000000 repeats work inside every update" in err, err
    assert time.monotonic() - start < 120
    # values near the default, and static integers that loop nothing (adafactor's size threshold), are free
    assert optim_hyperparams("optax.contrib.muon", ns_steps=8)["ns_steps"] == 8
    assert optim_hyperparams("optax.adafactor", min_dim_size_to_factor=10**8)["min_dim_size_to_factor"] == 10**8


def optim_hyperparams(spec: str, **given: object) -> dict:
    from dnnbench import optim

    return optim.resolve(spec, None, **given)
