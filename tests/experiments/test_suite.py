"""Suites: a TOML file of experiments, validated on load (file:line: what is wrong, exit 2, nothing
written), run by ``dnnbench run`` into one results file; the CI suite passes ``dnnbench check``
against the committed baseline."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dnnbench.cli import main
from dnnbench.experiments import suite
from dnnbench.train import engine

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "benchmarks" / "suites"
BASELINE = ROOT / "benchmarks" / "baselines" / "ci.jsonl"

SMALL = """\
[data]
dataset = "synthetic:train=200,test=50,features=8"

[model]
hidden = [8]

[train]
epochs = 2
batch_size = 20
seeds = 2

[[experiment]]
name = "opt"
kind = "optimizers"
optimizers = ["sgd", "adam"]

[[experiment]]
kind = "regularizers"
methods = ["none", "l2"]
optimizer = "adam"
"""


def _run(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- loading


def test_example_suites_load():
    ci = suite.load(SUITES / "ci.toml")
    assert [(e.name, e.kind, len(e.specs)) for e in ci.experiments] == [
        ("optimizers", "optimizers", 4),
        ("regularizers", "regularizers", 4),
    ]
    assert ci.job.data.dataset == "digits" and ci.job.seeds == (0, 1)
    assert {dict(s.tags)["experiment"] for s in ci.specs} == {"optimizers", "regularizers"}

    ref = suite.load(SUITES / "reference-mnist.toml")  # the recipe's Keras example; loading downloads nothing
    (experiment,) = ref.experiments
    assert ref.job.data.dataset == "mnist"
    assert {
        (s.optimizer, s.model.hidden, s.model.activation, s.train.batch_size, s.train.epochs, s.train.loss)
        for s in experiment.specs
    } == {("adam", (500, 500), "relu", 100, 20, "ce")}

    opt = suite.load(SUITES / "optimizers-digits.toml")
    assert [s.optimizer for s in opt.specs[::3]] == ["sgd", "momentum", "adagrad", "rmsprop", "adam"]
    reg = suite.load(SUITES / "regularizers-digits.toml")
    assert reg.job.data.label_noise == 0.2 and len(reg.specs) == 7 * 3
    assert {dict(s.tags)["regularizer"] for s in reg.specs} == {
        "none",
        "l1",
        "l2",
        "dropout",
        "early_stopping",
        "augment",
        "all",
    }


def test_optimizer_files_hyperparams_and_schedules_in_a_suite(tmp_path):
    (tmp_path / "opts").mkdir()
    (tmp_path / "opts" / "lion.py").write_text((Path(__file__).parents[2] / "examples" / "lion.py").read_text())
    path = tmp_path / "s.toml"
    path.write_text(
        SMALL.replace("seeds = 2", 'seeds = 2\nschedule = "warmup_cosine"\nwarmup = "1e"').replace(
            'optimizers = ["sgd", "adam"]', 'optimizers = ["adam", "opts/lion.py:make_lion", "lion"]'
        )
        + "[experiment.hyperparams]\nadam = { eps = 1e-3 }\n"
        + '\n[[experiment]]\nname = "own"\nkind = "optimizers"\noptimizers = ["sgd"]\n'
        + '[experiment.train]\nschedule = "step"\nstep_every = 1\n'
        + '\n[[experiment]]\nname = "hp"\nkind = "optimizers"\noptimizers = ["adam", "opts/lion.py:make_lion"]\n'
        + '[experiment.hyperparams]\n"opts/lion.py:make_lion" = { b1 = 0.5 }\n'
    )
    loaded = suite.load(path)
    opt, reg, own, hp = loaded.experiments
    lion_file = f"{tmp_path / 'opts' / 'lion.py'}:make_lion"  # relative to the suite
    assert [s.optimizer for s in opt.specs[::2]] == ["adam", lion_file, "lion"]
    # [experiment.hyperparams] belongs to the [[experiment]] above it (SMALL's regularizers)
    assert dict(opt.specs[0].hyperparams)["eps"] == 1e-7 and dict(reg.specs[0].hyperparams)["eps"] == 1e-3
    assert {(s.schedule.kind, s.schedule.warmup, s.schedule.warmup_epochs) for s in opt.specs} == {
        ("warmup_cosine", 1.0, True)
    }
    assert {(s.schedule.kind, s.schedule.step_every) for s in own.specs} == {("step", 1.0)}
    assert dict(hp.specs[2].hyperparams)["b1"] == 0.5 and dict(hp.specs[0].hyperparams)["b1"] == 0.9


def test_experiments_override_model_and_train_and_paths_are_relative_to_the_suite(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        SMALL.replace('dataset = "synthetic:train=200,test=50,features=8"', 'path = "data/d.npz"')
        + "lr = 0.01\nmodel = { hidden = [4, 4] }\n[experiment.train]\nepochs = 3\nseeds = 1\n"
        + '\n[[experiment]]\nname = "rates"\nkind = "optimizers"\noptimizers = ["sgd", "adam"]\n'
        + "lr = { sgd = 0.5 }\n"
    )
    loaded = suite.load(path)
    assert loaded.job.data.path == str(tmp_path / "data" / "d.npz")
    opt, reg, rates = loaded.experiments
    assert {(s.model.hidden, s.train.epochs, s.seed) for s in opt.specs} == {((8,), 2, 0), ((8,), 2, 1)}
    assert {(s.model.hidden, s.train.epochs, s.seed, s.learning_rate) for s in reg.specs} == {((4, 4), 3, 0, 0.01)}
    assert [(s.optimizer, s.learning_rate) for s in rates.specs] == [
        ("sgd", 0.5),
        ("sgd", 0.5),
        ("adam", 0.001),
        ("adam", 0.001),
    ]
    assert [e["name"] for e in loaded.describe()["experiments"]] == ["opt", "regularizers", "rates"]


# suite text -> (line of the error, words the error line must contain)
BAD_SUITES: dict[str, tuple[str, int | None, list[str]]] = {
    "unknown table": (SMALL.replace("[train]", "[trian]"), 7, ["unknown table 'trian'", "valid: data, model"]),
    "unknown key": (SMALL.replace("epochs = 2", "epoch = 2"), 8, ["[train] unknown key 'epoch'", "epochs"]),
    "wrong type": (SMALL.replace("epochs = 2", 'epochs = "2"'), 8, ["[train] epochs must be an integer", "'2'"]),
    "bad value": (SMALL.replace("batch_size = 20", "batch_size = 0"), 9, ["[train]", "batch size", "0"]),
    "unknown activation": (
        SMALL.replace("hidden = [8]", 'hidden = [8]\nactivation = "softplus"'),
        6,
        ["[model]", "softplus", "relu"],
    ),
    "hidden not widths": (SMALL.replace("hidden = [8]", 'hidden = "8"'), 5, ["hidden must be a list of layer widths"]),
    "seeds zero": (SMALL.replace("seeds = 2", "seeds = 0"), 10, ["seeds must be a positive integer"]),
    "unknown optimizer": (
        SMALL + '\n[[experiment]]\nname = "b"\nkind = "optimizers"\noptimizers = ["sgd", "adamaxx"]\n',
        25,
        ["[[experiment]] unknown optimizer 'adamaxx'", "adam"],
    ),
    "unknown kind": (SMALL.replace('kind = "regularizers"', 'kind = "sweep"'), 18, ["kind must be one of", "'sweep'"]),
    "unknown experiment key": (
        SMALL.replace('optimizers = ["sgd", "adam"]', 'optimisers = ["sgd"]'),
        15,
        ["[[experiment]] unknown key 'optimisers'", "optimizers, lr"],
    ),
    "lr for an optimizer not run": (
        SMALL.replace('optimizers = ["sgd", "adam"]', 'optimizers = ["sgd", "adam"]\nlr = { nesterov = 0.1 }'),
        16,
        ["nesterov", "not being run"],
    ),
    "negative lr": (SMALL + "lr = -1\n", 21, ["learning rate", "-1"]),
    "unknown method": (SMALL.replace('["none", "l2"]', '["none", "mixup"]'), 19, ["unknown regularizer 'mixup'"]),
    "override out of range": (SMALL + "[experiment.train]\nepochs = 0\n", 22, ["[experiment.train]", "epochs", "0"]),
    "inline override": (SMALL + "train = { batch_size = -5 }\n", 21, ["batch size", "-5"]),
    "max_parallel per experiment": (
        SMALL + "[experiment.train]\nmax_parallel = 2\n",
        22,
        ["unknown key 'max_parallel'"],
    ),
    "workers per experiment": (SMALL + "[experiment.train]\nworkers = 2\n", 22, ["unknown key 'workers'"]),
    "workers zero": (SMALL.replace("seeds = 2", "seeds = 2\nworkers = 0"), 11, ["[train] workers", "0"]),
    "duplicate names": (SMALL.replace('name = "opt"', 'name = "regularizers"'), 17, ["'regularizers' is used twice"]),
    "no experiment": (SMALL.split("[[experiment]]")[0], None, ["at least one [[experiment]]"]),
    "not TOML": (SMALL.replace("epochs = 2", "epochs = "), None, ["not valid TOML", "line 8"]),
    "unknown hyperparameter": (
        SMALL + "[experiment.hyperparams]\nadam = { beta = 0.8 }\n",
        22,
        ["[experiment.hyperparams]", "no hyperparameter 'beta'", "b1"],
    ),
    "hyperparams of an optimizer not run": (
        SMALL + "[experiment.hyperparams]\nlion = { b1 = 0.8 }\n",
        22,
        ["'lion'", "runs 'adam'"],
    ),
    "unknown schedule": (
        SMALL.replace("seeds = 2", 'seeds = 2\nschedule = "triangle"'),
        11,
        ["[train]", "triangle", "warmup_cosine"],
    ),
    "warmup too long": (SMALL.replace("seeds = 2", 'seeds = 2\nwarmup = "9e"'), 11, ["warmup of 9 epochs"]),
    "optimizer file missing": (
        SMALL.replace('optimizers = ["sgd", "adam"]', 'optimizers = ["nope.py:make"]'),
        15,
        ["nope.py not found"],
    ),
    # the schema (pydantic): strict types, finite numbers, one model per kind
    "not a width in hidden": (
        SMALL.replace("hidden = [8]", 'hidden = [8, "x"]'),
        5,
        ["[model] hidden must be a list of layer widths", "got [8, 'x']"],
    ),
    "seeds not whole": (SMALL.replace("seeds = 2", "seeds = 2.0"), 10, ["seeds must be a positive integer", "2.0"]),
    "not finite": (
        SMALL.replace("seeds = 2", "seeds = 2\ndecay_to = inf"),
        11,
        ["[train] decay_to must be a number", "inf"],
    ),
    "true is not a number": (SMALL + "lr = true\n", 21, ["[[experiment]] lr must be a number, got True"]),
    "no kind": (
        SMALL.replace('kind = "regularizers"\n', ""),
        17,
        ["kind must be one of optimizers, regularizers, tune", "got None"],
    ),
    "blank name": (SMALL.replace('name = "opt"', 'name = " "'), 13, ["name must be a non-empty string"]),
    "no optimizers": (SMALL.replace('["sgd", "adam"]', "[]"), 15, ["optimizers must be a list of names, got []"]),
    "override not a table": (SMALL + "train = 5\n", 21, ["[[experiment]] train must be a table, got 5"]),
    "hyperparams not tables": (
        SMALL + "[experiment.hyperparams]\nadam = 5\n",
        21,
        ["hyperparams must be a table of tables", "{'adam': 5}"],
    ),
    "retries not an integer": (
        SMALL.replace("seeds = 2", 'seeds = 2\nray_max_retries = "2"'),
        11,
        ["[train] ray_max_retries must be an integer, got '2'"],
    ),
    "first problem in the file": (
        SMALL.replace("epochs = 2", 'epochs = "2"').replace("hidden = [8]", 'hidden = "8"'),
        5,
        ["hidden must be"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SUITES))
def test_bad_suite_is_one_line_naming_file_and_line_and_writes_nothing(case, tmp_path):
    text, line, words = BAD_SUITES[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    out = tmp_path / "r.jsonl"
    code, stdout, err = _run(["run", path, "--out", out, "--quiet"])
    assert code == 2, (stdout, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"dnnbench: error: {path}{f':{line}:' if line else ':'} "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert stdout == "" and not out.exists()


def test_the_cli_does_not_import_pydantic():
    """The suite schema costs ~0.15 s to import and build: only ``dnnbench run`` (which loads JAX) pays it."""
    code = "import sys, dnnbench.cli; print('pydantic' in sys.modules, 'dnnbench.experiments.suite' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_missing_suite_file_is_one_error_line(tmp_path):
    code, _, err = _run(["run", tmp_path / "absent.toml"])
    assert code == 2 and err.strip() == f"dnnbench: error: {tmp_path / 'absent.toml'}: no such suite file"


DEEP = "tables or arrays nested more than 32 deep (a suite needs at most 6)"


def test_class_4_deeply_nested_suites_are_one_line_and_write_nothing(tmp_path):
    import hashlib

    start = '[data]\ndataset = "digits"\n[[experiment]]\nname = "a"\nkind = "optimizers"\nlr = '
    nested = {
        "500 inline tables": start + "{a = " * 500 + "1" + "}" * 500,
        "100k arrays": start + "[" * 100_000 + "]" * 100_000,
        "40 arrays": start + "[" * 40 + "]" * 40,  # parses, but deeper than any suite
        "600 table names": "[" + ".".join(["a"] * 600) + "]\nx = 1",
    }
    for case, text in nested.items():
        path = tmp_path / "deep.toml"
        path.write_text(text + "\n")
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        out = tmp_path / "r.jsonl"
        for argv in (["run", path, "--out", out, "--quiet"], ["run", path, "--out", out, "--resume", "--quiet"]):
            code, stdout, err = _run(argv)
            assert code == 2 and stdout == "" and "Traceback" not in err, (case, err)
            assert err.strip() == f"dnnbench: error: {path}: {DEEP}"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == before and not out.exists()


# ---- running


def test_run_writes_one_file_with_every_experiment_tagged_and_resume_trains_nothing(tmp_path, monkeypatch):
    (tmp_path / "small.toml").write_text(SMALL)
    monkeypatch.chdir(tmp_path)  # the default --out is relative: results/<suite stem>.jsonl
    code, out, err = _run(["run", "small.toml"])
    assert code == 0, err
    path = tmp_path / "results" / "small.jsonl"
    assert "opt: optimizers on synthetic" in out and "Regularizers on synthetic" in out  # one table each
    assert err.strip() == "dnnbench: 8 trials of 2 experiments in results/small.jsonl"
    header, *trials = _rows(path)
    assert header["config"]["command"] == "run"
    assert [e["name"] for e in header["config"]["experiments"]] == ["opt", "regularizers"]
    assert [(t["experiment"], t["optimizer"], t.get("regularizer"), t["seed"]) for t in trials] == [
        ("opt", "sgd", None, 0),
        ("opt", "sgd", None, 1),
        ("opt", "adam", None, 0),
        ("opt", "adam", None, 1),
        ("regularizers", "adam", "none", 0),
        ("regularizers", "adam", "none", 1),
        ("regularizers", "adam", "l2", 0),
        ("regularizers", "adam", "l2", 1),
    ]
    assert len({t["id"] for t in trials}) == 8
    by = {(t["experiment"], t.get("regularizer"), t["optimizer"], t["seed"]): t for t in trials}
    for seed in (0, 1):  # the same trial in two experiments: the same numbers
        assert by["opt", None, "adam", seed]["metrics"] == by["regularizers", "none", "adam", seed]["metrics"]

    before = path.read_text()
    monkeypatch.setattr(engine, "train_group", lambda *a, **k: pytest.fail("trained a finished trial"))
    code, out, err = _run(["run", "small.toml", "--out", path, "--resume", "--quiet"])
    assert code == 0, err
    assert path.read_text() == before and "opt: optimizers" in out


def test_ci_suite_passes_the_check_against_the_committed_baseline(tmp_path):
    out = tmp_path / "ci.jsonl"
    code, _, err = _run(["run", SUITES / "ci.toml", "--out", out, "--quiet"])
    assert code == 0, err
    code, stdout, err = _run(["check", BASELINE, out, "--format", "markdown"])
    assert code == 0, stdout + err
    assert "**PASS**" in stdout
    _, *baseline = _rows(BASELINE)
    assert {t["id"] for t in baseline} == {t["id"] for t in _rows(out)[1:]}  # the very same trials
    assert all(t["status"] == "ok" for t in baseline)


def test_workers_in_train_reach_every_experiment(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SMALL.replace("seeds = 2", "seeds = 2\nworkers = 2"))
    loaded = suite.load(path)
    assert loaded.job.workers == 2
    assert all(e.job.workers == 2 for e in loaded.experiments)


def test_a_tune_experiment_searches_then_runs_its_finals_in_the_same_file(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(
        SMALL.split("[[experiment]]")[0]
        + 'target = "val_acc=0.3"\n'
        + '\n[[experiment]]\nname = "opt"\nkind = "optimizers"\noptimizers = ["sgd"]\n'
        + '\n[[experiment]]\nname = "fair"\nkind = "tune"\noptimizers = ["sgd", "adam"]\nbudget = 4\n'
        + '[experiment.space.adam]\nb1 = [0.8, 0.9]\nlr = "1e-3..1e-1:log"\n'
    )
    loaded = suite.load(path)
    fair = loaded.experiments[1]
    assert fair.tuning is not None and len(fair.specs) == 8
    assert {dict(s.hyperparams)["b1"] for s in fair.specs if s.optimizer == "adam"} <= {0.8, 0.9}
    assert all(1e-3 <= s.learning_rate <= 1e-1 for s in fair.specs if s.optimizer == "adam")
    out = tmp_path / "t.jsonl"
    code, stdout, err = _run(["run", path, "--out", out, "--quiet"])
    assert code == 0, err
    assert "Expected best val acc" in stdout and "Time to target val_acc >= 0.3" in stdout
    trials = _rows(out)[1:]
    assert [t.get("phase") for t in trials].count("search") == 8
    finals = [t for t in trials if t.get("phase") == "final"]
    assert {(t["optimizer"], t["choice"], t["seed"]) for t in finals} == {
        (o, c, s) for o in ("sgd", "adam") for c in ("default", "tuned") for s in (1, 2)
    }
    assert all(t["experiment"] == "fair" and "target" in t for t in finals)


def test_class_14_a_suite_with_a_byte_order_mark_runs(tmp_path, run, tiny_suite):
    suite = tmp_path / "s.toml"
    suite.write_bytes(b"\xef\xbb\xbf" + tiny_suite.encode())
    code, _, err = run("run", suite, "--out", tmp_path / "s.jsonl", "--json")
    assert code == 0, err
