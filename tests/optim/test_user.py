"""Optimizers from user files and modules (``optim/user.py``): ``sys.exit`` and Ctrl-C in user code, a
module without the factory, one file spelled two ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnnbench.run import backends


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- sys.exit / KeyboardInterrupt in user code: one line and exit 2 before training, an error row during it


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
def test_class_2_sys_exit_in_user_code_before_training_is_one_line_and_exit_2(
    tmp_path, code_text, said, no_training, run, tiny
):
    (tmp_path / "opt.py").write_text(code_text)
    out = tmp_path / "r.jsonl"
    code, stdout, err = run("optimizers", *tiny, "--optimizers", f"{tmp_path / 'opt.py'}:make", "--out", out)
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
def test_class_2_sys_exit_while_training_is_an_error_row_and_exit_1(tmp_path, backend, run, tiny):
    (tmp_path / "opt.py").write_text(UPDATE_EXITS)
    out = tmp_path / "r.jsonl"
    code, _, err = run(
        "optimizers", *tiny, "--optimizers", f"sgd,{tmp_path / 'opt.py'}:make", "--out", out, "--backend", backend
    )
    assert code == 1, err
    rows = _rows(out)
    assert [r["type"] for r in rows] == ["header", "trial", "trial", "summary"]
    status = {r["optimizer"].split(":")[-1]: r for r in rows[1:3]}
    assert status["sgd"]["status"] == "ok"
    assert status["make"]["status"] == "error" and status["make"]["error"] == "UserCodeExit: sys.exit(0) was called"
    assert "1 of 2 trials ended in error" in err


def test_class_14_a_module_without_the_factory_lists_its_functions(no_training, run, tiny):
    code, _, err = run("diagnose", *tiny, "--optimizer", "optax:adamm")
    assert code == 2
    line = err.strip()
    assert "optimizer module optax has no function 'adamm'; its functions: adam, radam, " in line
    assert "none" not in line and "optax.NAME" in line


def test_class_14_one_file_spec_spelled_two_ways_gives_one_trial_id(tmp_path, monkeypatch, run, tiny):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "x.py").write_text(
        "import optax\n\ndef f(learning_rate=0.01, b=0.9):\n    return optax.sgd(learning_rate, b)\n"
    )
    ids = set()
    for spelling, hp in [("opt/x.py:f", "./opt/x.py:f.b=0.5"), ("./opt/x.py:f", "opt//x.py:f.b=0.5")]:
        code, stdout, err = run("diagnose", *tiny, "--optimizer", spelling, "--hp", hp, "--json")
        assert code == 0, err
        trial = json.loads(stdout.splitlines()[1])
        assert trial["optimizer"] == "opt/x.py:f" and trial["hyperparams"]["b"] == 0.5
        ids.add(trial["id"])
    assert len(ids) == 1
