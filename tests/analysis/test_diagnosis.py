"""Each diagnosis label from a synthetic history built to show it; remedies are real commands."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from dnnbench.analysis import diagnosis
from dnnbench.config import ModelConfig, TrialSpec


def history(train_acc, val_acc, val_loss, train_loss=None):
    n = len(train_acc)
    return {
        "train_acc": list(train_acc),
        "train_loss": list(train_loss if train_loss is not None else np.linspace(1.0, 0.1, n)),
        "val_acc": list(val_acc),
        "val_loss": list(val_loss),
        "test_acc": list(val_acc),
        "test_loss": list(val_loss),
    }


CASES = {
    # low training accuracy, loss flat: the network cannot fit the training data
    "underfitting": history([0.10, 0.11, 0.11, 0.11], [0.10, 0.10, 0.10, 0.10], [2.30, 2.30, 2.30, 2.30]),
    # training accuracy 1.0, validation 0.85: a gap of 0.15
    "overfitting": history([0.9, 0.99, 1.0, 1.0], [0.84, 0.85, 0.85, 0.85], [0.5, 0.45, 0.45, 0.46]),
    # high accuracy, tiny gap, validation loss flat at its minimum
    "good fit": history([0.95, 0.97, 0.98, 0.98], [0.95, 0.96, 0.97, 0.97], [0.20, 0.15, 0.15, 0.15]),
    # validation loss still falling fast at the last epoch
    "still improving": history([0.5, 0.6, 0.7, 0.8], [0.5, 0.6, 0.7, 0.8], [2.0, 1.6, 1.2, 0.8]),
}


@pytest.mark.parametrize("label", list(CASES))
def test_each_label_from_a_history_built_to_show_it(label):
    verdict = diagnosis.diagnose(CASES[label], "ok", spec=TrialSpec())
    assert verdict["label"] == label
    assert verdict["evidence"]["train_acc"] == CASES[label]["train_acc"][-1]


def test_diverged_comes_from_the_status_with_the_epoch():
    h = history([0.1, 0.1], [0.1, 0.1], [2.3, float("nan")], train_loss=[2.3, float("nan")])
    verdict = diagnosis.diagnose(h, "diverged", spec=TrialSpec(optimizer="sgd"))
    assert verdict["label"] == "diverged"
    assert verdict["evidence"]["diverged_epoch"] == 2
    assert any("--lr 0.01" in line for line in verdict["remedies"])  # sgd default 0.1 / 10


def test_overfitting_by_rising_validation_loss_even_with_small_gap():
    h = history([0.98] * 8, [0.96] * 8, [0.30, 0.20, 0.15, 0.16, 0.18, 0.20, 0.22, 0.25])
    verdict = diagnosis.diagnose(h, "ok", spec=TrialSpec())
    assert verdict["label"] == "overfitting"
    assert verdict["evidence"]["best_loss_epoch"] == 3
    assert verdict["evidence"]["loss_rise_from_best"] == pytest.approx(0.25 / 0.15 - 1)


def test_thresholds_are_configurable():
    h = CASES["overfitting"]
    lenient = diagnosis.Thresholds(overfit_gap=0.5, overfit_val_rise=10.0)
    assert diagnosis.diagnose(h, "ok", thresholds=lenient)["label"] == "good fit"


def test_remedies_follow_the_recipe_order_and_parse_as_commands():
    spec = TrialSpec(optimizer="sgd", model=ModelConfig(hidden=(64,) * 8, activation="sigmoid"))
    under = diagnosis.remedies("underfitting", spec)
    assert "--epochs 40" in under[0] and "--lr 1" in under[1]
    assert any("--activation relu" in line for line in under)
    assert any("--residual" in line for line in under)
    over = diagnosis.remedies("overfitting", TrialSpec())
    assert "--early-stopping" in over[0] and "--l2" in over[1] and "--dropout 0.5" in over[3]
    for line in under + over:
        args = shlex.split(line)
        assert args[:2] == ["dnnbench", "diagnose"]


def _early(patience: int = 3, epochs: int = 20, monitor: str = "val_loss") -> TrialSpec:
    from dnnbench.config import Regularization, TrainConfig

    return TrialSpec(
        train=TrainConfig(epochs=epochs), reg=Regularization(early_stopping=True, patience=patience, monitor=monitor)
    )


# Best validation loss at epoch 3 (gap 0.01 there), then three epochs of memorising: gap 0.12 at the end.
STOPPED = history(
    [0.90, 0.94, 0.96, 0.99, 1.0, 1.0], [0.90, 0.93, 0.95, 0.92, 0.90, 0.88], [0.40, 0.30, 0.25, 0.28, 0.33, 0.40]
)


def test_an_early_stopped_trial_is_judged_at_its_restored_epoch():
    plain = diagnosis.diagnose(STOPPED, "ok", spec=TrialSpec())
    assert plain["label"] == "overfitting"  # judged at the last epoch, as if it kept those weights
    verdict = diagnosis.diagnose(STOPPED, "ok", spec=_early())
    assert verdict["label"] == "good fit"
    ev = verdict["evidence"]
    assert ev["early_stopping"] == "stopped at epoch 6, restored epoch 3"
    assert (ev["judged_epoch"], ev["epochs"], ev["last_epoch"]) == (3, 6, 3)
    assert ev["generalization_gap"] == pytest.approx(0.96 - 0.95)
    assert ev["train_acc"] == 0.96 and ev["loss_rise_from_best"] == 0.0
    assert ev["loss_trend_per_epoch"] == pytest.approx((0.25 - 0.40) / 0.40 / 2)  # the trend up to epoch 3


def test_an_early_stopped_trial_that_overfit_by_its_restored_epoch_is_still_overfitting():
    h = history([0.99, 1.0, 1.0, 1.0, 1.0], [0.80, 0.85, 0.84, 0.83, 0.82], [0.6, 0.5, 0.55, 0.6, 0.65])
    verdict = diagnosis.diagnose(h, "ok", spec=_early(patience=3))
    assert verdict["label"] == "overfitting"
    assert verdict["evidence"]["early_stopping"] == "stopped at epoch 5, restored epoch 2"
    assert verdict["evidence"]["generalization_gap"] == pytest.approx(0.15)


def test_a_stopped_trial_is_never_still_improving_and_one_that_ran_out_of_epochs_can_be():
    # Falling fast up to the restored epoch, then flat: stopped, so more epochs would not help.
    h = history([0.5, 0.6, 0.7, 0.7, 0.7], [0.5, 0.6, 0.7, 0.7, 0.7], [2.0, 1.6, 1.2, 1.2, 1.2])
    assert diagnosis.diagnose(h, "ok", spec=_early(patience=2))["label"] == "underfitting"
    ran_out = diagnosis.diagnose(CASES["still improving"], "ok", spec=_early(epochs=4))
    assert ran_out["label"] == "still improving"
    assert ran_out["evidence"]["early_stopping"] == "ran all 4 epochs, restored epoch 4"


def test_the_restored_epoch_follows_the_monitor_and_min_delta():
    from dnnbench.config import Regularization

    h = history([0.9] * 5, [0.80, 0.85, 0.86, 0.84, 0.83], [0.5, 0.4, 0.395, 0.45, 0.5])
    assert diagnosis.restored_epoch(h, Regularization(monitor="val_loss")) == 3
    assert diagnosis.restored_epoch(h, Regularization(monitor="val_loss", min_delta=0.01)) == 2
    assert diagnosis.restored_epoch(h, Regularization(monitor="val_acc")) == 3


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- suggested next commands: the whole configuration, quoted once, read back by the CLI itself


def _parsed(run, monkeypatch, line: str) -> tuple[object, object]:
    """The job and the one trial that the CLI builds from the shell line ``line`` (nothing trains)."""
    from dnnbench.cli import commands

    captured: list = []
    monkeypatch.setattr(commands, "execute", lambda job, specs, **kw: captured.append((job, specs)) or [])
    args = shlex.split(line)
    assert args[0] == "dnnbench"
    code, _, err = run(*args[1:])
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


def test_every_option_survives_into_every_remedy(monkeypatch, run):
    from dnnbench.analysis import diagnosis

    job, spec = _parsed(run, monkeypatch, EVERY_OPTION)
    same_job, same_spec = _parsed(run, monkeypatch, shlex.join(diagnosis.command_for(spec, job.data)))
    assert same_spec == spec and same_job.data == job.data  # the run itself reads back whole
    for label in ("underfitting", "overfitting", "diverged", "still improving"):
        lines = diagnosis.remedies(label, spec, job.data)
        assert lines
        for line, remedy in zip(lines, diagnosis.remedy_specs(label, spec), strict=True):
            assert "'/tmp/a dir'" in line and "'\"'\"'" not in line  # quoted once
            parsed_job, parsed = _parsed(run, monkeypatch, line)
            assert parsed == remedy, line
            assert parsed_job.data == job.data
            assert _one_remedy(_differences(parsed, spec)), (line, _differences(parsed, spec))


@pytest.mark.parametrize("command", ["diagnose", "optimizers"])
def test_suggested_commands_of_real_runs_read_back(tmp_path, monkeypatch, command, run, tiny):
    given = [
        *tiny,
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
    code, stdout, err = run(command, *given, "--out", out)
    assert code == 0, err
    trials = [row for row in _rows(out) if row["type"] == "trial"]
    assert all(row["diagnosis"]["remedies"] for row in trials)
    for row in trials:
        for line in row["diagnosis"]["remedies"]:
            if command == "diagnose":
                assert line in stdout.splitlines()  # one line, whole, outside the panel
            job, parsed = _parsed(run, monkeypatch, line)
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
