"""Issue 16: every failure is explained, no file is ever destroyed, the CI gate has no holes.

Each class of problem is fixed by one mechanism (``output_files`` for every file written, one
reader rule for torn last lines, one stop path for SIGINT and SIGTERM, one guard for stdout);
these tests drive it through the CLI, on several commands each, with tiny data.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dnnbench.cli import main
from dnnbench.results import files as output_files
from dnnbench.train import engine

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
optimizers = ["sgd", "adam"]
"""


def _run(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _dnnbench() -> list[str]:
    script = Path(sys.executable).with_name("dnnbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dnnbench"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def results_file(tmp_path_factory) -> Path:
    """A small finished results file: sgd and adam, one seed, header + 2 trials + summary."""
    path = tmp_path_factory.mktemp("results") / "r.jsonl"
    code, _, err = _run("optimizers", *TINY, "--optimizers", "sgd,adam", "--out", path)
    assert code == 0, err
    return path


# ---- 1. a failed trial says why, and the exit code is 1 once everything is written


@pytest.fixture()
def sgd_fails(monkeypatch):
    real = engine.train_group

    def train_group(specs, *args, **kwargs):
        if any(spec.optimizer == "sgd" for spec in specs):
            raise RuntimeError("Out of memory allocating 25600000000 bytes")
        return real(specs, *args, **kwargs)

    monkeypatch.setattr(engine, "train_group", train_group)


def test_errored_trials_are_explained_and_exit_1(tmp_path, sgd_fails):
    out = tmp_path / "r.jsonl"
    code, stdout, err = _run("optimizers", *TINY, "--optimizers", "adam,sgd", "--out", out)
    assert code == 1
    assert "dnnbench: trial sgd seed 0" in err and "Out of memory allocating 25600000000 bytes" in err
    assert err.strip().splitlines()[-1] == "dnnbench: error: 1 of 2 trials ended in error (reasons above)"
    assert "Out of memory" in " ".join(stdout.split())  # under the table too
    rows = _lines(out)  # everything was written before the exit code
    assert [r["type"] for r in rows] == ["header", "trial", "trial", "summary"]
    assert sorted(r["status"] for r in rows[1:3]) == ["error", "ok"]
    assert "Traceback" not in err


def test_errored_trial_in_diagnose_and_json_modes(tmp_path, sgd_fails):
    code, stdout, err = _run("diagnose", *TINY, "--optimizer", "sgd")
    assert code == 1
    assert "reason" in stdout and "Out of memory" in stdout  # the evidence is not empty
    code, stdout, err = _run("optimizers", *TINY, "--optimizers", "adam,sgd", "--json")
    assert code == 1
    assert [json.loads(line)["type"] for line in stdout.splitlines()] == ["header", "trial", "trial", "summary"]
    assert "Out of memory" in err


def test_a_run_suite_with_an_errored_trial_exits_1(tmp_path, sgd_fails):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE)
    code, _, err = _run("run", suite, "--out", tmp_path / "s.jsonl", "-q")
    assert code == 1 and "1 of 2 trials ended in error" in err


# ---- 2. --out never destroys a file


def _npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(60, 4)).astype(np.float32),
        y_train=np.arange(60) % 3,
        x_test=rng.normal(size=(12, 4)).astype(np.float32),
        y_test=np.arange(12) % 3,
    )
    return path


@pytest.mark.parametrize("command", ["optimizers", "diagnose", "run", "export", "plot"])
def test_out_is_never_an_input(tmp_path, results_file, command):
    victim = {
        "optimizers": _npz(tmp_path / "v.npz"),
        "diagnose": _npz(tmp_path / "v.npz"),
        "run": tmp_path / "v.toml",
        "export": tmp_path / "w.jsonl",
        "plot": tmp_path / "w.png",
    }[command]
    if command == "run":
        victim.write_text(SUITE)
    before = victim.read_bytes() if victim.exists() else None
    argv = {
        "optimizers": ["optimizers", "--data", victim, "--hidden", "4", "--epochs", "1", "-q"],
        "diagnose": ["diagnose", "--data", victim, "--hidden", "4", "--epochs", "1", "-q"],
        "run": ["run", victim, "-q"],
        "export": ["export", victim],
        "plot": ["plot", victim],
    }[command]
    if command in ("export", "plot"):
        victim.write_bytes(results_file.read_bytes())
        before = victim.read_bytes()
    code, _, err = _run(*argv, "--out", victim, "--force")  # not even with --force
    assert code == 2, err
    assert "is also an input of this command" in err
    assert victim.read_bytes() == before
    assert not output_files.lock_path(victim).exists()


def test_an_existing_file_is_replaced_only_with_force(tmp_path, results_file):
    out = tmp_path / "r.jsonl"
    out.write_text("earlier work\n")
    code, _, err = _run("optimizers", *TINY, "--optimizers", "sgd", "--out", out)
    assert code == 2 and "already exists; add --force to replace it or --resume to continue it" in err
    assert out.read_text() == "earlier work\n"
    code, _, err = _run("optimizers", *TINY, "--optimizers", "sgd", "--out", out, "--resume", "--force")
    assert code == 2 and "give one of them" in err
    code, _, err = _run("optimizers", *TINY, "--optimizers", "sgd", "--out", out, "--force")
    assert code == 0, err
    assert [r["type"] for r in _lines(out)] == ["header", "trial", "summary"]
    for argv in (["export", results_file], ["plot", results_file]):
        target = tmp_path / ("t.csv" if argv[0] == "export" else "t.png")
        target.write_text("mine")
        code, _, err = _run(*argv, "--out", target)
        assert code == 2 and "add --force" in err and target.read_text() == "mine"
        code, _, err = _run(*argv, "--out", target, "--force")
        assert code == 0, err
        assert target.read_bytes() != b"mine"
        assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []  # temp file renamed away


# ---- 3. one writer per results file


def test_a_second_run_on_a_locked_results_file_stops_at_once(tmp_path):
    out = tmp_path / "r.jsonl"
    with output_files.lock(out):
        code, _, err = _run("optimizers", *TINY, "--optimizers", "sgd", "--out", out)
        assert code == 2
        assert err.strip() == (
            f"dnnbench: error: {out} is being written by another dnnbench run "
            f"(pid {os.getpid()}); wait for it to finish or write to another --out"
        )
        assert not out.exists()
        code, _, err = _run("run", _suite(tmp_path), "--out", out, "-q", "--force")
        assert code == 2 and "being written by another dnnbench run" in err
    assert not output_files.lock_path(out).exists()  # released (and removed) on exit
    code, _, err = _run("optimizers", *TINY, "--optimizers", "sgd", "--out", out)
    assert code == 0, err
    assert not output_files.lock_path(out).exists()


def _suite(folder: Path) -> Path:
    path = folder / "s.toml"
    path.write_text(SUITE)
    return path


# ---- 5. one rule for torn last lines


def _torn(folder: Path, results_file: Path, where: str) -> Path:
    lines = results_file.read_text().splitlines(keepends=True)
    path = folder / f"torn-{where}.jsonl"
    if where == "last":
        path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    else:
        path.write_text(lines[0] + lines[1][:20] + "\n" + "".join(lines[2:]))
    return path


@pytest.mark.parametrize("command", [["report"], ["export"], ["plot", "--terminal"], ["check"]])
def test_a_torn_last_line_is_a_warning_everywhere(tmp_path, results_file, command):
    path = _torn(tmp_path, results_file, "last")
    extra = [results_file] if command == ["check"] else []
    code, out, err = _run(command[0], *extra, path, *command[1:])
    assert code == 0, err
    assert f"dnnbench: warning: {path}:4: torn last line (a run stopped mid-write) skipped" in err
    if command == ["export"]:
        assert len(out.splitlines()) == 3  # CSV header + both trials
    middle = _torn(tmp_path, results_file, "middle")
    code, _, err = _run(command[0], *extra, middle, *command[1:])
    assert code == 2 and f"{middle}:2: not valid JSON" in err


def test_resume_warns_about_a_torn_last_line_too(tmp_path, results_file):
    lines = results_file.read_text().splitlines(keepends=True)
    path = tmp_path / "r.jsonl"
    path.write_text(lines[0] + lines[1] + lines[2][:30])  # killed while writing the second trial
    code, _, err = _run("optimizers", *TINY, "--optimizers", "sgd,adam", "--out", path, "--resume")
    assert code == 0, err
    assert "torn last line" in err
    assert [r["type"] for r in _lines(path)] == ["header", "trial", "trial", "summary"]


# ---- 6. write errors and a closed stdout are one line, never a traceback


@pytest.mark.parametrize(
    "argv", [["export", "{r}"], ["report", "{r}"], ["check", "{r}", "{r}"], ["plot", "{r}", "--terminal"]]
)
def test_a_full_stdout_is_one_line(results_file, argv):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [*_dnnbench(), *(a.format(r=results_file) for a in argv)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "dnnbench: error: stdout: cannot write (No space left on device)"


def test_a_closed_stdout_is_one_line(results_file):
    proc = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *_dnnbench(), "report", str(results_file)],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "dnnbench: error: stdout is closed; redirect it (> file, > /dev/null) instead of closing it"
    )


def test_a_full_disk_under_out_is_one_line(tmp_path, results_file):
    code, _, err = _run("optimizers", *TINY, "--optimizers", "sgd", "--out", "/dev/full")
    assert code == 2
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("dnnbench: error: --out /dev/full: cannot write (No space left on device)")
    )
    assert "Traceback" not in err
    blocked = tmp_path / "file"
    blocked.write_text("")
    for argv in (["export", results_file], ["plot", results_file], ["optimizers", *TINY]):
        code, _, err = _run(*argv, "--out", blocked / "x.png")
        assert code == 2, argv
        assert err.startswith(f"dnnbench: error: --out {blocked / 'x.png'}: cannot write") and "\n" == err[-1]


# ---- 7. a CI gate without holes


def test_check_refuses_an_empty_baseline(tmp_path, results_file):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(results_file.read_text().splitlines(keepends=True)[0])  # a header, no trials
    for base, cur in ((empty, results_file), (empty, empty)):
        code, _, err = _run("check", base, cur)
        assert code == 2 and "the baseline has no trials to compare" in err


def test_check_lists_new_trials_and_reports_errors(tmp_path, results_file):
    lines = results_file.read_text().splitlines(keepends=True)
    base = tmp_path / "base.jsonl"
    base.write_text(lines[0] + lines[1])  # sgd only
    code, out, _ = _run("check", base, results_file, "--format", "markdown")
    assert code == 0
    assert (
        "**PASS**: 1 rows (1 trials) within tolerance 0.005 on test_acc; 1 new in CURRENT, not compared: "
        "adam seed=0" in out
    )
    broken = json.loads(lines[1])
    broken["status"], broken["metrics"], broken["error"] = "error", {}, "RuntimeError: boom"
    cur = tmp_path / "cur.jsonl"
    cur.write_text(lines[0] + json.dumps(broken) + "\n")
    code, out, _ = _run("check", base, cur, "--format", "markdown")
    assert code == 1
    assert "❌ error" in out and "newly diverged" not in out
    assert "**FAIL**: 1 error (0 rows, 1 trials" in out


# ---- 8. explicit values are kept (the parts in regularizers; --lr / --hidden are tested in test_optim)

SMALL_REG = [
    "--dataset",
    "synthetic:train=200,test=50,features=8,classes=3",
    "--hidden",
    "8",
    "--epochs",
    "1",
    "--seeds",
    "1",
    "--json",
    "-q",
]


@pytest.mark.parametrize(
    ("option", "method", "field"), [("--l2", "l2", "l2"), ("--dropout", "dropout", "dropout"), ("--l1", "l1", "l1")]
)
def test_an_explicit_zero_strength_is_kept(option, method, field):
    code, out, err = _run("regularizers", *SMALL_REG, option, "0", "--methods", method)
    assert code == 0, err
    header, trial = (json.loads(line) for line in out.splitlines()[:2])
    assert header["config"]["strengths"][field] == 0.0
    assert trial["config"]["regularization"][field] == 0.0


def test_regularizers_help_shows_the_real_defaults_and_methods_twice_is_an_error():
    code, out, _ = _run("regularizers", "--help")
    assert code == 0
    text = " ".join(out.split())
    for option, default in (("--l1", "0.0001"), ("--l2", "0.001"), ("--dropout", "0.5")):
        assert f"{option} <float>" in text and f"[default: {default}]" in text.split(f"{option} <float>")[1][:200]
    for methods, words in (("l2,l2", "--methods names l2 more than once"), ("l2,,l1", "has an empty name")):
        code, _, err = _run("regularizers", *SMALL_REG, "--methods", methods)
        assert code == 2 and words in err


# ---- 13. the Python API names the problem


def test_api_predict_and_evaluate_name_bad_inputs():
    from dnnbench import api
    from dnnbench.errors import DnnbenchError

    model = api.Model.build(hidden=(4,))
    model.fit("synthetic:train=100,test=20,features=8,classes=3", epochs=1, batch_size=30)
    x, y = model.dataset.x_test, model.dataset.y_test
    assert model.predict(x[0]).shape == (1, 3)  # one 1-D sample is one row
    np.testing.assert_allclose(model.predict(x[0])[0], model.predict(x)[0], rtol=1e-6)
    with pytest.raises(DnnbenchError, match="5 features per sample .* the model takes 8"):
        model.predict(x[:, :5])
    with pytest.raises(DnnbenchError, match="20 samples but y has shape \\(19,\\)"):
        model.evaluate(x, y[:19])
    with pytest.raises(DnnbenchError, match="outside 0..2 .* e.g. 99"):
        model.evaluate(x, np.where(np.arange(len(y)) == 0, 99, y))
    assert 0.0 <= model.evaluate(x, y)["acc"] <= 1.0


# ---- 9. suggested next commands: the whole configuration, quoted once, read back by the CLI itself


def _parsed(monkeypatch, line: str) -> tuple[object, object]:
    """The job and the one trial that the CLI builds from the shell line ``line`` (nothing trains)."""
    from dnnbench.cli import commands

    captured: list = []
    monkeypatch.setattr(commands, "execute", lambda job, specs, **kw: captured.append((job, specs)) or [])
    args = shlex.split(line)
    assert args[0] == "dnnbench"
    code, _, err = _run(*args[1:])
    assert code == 0, err
    ((job, specs),) = captured
    return job, specs[0]


def _differences(a, b) -> set[str]:
    """The fields (``train.epochs``, ``hyperparams.b1``, ``optimizer``) in which two trials differ."""
    import dataclasses

    out = set()
    for part in ("model", "train", "reg", "schedule"):
        x, y = getattr(a, part), getattr(b, part)
        out |= {f"{part}.{f.name}" for f in dataclasses.fields(x) if getattr(x, f.name) != getattr(y, f.name)}
    ha, hb = dict(a.hyperparams), dict(b.hyperparams)
    out |= {f"hyperparams.{k}" for k in ha.keys() | hb.keys() if ha.get(k) != hb.get(k)}
    return out | {k for k in ("optimizer", "seed", "tags") if getattr(a, k) != getattr(b, k)}


def _one_remedy(diff: set[str]) -> bool:
    if "optimizer" in diff:  # switching the optimizer takes the new one's hyperparameters with it
        return all(d == "optimizer" or d.startswith("hyperparams.") for d in diff)
    return len(diff) == 1 or diff == {"reg.early_stopping", "reg.patience"}


EVERY_OPTION = (
    "dnnbench diagnose --data-dir '/tmp/a dir' --no-verify --val-split 0.2 --label-noise 0.1 "
    "--dataset synthetic:train=200,test=50,features=8,classes=3 --optimizer momentum --lr 0.03 "
    "--hidden 8,8,8,8 --activation tanh --residual --precision bf16 --loss mse --epochs 6 "
    "--batch-size 32 --train-eval-samples 100 --seed 7 --l1 1e-6 --l2 3e-4 --dropout 0.2 "
    "--dropout-mode scale-at-test --early-stopping --monitor val_acc --patience 3 --min-delta 0.001 "
    "--augment-noise 0.01 --train-fraction 0.5 --schedule step --warmup 1e --step-every 2 "
    "--step-factor 0.5 --hp momentum=0.8"
)


def test_every_option_survives_into_every_remedy(monkeypatch):
    from dnnbench.analysis import diagnosis

    job, spec = _parsed(monkeypatch, EVERY_OPTION)
    same_job, same_spec = _parsed(monkeypatch, shlex.join(diagnosis.command_for(spec, job.data)))
    assert same_spec == spec and same_job.data == job.data  # the run itself reads back whole
    for label in ("underfitting", "overfitting", "diverged", "still improving"):
        lines = diagnosis.remedies(label, spec, job.data)
        assert lines
        for line, remedy in zip(lines, diagnosis.remedy_specs(label, spec), strict=True):
            assert "'/tmp/a dir'" in line and "'\"'\"'" not in line  # quoted once
            parsed_job, parsed = _parsed(monkeypatch, line)
            assert parsed == remedy, line
            assert parsed_job.data == job.data
            assert _one_remedy(_differences(parsed, spec)), (line, _differences(parsed, spec))


@pytest.mark.parametrize("command", ["diagnose", "optimizers"])
def test_suggested_commands_of_real_runs_read_back(tmp_path, monkeypatch, command):
    given = [
        *TINY,
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--val-split",
        "0.2",
        "--label-noise",
        "0.1",
        "--dropout-mode",
        "scale-at-test",
        "--monitor",
        "val_acc",
        "--min-delta",
        "0.01",
        "--train-eval-samples",
        "50",
        "--schedule",
        "cosine",
        "--warmup",
        "0.25",
        "--hp",
        "momentum=0.8",
    ]
    given += ["--optimizer", "momentum"] if command == "diagnose" else ["--optimizers", "momentum,sgd"]
    out = tmp_path / "r.jsonl"
    monkeypatch.setenv("COLUMNS", "80")
    code, stdout, err = _run(command, *given, "--out", out)
    assert code == 0, err
    trials = [row for row in _lines(out) if row["type"] == "trial"]
    assert all(row["diagnosis"]["remedies"] for row in trials)
    for row in trials:
        for line in row["diagnosis"]["remedies"]:
            if command == "diagnose":
                assert line in stdout.splitlines()  # one line, whole, outside the panel
            job, parsed = _parsed(monkeypatch, line)
            assert (job.data.val_split, job.data.label_noise) == (0.2, 0.1)
            original = _spec_of(row)
            assert _one_remedy(_differences(parsed, original)), (line, _differences(parsed, original))


def _spec_of(row: dict):
    """The trial spec a results row was trained with."""
    from dnnbench.config import ModelConfig, Regularization, TrainConfig, TrialSpec
    from dnnbench.optim import Schedule

    c = row["config"]
    return TrialSpec(
        optimizer=c["optimizer"],
        hyperparams=tuple(c["hyperparams"].items()),
        seed=c["seed"],
        model=ModelConfig(**c["model"]),
        train=TrainConfig(**c["train"]),
        reg=Regularization(**c["regularization"]),
        schedule=Schedule(**c["schedule"]),
    )


# ---- 8 (rest). numbers float32 cannot hold, shifts larger than the images, label gaps


@pytest.mark.parametrize(
    ("command", "option", "value", "words"),
    [
        ("diagnose", "--l2", "1e308", "l2 must be a finite float32 number"),
        ("regularizers", "--l1", "1e39", "l1 must be a finite float32 number"),
        ("optimizers", "--min-delta", "1e300", "min_delta must be a finite float32 number"),
        ("sweep", "--augment-noise", "1e-320", "augment noise 1e-320 is 0 in float32"),
        ("lr-sensitivity", "--label-noise", "1e-320", "label noise 1e-320 is 0 in float32"),
    ],
)
def test_numbers_outside_float32_are_refused(tmp_path, command, option, value, words):
    extra = ["--vary", "lr=0.1,0.01"] if command == "sweep" else []
    code, out, err = _run(command, *TINY, option, value, *extra, "--out", tmp_path / "r.jsonl")
    assert code == 2 and words in err and "Traceback" not in err
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["diagnose", "--augment-shift", "8"],
        ["regularizers", "--methods", "augment", "--augment-shift", "100"],
        ["sweep", "--vary", "augment_shift=1,9"],
    ],
)
def test_a_shift_as_large_as_the_images_is_refused(argv):
    code, _, err = _run(*argv, "--hidden", "8", "--epochs", "1", "-q")
    assert code == 2
    assert err.strip() == (
        f"dnnbench: error: augment shift {max(8, *[int(v) for v in argv[-1].split('=')[-1].split(',')])}"
        " pixels is not smaller than the 8x8 images; use at most 7"
    )


def _labelled(path: Path, stray: int | None = None, n_classes: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    y_train = np.arange(90) % 3
    if stray is not None:
        y_train[5] = stray
    extra = {} if n_classes is None else {"n_classes": np.array(n_classes)}
    np.savez(
        path,
        x_train=rng.normal(size=(90, 4)).astype(np.float32),
        y_train=y_train,
        x_test=rng.normal(size=(12, 4)).astype(np.float32),
        y_test=np.arange(12) % 3,
        **extra,
    )
    return path


@pytest.mark.parametrize("command", ["diagnose", "optimizers", "regularizers"])
def test_a_stray_label_is_refused_and_the_class_count_is_said(tmp_path, command):
    small = ["--hidden", "4", "--epochs", "1", "--batch-size", "30", "--seeds", "1"]
    small += ["--methods", "none,l2"] if command == "regularizers" else []
    code, _, err = _run(command, "--data", _labelled(tmp_path / "d.npz", stray=99), *small)
    assert code == 2
    assert "labels run 0..99 but 96 of those 100 classes never occur in y_train (e.g. 3, 4, 5, 6, 7)" in err
    assert "store n_classes=100 in the .npz" in err
    code, _, err = _run(command, "--data", _labelled(tmp_path / "ok.npz"), *small, "--out", tmp_path / "r.jsonl")
    assert code == 0, err
    assert f"{tmp_path / 'ok.npz'}: 3 classes (labels 0..2), 4 features" in err
    assert _lines(tmp_path / "r.jsonl")[0]["data"]["n_classes"] == 3


def test_a_declared_class_count_keeps_unused_classes(tmp_path):
    code, _, err = _run(
        "diagnose",
        "--data",
        _labelled(tmp_path / "d.npz", stray=9, n_classes=12),
        "--hidden",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "30",
        "--json",
    )
    assert code == 0, err
    assert "12 classes (labels 0..11)" in err
    code, _, err = _run("diagnose", "--data", _labelled(tmp_path / "e.npz", stray=9, n_classes=5), "-q")
    assert code == 2 and "n_classes must be one integer >= the largest label + 1 (10), got 5" in err


# ---- 11. the header states the effective values


@pytest.mark.parametrize("command", [["optimizers", "--optimizers", "sgd,adam"], ["diagnose", "--optimizer", "sgd"]])
def test_a_resumed_header_states_what_the_file_holds(tmp_path, command):
    out = tmp_path / "r.jsonl"
    code, _, err = _run(*command, *TINY, "--seeds", "2", "--out", out)
    assert code == 0, err
    before = _lines(out)[0]
    assert before["config"]["seeds"] == [0, 1] and isinstance(before["config"]["workers"], int)
    code, _, err = _run(*command, *TINY, "--seeds", "3", "--out", out, "--resume")
    assert code == 0, err
    rows = _lines(out)
    assert rows[0]["type"] == "header" and [r["type"] for r in rows].count("header") == 1
    assert rows[0]["config"]["seeds"] == [0, 1, 2]
    assert sorted({r["seed"] for r in rows if r["type"] == "trial"}) == [0, 1, 2]
    code, _, err = _run(*command, *TINY, "--seeds", "3", "--out", out, "--resume")  # nothing changed: kept
    assert code == 0 and _lines(out)[0] == rows[0]


def test_the_header_records_the_worker_count_used():
    code, out, err = _run("optimizers", *TINY, "--optimizers", "sgd", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["config"]["workers"] == 1  # one program: never more workers
    code, out, err = _run("optimizers", *TINY, "--optimizers", "sgd,adam", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["config"]["workers"] == min(engine.concurrency(), 2)
    code, out, err = _run("optimizers", *TINY, "--optimizers", "sgd", "--json", "--workers", "3")
    assert json.loads(out.splitlines()[0])["config"]["workers"] == 3


# ---- 12. bars show goodness; the sort column is shown


@pytest.mark.parametrize("metric", ["val_loss", "val_acc", "train_loss"])
def test_sensitivity_bars_are_tallest_at_the_best_rate(monkeypatch, metric):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = _run(
        "lr-sensitivity",
        *TINY,
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--optimizers",
        "sgd",
        "--lr-min",
        "1e-3",
        "--lr-max",
        "1",
        "--points",
        "5",
        "--metric",
        metric,
    )
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("│ sgd"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    grid = [f"{lr:.3g}" for lr in np.logspace(-3, 0, 5)]
    curve = cells[-1]
    assert len(curve) == 5 and curve[grid.index(cells[1])] == "█", row
    assert f"the taller the bar, the better the {metric}" in " ".join(out.split())


@pytest.mark.parametrize(
    ("sort", "header"), [("test_loss", "test loss"), ("best_val_acc", "best val acc"), ("test_acc", None)]
)
def test_sweep_shows_the_column_it_sorts_by(monkeypatch, sort, header):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = _run(
        "sweep", *TINY, "--epochs", "2", "--batch-size", "20", "--vary", "lr=0.3,0.1,0.01", "--sort", sort
    )
    assert code == 0, err
    lines = out.splitlines()
    head = next(line for line in lines if line.startswith("┃ lr"))
    headers = [c.strip() for c in head.strip("┃").split("┃")]
    assert headers[1] == (header or "train acc")
    column = headers.index(header or "test acc")
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│ 0.")]
    values = [float(r[column]) for r in rows]
    assert len(values) == 3 and values == sorted(values, reverse=not sort.endswith("loss"))


# ---- 10. comparison tables fit the terminal by dropping named columns, never by cutting numbers


@pytest.mark.parametrize("columns", [80, 100, 120])
@pytest.mark.parametrize(
    "argv",
    [
        ["optimizers", "--optimizers", "sgd,adam", "--seeds", "2"],
        ["regularizers", "--methods", "none,l2", "--seeds", "1"],
        ["run", "SUITE"],
    ],
)
def test_tables_drop_named_columns_instead_of_cutting(tmp_path, monkeypatch, columns, argv):
    from dnnbench.render import tables as report

    monkeypatch.setenv("COLUMNS", str(columns))
    if argv[0] == "run":
        suite = tmp_path / "s.toml"
        suite.write_text(SUITE)
        argv = ["run", suite, "--out", tmp_path / "s.jsonl", "-q"]
    else:
        argv = [*argv, *TINY]
    code, out, err = _run(*argv)
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines)
    text = " ".join(out.split())
    body = [line for line in lines if line.startswith("│")]
    assert body and all("…" not in line and line.endswith("│") for line in body)  # nothing elided or cut
    rows = [line for line in body if line.split("│")[1].strip()]  # a row's first line (not a wrapped one)
    assert rows and all(" ok " in row and "underfitting" in row for row in rows)  # status and diagnosis
    assert all(any(c.strip().startswith("0.") for c in row.split("│")) for row in rows)  # test acc
    if "hidden to fit" in text:
        hidden = text.split(f"hidden to fit {columns} columns: ")[1].split(" (a wider")[0].split(", ")
        assert hidden and all(h in report.COMPARISON_DROP_ORDER for h in hidden)
        for h in hidden:
            assert f"┃ {h} ┃" not in out
    else:
        assert columns >= 100
