"""Options (``experiments/options.py``): options that contradict each other are an error naming both."""

from __future__ import annotations

import pytest

# ---- options that contradict each other are an error naming both (or a rule, printed)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["sweep", "--vary", "lr=0.1,0.2", "--lr", "0.5"], ["--lr", "--vary lr"]),
        (["sweep", "--vary", "l2=0.1,0.2", "--l2", "0.5"], ["--l2", "--vary l2"]),
        (["sweep", "--vary", "optimizer=sgd,adam", "--optimizer", "sgd"], ["--optimizer", "--vary optimizer"]),
        (["sweep", "--hp", "b1=0.5", "--vary", "b1=0.8,0.9"], ["--hp b1=0.5", "--vary b1"]),
        (["sweep", "--hp", "adam.b1=0.5", "--vary", "b1=0.8,0.9"], ["--hp adam.b1=0.5", "--vary b1"]),
        (["sweep", "--vary", "optimizer=sgd,adam", "--vary", "b1=0.5,0.9"], ["--vary b1", "--vary optimizer", "sgd"]),
        (["sweep", "--vary", "optimizer=sgd,adam", "--vary", "adam.b1=0.5,0.9"], ["--vary adam.b1", "sgd"]),
        (["sweep", "--width", "16", "--vary", "lr=0.1,0.2"], ["--width", "--vary depth"]),
        (["tune", "--space", "b1=0.8..0.9", "--space", "b1=0.5..0.6"], ["--space sets b1 twice"]),
        (
            ["tune", "--space", "lr=1e-3..1e-1", "--space", "learning_rate=1e-2..1"],
            ["--space sets learning_rate twice"],
        ),
        (["optimizers", "--tune", "--lr", "0.1"], ["--lr", "--tune"]),
        (["optimizers", "--list", "--tune"], ["--list", "--tune"]),
        (["diagnose", "--decay-to", "0.5"], ["--decay-to", "--schedule constant"]),
        (["diagnose", "--schedule", "cosine", "--step-every", "1"], ["--step-every", "--schedule cosine"]),
    ],
)
def test_class_11_conflicting_options_are_an_error_naming_both(argv, words, no_training, run, tiny):
    code, _, err = run(argv[0], *tiny, *argv[1:])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
