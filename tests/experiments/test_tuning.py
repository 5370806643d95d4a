"""Tuning: expected-best curves equal their order statistics, quasi-random candidates are
reproducible and in range, selection reads the validation set only, and ``dnnbench tune`` writes
search and final rows into one resumable file."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from dnnbench.analysis.expected_best import expected_best, sparkline
from dnnbench.cli import main
from dnnbench.errors import InputError
from dnnbench.experiments.tuning import Dimension, candidates, default_space, parse_space
from dnnbench.train import engine

TINY = ["--hidden", "8", "--epochs", "2", "--batch-size", "20", "--quiet"]
SYNTH = ["--dataset", "synthetic:train=200,test=50,features=8,classes=3"]


@pytest.mark.parametrize("values", [[0.5, 0.9, 0.7, 0.8], [0.1, 0.1, 0.3], list(np.linspace(0, 1, 7)) + [0.2]])
def test_expected_best_equals_brute_force_over_every_subset(values):
    curve = expected_best(values)
    n = len(values)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(values, k))
        assert curve[k - 1] == pytest.approx(np.mean([max(s) for s in subsets]), rel=1e-12)
    assert curve[0] == pytest.approx(np.mean(values)) and curve[-1] == pytest.approx(max(values))
    assert np.all(np.diff(curve) >= -1e-15)


def test_expected_best_of_losses_and_diverged_tries():
    curve = expected_best([0.3, 0.1, math.inf], higher=False)  # a diverged try's loss is +inf
    assert curve[0] == math.inf and curve[1] == pytest.approx((0.3 + 0.1 + 0.1) / 3) and curve[2] == 0.1
    assert sparkline([0.1, 0.5, 0.9]) == "▁▅█"


def test_candidates_are_reproducible_in_range_and_cover_each_dimension():
    space = {
        "learning_rate": Dimension("learning_rate", 1e-4, 1e-1, "log"),
        "b2": Dimension("b2", 0.99, 0.9999, "log1m"),
        "nesterov": Dimension("nesterov", choices=(True, False)),
    }
    for budget in (16, 12):  # Sobol (a power of 2) and Halton
        a, b = candidates(space, budget, seed=3), candidates(space, budget, seed=3)
        assert a == b and len(a) == budget
        assert candidates(space, budget, seed=4) != a
        lrs = [c["learning_rate"] for c in a]
        assert all(1e-4 <= x <= 1e-1 for x in lrs) and len(set(lrs)) == budget
        assert all(0.99 <= c["b2"] <= 0.9999 for c in a)
        assert {c["nesterov"] for c in a} == {True, False}
        # log-uniform: about half the points below the geometric middle
        assert 0.25 <= np.mean(np.log10(lrs) < -2.5) <= 0.75


def test_default_spaces():
    adam = default_space("adam")
    assert set(adam) == {"learning_rate", "b1", "b2", "eps"}
    assert (adam["learning_rate"].lo, adam["learning_rate"].hi) == pytest.approx((1e-5, 1e-1))
    assert adam["b2"].scale == "log1m" and (adam["b2"].lo, adam["b2"].hi) == pytest.approx((0.99, 0.9999))
    assert adam["b1"].lo == 0.0 and adam["b1"].hi == pytest.approx(0.99)
    assert set(default_space("sgd")) == {"learning_rate"}
    assert "weight_decay" in default_space("lion")
    assert set(default_space("examples/lion.py:make_lion")) == {"learning_rate"}  # a user's: lr only


@pytest.mark.parametrize(
    "text, words",
    [
        ("lr=1e-1..1e-4", ["lo < hi"]),
        ("lr=0..1e-2:log", ["log range needs lo > 0"]),
        ("b1=0.5..1.5:log1m", ["log1m", "hi < 1"]),
        ("lr=a..b", ["'a' is not a number"]),
        ("lr", ["--space expects"]),
        ("b1=0.8..0.9:cubic", ["unknown scale 'cubic'"]),
    ],
)
def test_bad_space_texts(text, words):
    with pytest.raises(InputError) as info:
        parse_space([text])
    for word in words:
        assert word in str(info.value)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tune_writes_search_and_final_rows_one_program_per_optimizer_and_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "t.jsonl"
    argv = [
        "tune",
        "--optimizers",
        "sgd,adam",
        "--budget",
        "4",
        "--seeds",
        "2",
        *SYNTH,
        *TINY,
        "--workers",
        "1",
        "--space",
        "adam.b1=0.8,0.9",
        "--out",
        str(out),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "Expected best val acc" in stdout and "sgd (tuned)" in stdout
    rows = _rows(out)
    trials = [r for r in rows if r["type"] == "trial"]
    search = [r for r in trials if r["phase"] == "search"]
    final = [r for r in trials if r["phase"] == "final"]
    assert len(search) == 8 and {r["seed"] for r in search} == {0}
    # each optimizer's candidates: one compiled executable (cut into equal programs for the cores)
    assert [r["timing"]["executable_trials"] for r in search] == [4] * 8
    assert {r["hyperparams"]["b1"] for r in search if r["optimizer"] == "adam"} <= {0.8, 0.9}
    assert {(r["optimizer"], r["choice"], r["seed"]) for r in final} == {
        (o, c, s) for o in ("sgd", "adam") for c in ("default", "tuned") for s in (1, 2)
    }
    for name in ("sgd", "adam"):
        mine = [r for r in search if r["optimizer"] == name]
        best = max(mine, key=lambda r: r["metrics"]["val_acc"])
        tuned = [r for r in final if r["optimizer"] == name and r["choice"] == "tuned"]
        assert all(r["hyperparams"] == best["hyperparams"] for r in tuned)
    assert rows[-1]["type"] == "summary" and rows[0]["config"]["final_seeds"] == [1, 2]
    page = tmp_path / "t.html"
    assert main(["report", str(out), "--html", str(page)]) == 0, capsys.readouterr().err
    html = page.read_text()
    assert "Tuning: 8 search candidates" in html and "expected best val acc after k tries" in html
    assert "8 trials, 4 rows" in html  # the comparison: the final rows only
    png = tmp_path / "budget.png"
    assert main(["plot", str(out), "--budget", "--out", str(png)]) == 0, capsys.readouterr().err
    assert png.read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()

    # interrupted during the final runs: resume trains only those, same numbers
    complete = out.read_text()
    kept = [
        line
        for line in complete.splitlines()
        if json.loads(line).get("phase") != "final" and json.loads(line)["type"] != "summary"
    ]
    out.write_text("\n".join(kept) + "\n")
    trained: list[int] = []
    real = engine.train_group
    monkeypatch.setattr(
        engine, "train_group", lambda specs, *a, **k: trained.append(len(specs)) or real(specs, *a, **k)
    )
    assert main([*argv, "--resume"]) == 0, capsys.readouterr().err
    assert sum(trained) == 8  # the final rows only
    again = [r for r in _rows(out) if r["type"] == "trial"]
    assert [(r["id"], r["metrics"]) for r in again] == [(r["id"], r["metrics"]) for r in trials]


def test_selection_never_reads_test_metrics(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((260, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    clean, noisy = tmp_path / "clean.npz", tmp_path / "noisy.npz"
    np.savez(clean, x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    np.savez(noisy, x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=rng.permutation(y[200:]))
    chosen, test_accs = [], []
    for data in (clean, noisy):
        out = tmp_path / f"{data.stem}.jsonl"
        assert (
            main(
                [
                    "tune",
                    "--optimizers",
                    "adam",
                    "--budget",
                    "4",
                    "--seeds",
                    "1",
                    "--data",
                    str(data),
                    *TINY,
                    "--out",
                    str(out),
                ]
            )
            == 0
        ), capsys.readouterr().err
        trials = [r for r in _rows(out) if r["type"] == "trial"]
        chosen.append([r["hyperparams"] for r in trials if r.get("choice") == "tuned"])
        test_accs.append([r["metrics"]["test_acc"] for r in trials if r["phase"] == "search"])
    assert chosen[0] == chosen[1]
    assert test_accs[0] != test_accs[1]  # the noise did reach the test metrics


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--budget", "0"], ["--budget", "0"]),
        (["--space", "rho=0.1..0.9"], ["rho", "none of sgd, adam"]),
        (["--space", "sgd.b1=0.1..0.9"], ["sgd has no hyperparameter 'b1'"]),
        (["--space", "lr=1..0.1"], ["lo < hi"]),
        (["--space", "nadam.b1=0.1..0.9"], ["'nadam' is not being tuned"]),
        (["--metric", "test_acc"], ["test_acc", "val_acc, val_loss"]),
        (["--val-split", "0"], ["validation"]),
    ],
)
def test_bad_tune_input_is_one_line_exit_2_nothing_written(extra, words, tmp_path, capsys):
    out = tmp_path / "t.jsonl"
    code = main(["tune", "--optimizers", "sgd,adam", *SYNTH, *TINY, *extra, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err
    assert not out.exists()
