"""Sweeps: parsing, the cartesian product, shared structures, and the lr grid compiling once."""

from __future__ import annotations

import json
import math

import pytest

from dnnbench import data as datamod
from dnnbench.cli import main
from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.errors import InputError
from dnnbench.experiments import sensitivity, sweep
from dnnbench.run import runner
from dnnbench.train import engine

TINY = [
    "--dataset",
    "synthetic:train=200,test=60,features=8,classes=3",
    "--hidden",
    "8",
    "--epochs",
    "2",
    "--batch-size",
    "20",
    "--quiet",
]


def test_parse_vary_and_product():
    factors = sweep.parse_vary(["lr=0.1,0.01", "activation=relu,sigmoid,tanh"])
    assert [label for label, _ in factors["lr"]] == ["0.1", "0.01"]
    specs = sweep.sweep_specs(factors, TrialSpec(), seeds=[0, 1], width=16)
    assert len(specs) == 2 * 3 * 2
    combos = {(dict(s.tags)["lr"], dict(s.tags)["activation"]) for s in specs}
    assert len(combos) == 6
    assert {s.learning_rate for s in specs} == {0.1, 0.01}


@pytest.mark.parametrize(
    "bad, message",
    [
        (["speed=1,2"], "unknown key 'speed', not a hyperparameter of adam either; valid keys: optimizer, lr"),
        (["lr=fast"], "--vary lr: bad value 'fast'"),
        (["lr"], "--vary expects KEY=V1,V2"),
        (["optimizer=sgd,adamaxx"], "unknown optimizer 'adamaxx'"),
        (["lr=0.1", "lr=0.2"], "names 'lr' twice"),
        (["depth=2", "hidden=8x8"], "vary one of them"),
        ([], "at least one --vary"),
    ],
)
def test_bad_vary_is_an_input_error_naming_the_problem(bad, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        sweep.parse_vary(bad)


def test_bad_level_values_are_caught_when_specs_are_built():
    with pytest.raises(InputError, match="activation=swishy"):
        sweep.sweep_specs(sweep.parse_vary(["activation=relu,swishy"]), TrialSpec(), [0], 8)
    with pytest.raises(InputError, match="lr=-1"):
        sweep.sweep_specs(sweep.parse_vary(["lr=0.1,-1"]), TrialSpec(), [0], 8)


def test_numeric_levels_share_one_structure_and_depth_builds_layers():
    specs = sweep.sweep_specs(sweep.parse_vary(["lr=0.1,0.01", "l2=0,0.001", "dropout=0,0.5"]), TrialSpec(), [0], 8)
    assert len(runner.group_by_structure(specs)) == 1  # one compiled program for all 8
    deep = sweep.sweep_specs(sweep.parse_vary(["depth=1,3"]), TrialSpec(), [0], width=16)
    assert [s.model.hidden for s in deep] == [(16,), (16, 16, 16)]


def test_swept_optimizers_take_the_given_lr_or_their_own_defaults():
    specs = sweep.sweep_specs(sweep.parse_vary(["optimizer=sgd,adam"]), TrialSpec(), [0], 8, lr=0.05)
    assert [s.learning_rate for s in specs] == [0.05, 0.05]
    specs = sweep.sweep_specs(sweep.parse_vary(["optimizer=sgd,adam"]), TrialSpec(), [0], 8)
    assert [s.learning_rate for s in specs] == [0.1, 0.001]


def test_a_learning_rate_grid_compiles_once_per_optimizer():
    raw = datamod.sources.load_synthetic(train=200, test=60, features=8, classes=3)
    data = datamod.split(raw, 0.1)
    base = TrialSpec(model=ModelConfig(hidden=(8,)), train=TrainConfig(epochs=2, batch_size=20))
    grid = sensitivity.lr_grid(1e-4, 1.0, 5)
    assert grid[0] == pytest.approx(1e-4) and grid[-1] == pytest.approx(1.0) and len(grid) == 5
    specs = sensitivity.sensitivity_specs(["sgd", "adam"], grid, base, seeds=[0])
    before = engine.compile_count
    trials = runner.execute(runner.Run(specs, workers=2), data)  # two programs, one per optimizer
    # per optimizer: init (optimizer state) + epoch; the weight init is shared by both
    assert engine.compile_count - before <= 2 * 2 + 1
    assert len(runner.group_by_structure(specs)) == 2
    rows = sensitivity.analyze(trials, "val_acc", tolerance=0.05)
    assert [r["optimizer"] for r in rows] == ["sgd", "adam"]
    for row in rows:
        assert row["best_lr"] in grid
        assert row["range"][0] <= row["best_lr"] <= row["range"][1]
        assert row["width_decades"] == pytest.approx(math.log10(row["range"][1] / row["range"][0]))


def test_forgiving_range_from_a_known_curve():
    from dnnbench.results.rows import TrialResult

    curve = {1e-3: 0.50, 1e-2: 0.88, 1e-1: 0.90, 1.0: 0.89, 10.0: None}
    trials = [
        TrialResult(
            id=str(lr),
            spec=TrialSpec(optimizer="sgd", hyperparams=(("learning_rate", lr),)),
            status="ok" if v is not None else "diverged",
            metrics={"val_acc": v},
            history={},
            best_epoch=1,
            stopped_epoch=None,
            diverged_epoch=None,
            timing={},
        )
        for lr, v in curve.items()
    ]
    [row] = sensitivity.analyze(trials, "val_acc", tolerance=0.02)
    assert row["best_lr"] == 0.1 and row["range"] == (0.01, 1.0) and row["width_decades"] == pytest.approx(2.0)
    assert row["best_inside_grid"] and math.isnan(row["curve"][-1])


def test_sweep_command_runs_loss_mse_and_ce_and_writes_tagged_rows(tmp_path, capsys):
    import json

    out = tmp_path / "s.jsonl"
    code = main(["sweep", "--vary", "loss=mse,ce", *TINY, "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "Main effects: mean test_acc" in text and "mse" in text and "ce" in text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["loss"] for r in rows if r["type"] == "trial"} == {"mse", "ce"}


def test_sweep_command_bad_key_exits_2_listing_valid_keys(capsys):
    assert main(["sweep", "--vary", "speed=1", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "valid keys: optimizer, lr" in err[0]


def test_groups_are_chunked_automatically_to_the_memory_budget(monkeypatch):
    specs = [TrialSpec(seed=s, model=ModelConfig(hidden=(500, 500))) for s in range(10)]
    one = runner.trial_bytes(specs[0], n_features=784)
    assert 5e7 < one < 2e8  # 784-500-500-10 adam: measured 92 MB per trial on MNIST-sized data
    assert runner.group_by_structure(specs, n_features=784) == [list(range(10))]
    monkeypatch.setattr(runner, "MEMORY_BUDGET", 3 * one)
    # four chunks of near-equal size (3, 3, 2, 2): two program shapes, not 3, 3, 3, 1
    assert runner.group_by_structure(specs, n_features=784) == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert runner.group_by_structure(specs, max_parallel=5, n_features=784) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_clip_norm_and_weight_decay_sweep_is_one_executable_of_six_trials(tmp_path, capsys):
    import json

    out = tmp_path / "s.jsonl"
    argv = ["sweep", "--optimizer", "sgd", "--vary", "clip_norm=0.5,1,5", "--vary", "weight_decay=0,1e-4"]
    assert main([*argv, *TINY, "--lr", "0.5", "--out", str(out)]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    trials = [r for r in rows if r["type"] == "trial"]
    assert len(trials) == 6 and {r["timing"]["executable_trials"] for r in trials} == {6}
    assert {(r["clip_norm"], r["weight_decay"]) for r in trials} == {
        (c, w) for c in (0.5, 1.0, 5.0) for w in (0.0, 1e-4)
    }
    for r in trials:  # recorded in the config where set; an unset decay leaves it (and the id) as before
        reg = r["config"]["regularization"]
        assert reg["clip_norm"] == r["clip_norm"] and reg.get("weight_decay", 0.0) == r["weight_decay"]
    # clipping at 0.5 and at 5 train differently (sgd at lr 0.5: the gradients' norms lie between)
    loss = {(r["clip_norm"], r["weight_decay"]): r["metrics"]["train_loss"] for r in trials}
    assert loss[(0.5, 0.0)] != loss[(5.0, 0.0)]
    specs = sweep.sweep_specs(
        sweep.parse_vary(["clip_norm=0.5,1,5", "weight_decay=0,1e-4"], "sgd"),
        TrialSpec(optimizer="sgd", model=ModelConfig(hidden=(8,))),
        seeds=[0],
        width=8,
    )
    assert len({s.structure for s in specs}) == 1


def test_class_11_a_key_that_is_a_knob_and_a_hyperparameter_follows_a_printed_rule(tmp_path, run, tiny):
    (tmp_path / "opt.py").write_text(
        "import optax\n\ndef make(learning_rate=0.01, warmup: float = 0.0):\n    return optax.sgd(learning_rate)\n"
    )
    spec = f"{tmp_path / 'opt.py'}:make"
    code, stdout, err = run("sweep", *tiny, "--epochs", 2, "--optimizer", spec, "--vary", "warmup=0.1,0.2", "--json")
    assert code == 0, err
    assert f"--vary warmup varies the training option --warmup, not the hyperparameter 'warmup' of {spec}" in err
    trials = [json.loads(line) for line in stdout.splitlines()][1:3]
    assert [t["config"]["schedule"]["warmup"] for t in trials] == [0.1, 0.2]  # the knob, as said
    # a schedule option beside a varied kind is for the kinds that use it: no conflict
    code, _, err = run("sweep", *tiny, "--vary", "schedule=constant,cosine", "--decay-to", 0.5, "--json")
    assert code == 0, err
