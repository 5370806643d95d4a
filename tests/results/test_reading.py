"""Reading results files (``results/reading.py``): every row validated, damaged files refused with
file:line before anything is written, paths named for what they are, one line at a time."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from pathlib import Path

import pytest

from dnnbench.analysis import checking
from dnnbench.cli import main
from dnnbench.results import reading
from dnnbench.results.rows import read_results

HEADER = {"type": "header", "schema": "dnnbench/1", "config": {}, "data": {"name": "synthetic"}}
RESUME = ["optimizers", "--dataset", "synthetic:train=200,test=50,features=8", "--hidden", "8", "--epochs", "1"]
RESUME += ["--optimizers", "sgd", "--seeds", "1", "--quiet", "--resume", "--out"]


def trial(seed: int = 0, test_acc: float = 0.75) -> dict:
    return {
        "type": "trial",
        "id": f"sgd-{seed}",
        "optimizer": "sgd",
        "hyperparams": {"learning_rate": 0.1},
        "seed": seed,
        "config": {"optimizer": "sgd", "seed": seed},
        "status": "ok",
        "metrics": {"train_loss": 0.5, "train_acc": 0.8, "val_acc": 0.7, "test_loss": 0.6, "test_acc": test_acc},
        "best_epoch": 2,
        "stopped_epoch": None,
        "diverged_epoch": None,
        "history": {"val_acc": [0.5, 0.7], "val_loss": [0.9, None], "grad_norm": [[1.0, 2.0], [0.5, 0.25]]},
        "timing": {"compile_s": 1.5, "group_size": 2},
    }


def lines(*rows: dict | str) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(argv: list, capsys) -> str:
    """Run dnnbench; it must exit 2 with one line on stderr (no traceback), which is returned."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def commands(path: Path, base: Path) -> list[list]:
    """Every command that reads ``path`` as a results file."""
    return [["report", path], ["export", path], ["check", base, path], [*RESUME, path]]


def _with(change) -> dict:
    row = trial()
    change(row)
    return row


DAMAGED = {
    "schema dnnbench/2": (lines({**HEADER, "schema": "dnnbench/2"}, trial()), ["r.jsonl:1", "schema 'dnnbench/2'"]),
    "status weird": (lines(HEADER, {**trial(), "status": "weird"}), ["r.jsonl:2", "status 'weird' is not one of"]),
    "two headers": (lines(HEADER, trial(), HEADER), ["r.jsonl:3", "a second header line"]),
    "no header": (lines(trial(), trial(1)), ["r.jsonl:1", "a trial row before the header"]),
    "empty": ("", ["r.jsonl", "no dnnbench/1 header line"]),
    "string metric": (
        lines(HEADER, _with(lambda r: r["metrics"].update(test_acc="0.9"))),
        ["r.jsonl:2", "metrics.test_acc", "valid number"],
    ),
    "test_acc 5.0": (lines(HEADER, trial(test_acc=5.0)), ["r.jsonl:2", "test_acc 5.0 is not an accuracy"]),
    "test_acc -3": (lines(HEADER, trial(test_acc=-3)), ["r.jsonl:2", "test_acc -3 is not an accuracy"]),
    "test_acc Infinity": (
        lines(HEADER, json.dumps(trial(test_acc=math.inf))),  # json.dumps writes Infinity
        ["r.jsonl:2", "Infinity is not JSON"],
    ),
    "history NaN": (
        lines(HEADER, json.dumps(_with(lambda r: r["history"].update(val_acc=[math.nan, 0.5])))),
        ["r.jsonl:2", "NaN is not JSON"],
    ),
    "negative loss in history": (
        lines(HEADER, _with(lambda r: r["history"].update(val_loss=[0.3, -1.0]))),
        ["r.jsonl:2", "history.val_loss -1.0 is not a loss"],
    ),
    "no id": (lines(HEADER, _with(lambda r: r.pop("id"))), ["r.jsonl:2", "a trial row without an id"]),
    "epoch a float": (lines(HEADER, {**trial(), "best_epoch": 2.5}), ["r.jsonl:2", "best_epoch"]),
    "bool seed": (lines(HEADER, {**trial(), "seed": True}), ["r.jsonl:2", "seed"]),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_class_13_readers_refuse_damaged_files(case, tmp_path, capsys):
    content, words = DAMAGED[case]
    base = tmp_path / "base.jsonl"
    base.write_text(lines(HEADER, trial(), trial(1)))
    path = tmp_path / "r.jsonl"
    path.write_text(content)
    before = digest(path)
    for argv in commands(path, base):
        err = refused(argv, capsys)
        assert all(word in err for word in words), (argv[0], err)
        assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.jsonl", "r.jsonl"]  # nothing written, no lock left


def test_class_13_paths_are_named_for_what_they_are_and_read_a_line_at_a_time(tmp_path, capsys):
    base = tmp_path / "base.jsonl"
    base.write_text(lines(HEADER, trial()))
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "gone.jsonl")
    sparse = tmp_path / "sparse.jsonl"
    with open(sparse, "wb") as stream:  # 1 GB of NUL bytes, no newline, no disk used
        stream.truncate(2**30)
    for path, words in [
        (folder, "is a directory, not a results file"),
        (fifo, "is a FIFO (named pipe), not a results file"),  # named at once, never opened to wait
        (Path("/dev/zero"), "/dev/zero is a character device, not a results file"),
        (link, "is a symbolic link to a missing file"),
        (sparse, "sparse.jsonl:1: a line longer than 64 MiB: not a dnnbench row"),
        (tmp_path / "absent.jsonl", "absent.jsonl: no such results file"),
    ]:
        for argv in commands(path, base)[:3]:
            assert words in refused(argv, capsys), (path, argv[0])
    assert f"--resume: {fifo} is a FIFO (named pipe)" in refused([*RESUME, fifo], capsys)


def test_class_13_valid_rows_read_as_written_and_inf_is_never_better(tmp_path, capsys):
    rows = [trial(), {**trial(1), "status": "error", "metrics": {}, "history": {}, "timing": {}, "best_epoch": 0}]
    rows[0]["regularizer"] = "l2"  # a tag: unknown keys are kept, in the file's order
    path = tmp_path / "r.jsonl"
    path.write_text(lines(HEADER, *rows, {"type": "summary", "by": "label", "rows": []}))
    header, read = read_results(path)
    assert header == HEADER and read == rows and [list(r) for r in read] == [list(r) for r in rows]
    torn = tmp_path / "torn.jsonl"
    torn.write_text(lines(HEADER, rows[0]) + '{"type": "trial", "id": "x')  # killed mid-write
    assert read_results(torn)[1] == [rows[0]]
    assert "torn.jsonl:3: torn last line" in capsys.readouterr().err
    # rows from memory (the API) with an infinite or NaN value: a lost value, never "better"
    base = [trial(0, 0.75), trial(1, 0.75)]
    current = copy.deepcopy(base)
    current[0]["metrics"]["test_acc"] = math.inf
    current[1]["metrics"]["test_acc"] = math.nan
    verdicts = {e.trial_id: e.verdict for e in checking.check(base, current).entries}
    assert verdicts == {"sgd-0": "lost value", "sgd-1": "lost value"}


def test_class_4_deeply_nested_results_lines_are_one_line(tmp_path, capsys):
    base = tmp_path / "base.jsonl"
    base.write_text(lines(HEADER, trial()))
    for depth in (40, 900, 100_000):  # past MAX_DEPTH; past what json and pydantic recurse into
        for where in ("diagnosis", "config", "tag"):
            nested = "[" * depth + "]" * depth if where == "tag" else '{"a": ' * depth + "1" + "}" * depth
            path = tmp_path / f"deep-{depth}-{where}.jsonl"
            row = json.dumps({**trial(), where: "NESTED"}).replace('"NESTED"', nested)
            path.write_text(lines(HEADER, row))
            before = digest(path)
            for argv in commands(path, base):
                assert f"{path.name}:2: nested more than {reading.MAX_DEPTH}" in refused(argv, capsys), argv[0]
            assert digest(path) == before
    deep_header = tmp_path / "header.jsonl"
    deep_header.write_text(lines(json.dumps(HEADER).replace("{}", '{"a": ' * 5000 + "1" + "}" * 5000), trial()))
    assert "header.jsonl:1: nested more than" in refused(["report", deep_header], capsys)
    assert not reading.too_deep(json.loads(base.read_text().splitlines()[1]))


# ---- one rule for torn last lines


def _torn(folder: Path, results_file: Path, where: str) -> Path:
    lines = results_file.read_text().splitlines(keepends=True)
    path = folder / f"torn-{where}.jsonl"
    if where == "last":
        path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    else:
        path.write_text(lines[0] + lines[1][:20] + "\n" + "".join(lines[2:]))
    return path


@pytest.mark.parametrize("command", [["report"], ["export"], ["plot", "--terminal"], ["check"]])
def test_a_torn_last_line_is_a_warning_everywhere(tmp_path, results_file, command, run):
    path = _torn(tmp_path, results_file, "last")
    extra = [results_file] if command == ["check"] else []
    code, out, err = run(command[0], *extra, path, *command[1:])
    assert code == 0, err
    assert f"dnnbench: warning: {path}:4: torn last line (a run stopped mid-write) skipped" in err
    if command == ["export"]:
        assert len(out.splitlines()) == 3  # CSV header + both trials
    middle = _torn(tmp_path, results_file, "middle")
    code, _, err = run(command[0], *extra, middle, *command[1:])
    assert code == 2 and f"{middle}:2: not valid JSON" in err
