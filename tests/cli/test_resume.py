"""Results that survive interruption: Ctrl-C keeps the finished trials and exits 130; ``--resume``
trains only the groups with missing trials and gives the numbers of an uninterrupted run, exactly.

Why whole groups: a trial trained in a smaller vmapped group gets the same weights but sums such as
the validation loss can differ in the last float32 bit (XLA orders the reduction by group size), so
resume keeps every compiled group as the uninterrupted run had it."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnnbench.cli import main
from dnnbench.train import engine

TINY = [
    "--dataset",
    "synthetic:train=200,test=50,features=8",
    "--hidden",
    "8",
    "--epochs",
    "2",
    "--batch-size",
    "20",
    "--quiet",
]
# Two workers: two compiled groups (sgd, adam) of two trials, however many cores the machine has.
# --max-parallel 2: two compiled groups of two trials (without it the plan cuts them into 4 singles)
TWO_BY_TWO = ["optimizers", *TINY, "--optimizers", "sgd,adam", "--seeds", "2", "--max-parallel", "2"]
NUMBERS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _trials(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["type"] == "header" and rows[-1]["type"] == "summary"  # a finished run closes with it
    assert all(row["type"] == "trial" for row in rows[1:-1])
    trials = {row["id"]: row for row in rows[1:-1]}
    assert len(trials) == len(rows) - 2, "a trial id appears twice"
    return trials


def _lines(path: Path) -> tuple[str, list[str]]:
    """The header line and the trial lines of a finished file (its closing summary left out)."""
    header, *rest = path.read_text().splitlines(keepends=True)
    return header, [line for line in rest if json.loads(line)["type"] == "trial"]


def _assert_same_numbers(got: dict[str, dict], want: dict[str, dict]) -> None:
    """Every trial of ``want`` in ``got`` with the same numbers, exactly (only timings differ)."""
    assert set(got) == set(want)
    for trial_id, row in want.items():
        assert got[trial_id]["status"] == row["status"] == "ok"
        assert got[trial_id]["metrics"] == row["metrics"], trial_id
        for key in NUMBERS:
            assert got[trial_id]["history"][key] == row["history"][key], (trial_id, key)
        assert {k: v for k, v in got[trial_id].items() if k != "timing"} == {
            k: v for k, v in row.items() if k != "timing"
        }, trial_id


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    """The uninterrupted run: 2 optimizers x 2 seeds, two compiled groups of two trials."""
    path = tmp_path_factory.mktemp("full") / "r.jsonl"
    code, _, err = _run([*TWO_BY_TWO, "--out", path])
    assert code == 0, err
    return path


def test_resume_trains_the_groups_of_missing_trials_whole_with_identical_numbers(full, tmp_path, monkeypatch):
    sizes: list[int] = []
    train_group = engine.train_group
    monkeypatch.setattr(
        engine, "train_group", lambda specs, *a, **k: sizes.append(len(specs)) or train_group(specs, *a, **k)
    )
    header, trials = _lines(full)
    assert [json.loads(t)["optimizer"] for t in trials] == ["sgd", "sgd", "adam", "adam"]
    path = tmp_path / "r.jsonl"
    path.write_text(header + trials[0] + trials[3])  # sgd seed 1 and adam seed 0 go missing
    code, out, err = _run([*TWO_BY_TWO, "--out", path, "--resume"])
    assert code == 0, err
    assert "sgd" in out and "adam" in out  # the table covers all four trials
    text = path.read_text()
    assert text.startswith(header + trials[0] + trials[3])  # kept as it was, header included
    assert len(text.splitlines()) == 6  # header, 4 trials, the new summary
    assert sorted(sizes) == [2, 2]  # both groups trained again whole; only the missing trials written
    _assert_same_numbers(_trials(path), _trials(full))


def test_resume_keeps_the_split_groups_of_the_plan(tmp_path, monkeypatch):
    """Planned for the cores, the two groups run as four single-trial programs; resume trains
    exactly the programs of the missing trials, as the interrupted run had them."""
    argv = TWO_BY_TWO[:-2]
    full = tmp_path / "full.jsonl"
    assert _run([*argv, "--out", full])[0] == 0
    sizes: list[int] = []
    train_group = engine.train_group
    monkeypatch.setattr(
        engine, "train_group", lambda specs, *a, **k: sizes.append(len(specs)) or train_group(specs, *a, **k)
    )
    header, trials = _lines(full)
    path = tmp_path / "r.jsonl"
    path.write_text(header + trials[0] + trials[3])
    code, _, err = _run([*argv, "--out", path, "--resume"])
    assert code == 0, err
    assert sizes == [1, 1]
    _assert_same_numbers(_trials(path), _trials(full))


def test_resume_of_a_complete_file_trains_nothing(full, tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    path.write_text(full.read_text())
    monkeypatch.setattr(engine, "train_group", lambda *a, **k: pytest.fail("trained a finished trial"))
    code, out, err = _run([*TWO_BY_TWO, "--out", path, "--resume"])
    assert code == 0, err
    assert path.read_text() == full.read_text()
    assert "adam" in out


def test_resume_retrains_error_rows_and_a_torn_last_line(full, tmp_path):
    header, trials = _lines(full)
    failed = json.loads(trials[1])
    failed.update(status="error", metrics={}, error="RuntimeError: out of memory")
    path = tmp_path / "r.jsonl"
    path.write_text(header + trials[0] + json.dumps(failed) + "\n" + trials[2] + trials[3][:40])  # killed mid-write
    code, _, err = _run([*TWO_BY_TWO, "--out", path, "--resume"])
    assert code == 0, err
    _assert_same_numbers(_trials(path), _trials(full))


def test_json_with_resume_streams_the_whole_run(full, tmp_path):
    header, trials = _lines(full)
    path = tmp_path / "r.jsonl"
    path.write_text(header + "".join(trials[:3]))
    code, out, err = _run([*TWO_BY_TWO, "--out", path, "--resume", "--json"])
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0] == json.loads(header) and len(rows) == 6 and rows[-1]["type"] == "summary"
    assert path.read_text().splitlines()[0] == header.rstrip("\n")


def _resume_error(tmp_path: Path, argv: list[str]) -> str:
    code, out, err = _run(argv)
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dnnbench: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_resume_without_out_or_with_a_missing_file_is_one_error_line(tmp_path):
    assert "--resume needs --out" in _resume_error(tmp_path, [*TWO_BY_TWO, "--resume"])
    missing = tmp_path / "absent.jsonl"
    assert "absent.jsonl does not exist" in _resume_error(tmp_path, [*TWO_BY_TWO, "--resume", "--out", missing])
    assert not missing.exists()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", ["no dnnbench/1 header line"]),
        ('{"a": 1}\n', ["r.jsonl:1", "not a dnnbench row"]),
        ('{"type": "header", "schema": "dnnbench/1"}\nnot json\n{"type": "trial"}\n', ["r.jsonl:2", "not valid JSON"]),
        ('{"type": "header", "schema": "dnnbench/1"}\n{"type": "trial"}\n', ["r.jsonl:2", "without an id"]),
        ('{"type": "header", "schema": "other/9"}\n', ["not a dnnbench/1 results file"]),
    ],
)
def test_resume_of_a_file_that_is_not_a_results_file_is_one_error_line(tmp_path, content, words):
    path = tmp_path / "r.jsonl"
    path.write_text(content)
    line = _resume_error(tmp_path, [*TWO_BY_TWO, "--resume", "--out", path])
    for word in words:
        assert word in line, (word, line)
    assert path.read_text() == content  # untouched


def test_resume_with_other_options_is_refused_and_leaves_the_file(full, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(full.read_text())
    argv = ["optimizers", *TINY, "--optimizers", "sgd", "--seeds", "2", "--out", path, "--resume"]
    line = _resume_error(tmp_path, argv)
    assert "2 trial(s) that are not part of this run" in line
    assert path.read_text() == full.read_text()


# ---- a real Ctrl-C


def _dnnbench() -> list[str]:
    script = Path(sys.executable).with_name("dnnbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dnnbench"]


@pytest.mark.parametrize(
    ("sig", "exit_code", "said"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")]
)
def test_a_stop_keeps_finished_trials_and_resume_completes_them_exactly(tmp_path, sig, exit_code, said):
    # SIGTERM (how CI systems stop a job) takes the same path as Ctrl-C, with exit code 143.
    # One worker and 600 epochs: the groups train one after the other, the second for a while
    # (seconds, even with the Ray tests loading the cores beside it),
    # so the interrupt lands after the first group's rows and before the last ones.
    argv = [*TWO_BY_TWO, "--epochs", "600"]  # the last --epochs counts
    full = tmp_path / "full.jsonl"
    code, _, err = _run([*argv, "--out", full])  # the uninterrupted run (two workers: the same two groups)
    assert code == 0, err
    path = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [*_dnnbench(), *argv, "--workers", "1", "--out", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # header + the first group's trials
        if path.exists() and len(path.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)  # the first group's rows are being written, or the second group trains
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == exit_code, err
    lines = path.read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line is whole JSON
    written = len(rows) - 1
    assert 1 <= written < 4
    assert all(row["status"] == "ok" for row in rows[1:])  # nothing unfinished was written
    assert [line for line in err.splitlines() if line.strip()] == [
        f"dnnbench: {said}; {written} of 4 trials written to {path}; --resume continues"
    ]
    assert "Traceback" not in err

    code, _, err = _run([*argv, "--out", path, "--resume"])
    assert code == 0, err
    assert path.read_text().splitlines()[: len(lines)] == lines
    _assert_same_numbers(_trials(path), _trials(full))  # the uninterrupted run's numbers


def test_sigterm_outside_training_still_exits_143(monkeypatch, capsys):
    """Typer turns a KeyboardInterrupt escaping a command into exit 130; a SIGTERM (say, while the
    table is drawn after training) must still read as one: exit 143."""
    from dnnbench import errors
    from dnnbench.cli import app as cli
    from dnnbench.cli import commands
    from dnnbench.errors import Terminated

    def terminated(*args, **kwargs):
        errors.STOPS.append(signal.SIGTERM)  # what the SIGTERM handler does before it raises
        raise Terminated

    monkeypatch.setattr(commands, "compare_optimizers", terminated)
    assert cli.main(["optimizers", *TINY]) == 143
    assert capsys.readouterr().err.strip() == "dnnbench: terminated (SIGTERM)"
    monkeypatch.setattr(commands, "compare_optimizers", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main(["optimizers", *TINY]) == 130  # Ctrl-C stays 130
