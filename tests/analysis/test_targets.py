"""Time to target and performance profiles: hand-built histories and rows with known answers,
and ``--target`` / ``dnnbench profile`` through the CLI."""

from __future__ import annotations

import json
import math

import pytest

from dnnbench.analysis import profiles, targets
from dnnbench.cli import main
from dnnbench.errors import InputError

TINY = [
    "--dataset",
    "synthetic:train=200,test=50,features=8,classes=3",
    "--hidden",
    "8",
    "--epochs",
    "3",
    "--batch-size",
    "20",
    "--quiet",
]


def test_time_to_target_is_the_first_epoch_that_reached_it():
    hist = {"val_acc": [0.5, 0.8, 0.79, 0.9], "val_loss": [1.0, 0.4, 0.2, 0.1]}
    timing = {"steps_per_epoch": 9, "epochs_run": 4, "train_s": 2.0}
    got = targets.time_to_target(hist, timing, targets.Target("val_acc", 0.8))
    assert (got["epoch"], got["step"], got["train_s"]) == (2, 18, 1.0)
    assert targets.time_to_target(hist, timing, targets.Target("val_loss", 0.2))["epoch"] == 3  # losses: <=
    never = targets.time_to_target(hist, timing, targets.Target("val_acc", 0.95))
    assert never["epoch"] is None and never["step"] is None


def test_median_is_never_unless_a_majority_reached():
    assert targets.median_or_never([10, 20, None]) == 20
    assert targets.median_or_never([10, None]) is None
    assert targets.median_or_never([10, 30]) == 20
    assert targets.median_or_never([None, None, 5]) is None


@pytest.mark.parametrize(
    "text, words",
    [
        ("val_acc", ["METRIC=VALUE"]),
        ("val_acc=1.5", ["[0, 1]", "1.5"]),
        ("speed=3", ["unknown metric 'speed'"]),
        ("val_loss=-1", [">= 0"]),
        ("val_acc=high", ["'high' is not a number"]),
    ],
)
def test_bad_targets(text, words):
    with pytest.raises(InputError) as info:
        targets.parse_target(text)
    assert all(word in str(info.value) for word in words)


def _row(optimizer, steps, choice=None, status="ok"):
    row = {
        "type": "trial",
        "optimizer": optimizer,
        "status": status,
        "target": {"metric": "val_acc", "value": 0.9, "epoch": steps and steps // 10, "step": steps},
    }
    if choice:
        row.update(phase="final", choice=choice)
    return row


def test_profiles_on_hand_built_rows():
    tasks = {
        "A": [_row("x", 100), _row("x", 100), _row("y", 200), _row("y", 220)],
        "B": [_row("x", None), _row("x", None), _row("y", 50), _row("y", 50)],
        "C": [_row("x", None), _row("y", None)],  # nobody reached it: left out
    }
    times = profiles.task_times(tasks, None)
    assert times["A"] == {"x": 100, "y": 210} and times["B"] == {"x": math.inf, "y": 50}
    found, skipped = profiles.profiles(times)
    assert skipped == ["C"]
    by = {p.label: p for p in found}
    assert by["x"].ratios == (1.0, math.inf) and by["y"].ratios == pytest.approx((2.1, 1.0))
    # score = mean over tasks of (4 - r)+ / 3
    assert by["x"].score == pytest.approx(3 / 2 / 3) and by["y"].score == pytest.approx((1.9 + 3) / 2 / 3)
    assert by["y"].at(1.0) == 0.5 and by["y"].at(2.1) == 1.0 and by["x"].at(4.0) == 0.5
    assert [p.label for p in found] == ["y", "x"]  # best score first


def test_profiles_skip_search_rows_and_label_tuned_rows():
    rows = [{**_row("adam", 5), "phase": "search"}, _row("adam", 50, "default"), _row("adam", 20, "tuned")]
    assert profiles.task_times({"t": rows}, None) == {"t": {"adam (default)": 50, "adam (tuned)": 20}}


def test_target_option_records_rows_prints_a_table_and_profiles(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert (
        main(
            [
                "optimizers",
                "--optimizers",
                "sgd,adam",
                "--seeds",
                "2",
                "--target",
                "val_acc=0.4",
                *TINY,
                "--out",
                str(out),
            ]
        )
        == 0
    ), capsys.readouterr().err
    assert "Time to target val_acc >= 0.4" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()[1:5]]
    for row in rows:
        want = targets.time_to_target(row["history"], row["timing"], targets.Target("val_acc", 0.4))
        assert row["target"] == want and row["timing"]["steps_per_epoch"] == 9
    assert main(["profile", str(out), "--out", str(tmp_path / "p.png")]) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "Performance profiles over 1 task" in text and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["profile", str(out), "--target", "val_acc=0.1"]) == 0  # recomputed from the histories
    assert main(["profile", str(out), "--target", "val_acc=1"]) == 2
    assert "no optimizer reached the target" in capsys.readouterr().err
