"""Streams (``cli/streams.py``): with ``--json``, stdout holds the rows only; user code's output goes to stderr."""

from __future__ import annotations

import json
import subprocess

# ---- with --json, stdout holds the rows only


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


def test_class_7_user_code_output_goes_to_stderr_while_rows_go_to_stdout(tmp_path, run, tiny, dnnbench_command):
    (tmp_path / "opt.py").write_text(PRINTS)
    spec = f"{tmp_path / 'opt.py'}:make"
    # a real process: fd 1 is stdout, and the worker processes of the local backend inherit it
    argv = ["optimizers", *tiny, "--optimizers", f"sgd,adam,{spec}", "--workers", "2", "--json"]
    proc = subprocess.run([*dnnbench_command, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]  # every line is a row
    assert [r["type"] for r in rows] == ["header", "trial", "trial", "trial", "summary"]
    for said in ("import says hello", "factory says hello", "update says hello"):
        assert said in proc.stderr
    # in-process (a StringIO stdout) too, and for a suite
    code, stdout, err = run(*argv)
    assert code == 0, err
    assert [json.loads(line)["type"] for line in stdout.splitlines()][0] == "header"
    assert "factory says hello" in err and "hello" not in stdout
