"""Each diagnosis label from a synthetic history built to show it; remedies are real commands."""

from __future__ import annotations

import shlex

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
