"""An optimizer's numbers (``optim/definition.py``): values float32 cannot hold are refused."""

from __future__ import annotations

import pytest

# ---- numbers float32 cannot hold, shifts larger than the images, label gaps


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
def test_numbers_outside_float32_are_refused(tmp_path, command, option, value, words, run, tiny):
    extra = ["--vary", "lr=0.1,0.01"] if command == "sweep" else []
    code, out, err = run(command, *tiny, option, value, *extra, "--out", tmp_path / "r.jsonl")
    assert code == 2 and words in err and "Traceback" not in err
    assert not (tmp_path / "r.jsonl").exists()
