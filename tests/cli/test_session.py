"""A training command's session (``cli/session.py``): the header states what the file holds, a resumed
file's torn last line is a warning, and every stage of a multi-stage command is checked before
anything trains or is written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dnnbench.run import runner
from dnnbench.train import engine


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_warns_about_a_torn_last_line_too(tmp_path, results_file, run, tiny):
    lines = results_file.read_text().splitlines(keepends=True)
    path = tmp_path / "r.jsonl"
    path.write_text(lines[0] + lines[1] + lines[2][:30])  # killed while writing the second trial
    code, _, err = run("optimizers", *tiny, "--optimizers", "sgd,adam", "--out", path, "--resume")
    assert code == 0, err
    assert "torn last line" in err
    assert [r["type"] for r in _rows(path)] == ["header", "trial", "trial", "summary"]


# ---- the header states the effective values


@pytest.mark.parametrize("command", [["optimizers", "--optimizers", "sgd,adam"], ["diagnose", "--optimizer", "sgd"]])
def test_a_resumed_header_states_what_the_file_holds(tmp_path, command, run, tiny):
    out = tmp_path / "r.jsonl"
    code, _, err = run(*command, *tiny, "--seeds", "2", "--out", out)
    assert code == 0, err
    before = _rows(out)[0]
    assert before["config"]["seeds"] == [0, 1] and isinstance(before["config"]["workers"], int)
    code, _, err = run(*command, *tiny, "--seeds", "3", "--out", out, "--resume")
    assert code == 0, err
    rows = _rows(out)
    assert rows[0]["type"] == "header" and [r["type"] for r in rows].count("header") == 1
    assert rows[0]["config"]["seeds"] == [0, 1, 2]
    assert sorted({r["seed"] for r in rows if r["type"] == "trial"}) == [0, 1, 2]
    code, _, err = run(*command, *tiny, "--seeds", "3", "--out", out, "--resume")  # nothing changed: kept
    assert code == 0 and _rows(out)[0] == rows[0]


def test_the_header_records_the_worker_count_used(run, tiny):
    code, out, err = run("optimizers", *tiny, "--optimizers", "sgd", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["config"]["workers"] == 1  # one program: never more workers
    code, out, err = run("optimizers", *tiny, "--optimizers", "sgd,adam", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["config"]["workers"] == min(engine.concurrency(), 2)
    code, out, err = run("optimizers", *tiny, "--optimizers", "sgd", "--json", "--workers", "3")
    assert json.loads(out.splitlines()[0])["config"]["workers"] == 3


# ---- a multi-stage command checks every stage before anything trains or is written


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, run, tiny) -> Path:
    """A finished ``tune`` of sgd: 2 search candidates, then default and tuned on 1 seed."""
    path = tmp_path_factory.mktemp("tune") / "t.jsonl"
    code, _, err = run("tune", *tiny, "--optimizers", "sgd", "--budget", 2, "--seeds", 1, "--out", path)
    assert code == 0, err
    return path


def test_class_1_tune_resume_checks_every_stage_before_writing(tmp_path, tuned, monkeypatch, run, tiny):
    path = tmp_path / "t.jsonl"
    path.write_bytes(tuned.read_bytes())
    before = _sha(path)
    with monkeypatch.context() as patch:
        patch.setattr(runner, "execute", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
        # other options: no row of the file is part of this run -- refused before the search trains
        code, _, err = run(
            "tune", *tiny, "--epochs", 2, "--optimizers", "sgd", "--budget", 4, "--out", path, "--resume"
        )
        assert code == 2, err
        assert "holds 4 trial(s) that are not part of this run" in err
        assert _sha(path) == before
        # optimizers --tune: its grid is not written, and an existing --out is refused before the grid trains
        code, _, err = run("optimizers", *tiny, "--optimizers", "sgd", "--tune", "--out", path)
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
    code, _, err = run("tune", *tiny, "--optimizers", "sgd", "--budget", 4, "--seeds", 1, "--out", path, "--resume")
    assert code == 0, err
    assert "1 final run(s) in" in err and "dropped" in err
    after = _rows(path)
    assert [r.get("candidate") for r in after if r.get("phase") == "search"] == [0, 1, 2, 3]
    tuned_rows = [r for r in after if r.get("choice") == "tuned"]
    assert len(tuned_rows) == 1 and tuned_rows[0]["id"] != old_tuned
    assert tuned_rows[0]["hyperparams"] in [r["hyperparams"] for r in after if r.get("candidate") in (2, 3)]


def test_class_1_a_final_stage_that_cannot_be_built_is_refused_before_the_search(tmp_path, no_training, run, tiny):
    factory = tmp_path / "req.py"
    factory.write_text("import optax\n\ndef make(learning_rate=0.01, *, b):\n    return optax.sgd(learning_rate, b)\n")
    out = tmp_path / "r.jsonl"
    code, _, err = run(
        "tune", *tiny, "--optimizers", f"{factory}:make", "--space", "b=0.5..0.9", "--budget", 2, "--out", out
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
    code, _, err = run("run", suite, "--out", out, "-q")
    assert code == 2 and "needs a value for 'b'" in err, err
    assert not out.exists()
