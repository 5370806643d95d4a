"""Files written (``results/files.py``): ``--out`` is never an input and replaces a file only with
``--force``, one writer per results file, and a file that cannot be written is one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from dnnbench.results import files as output_files


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- --out never destroys a file


def _npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(60, 4)).astype(np.float32),
        y_train=np.arange(60) % 3,
        x_test=rng.normal(size=(12, 4)).astype(np.float32),
        y_test=np.arange(12) % 3,
    )
    return path


@pytest.mark.parametrize("command", ["optimizers", "diagnose", "run", "export", "plot"])
def test_out_is_never_an_input(tmp_path, results_file, command, run, tiny_suite):
    victim = {
        "optimizers": _npz(tmp_path / "v.npz"),
        "diagnose": _npz(tmp_path / "v.npz"),
        "run": tmp_path / "v.toml",
        "export": tmp_path / "w.jsonl",
        "plot": tmp_path / "w.png",
    }[command]
    if command == "run":
        victim.write_text(tiny_suite)
    before = victim.read_bytes() if victim.exists() else None
    argv = {
        "optimizers": ["optimizers", "--data", victim, "--hidden", "4", "--epochs", "1", "-q"],
        "diagnose": ["diagnose", "--data", victim, "--hidden", "4", "--epochs", "1", "-q"],
        "run": ["run", victim, "-q"],
        "export": ["export", victim],
        "plot": ["plot", victim],
    }[command]
    if command in ("export", "plot"):
        victim.write_bytes(results_file.read_bytes())
        before = victim.read_bytes()
    code, _, err = run(*argv, "--out", victim, "--force")  # not even with --force
    assert code == 2, err
    assert "is also an input of this command" in err
    assert victim.read_bytes() == before
    assert not output_files.lock_path(victim).exists()


def test_an_existing_file_is_replaced_only_with_force(tmp_path, results_file, run, tiny):
    out = tmp_path / "r.jsonl"
    out.write_text("earlier work\n")
    code, _, err = run("optimizers", *tiny, "--optimizers", "sgd", "--out", out)
    assert code == 2 and "already exists; add --force to replace it or --resume to continue it" in err
    assert out.read_text() == "earlier work\n"
    code, _, err = run("optimizers", *tiny, "--optimizers", "sgd", "--out", out, "--resume", "--force")
    assert code == 2 and "give one of them" in err
    code, _, err = run("optimizers", *tiny, "--optimizers", "sgd", "--out", out, "--force")
    assert code == 0, err
    assert [r["type"] for r in _rows(out)] == ["header", "trial", "summary"]
    for argv in (["export", results_file], ["plot", results_file]):
        target = tmp_path / ("t.csv" if argv[0] == "export" else "t.png")
        target.write_text("mine")
        code, _, err = run(*argv, "--out", target)
        assert code == 2 and "add --force" in err and target.read_text() == "mine"
        code, _, err = run(*argv, "--out", target, "--force")
        assert code == 0, err
        assert target.read_bytes() != b"mine"
        assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []  # temp file renamed away


# ---- one writer per results file


def test_a_second_run_on_a_locked_results_file_stops_at_once(tmp_path, run, tiny, tiny_suite):
    out = tmp_path / "r.jsonl"
    with output_files.lock(out):
        code, _, err = run("optimizers", *tiny, "--optimizers", "sgd", "--out", out)
        assert code == 2
        assert err.strip() == (
            f"dnnbench: error: {out} is being written by another dnnbench run "
            f"(pid {os.getpid()}); wait for it to finish or write to another --out"
        )
        assert not out.exists()
        code, _, err = run("run", _suite(tmp_path, tiny_suite), "--out", out, "-q", "--force")
        assert code == 2 and "being written by another dnnbench run" in err
    assert not output_files.lock_path(out).exists()  # released (and removed) on exit
    code, _, err = run("optimizers", *tiny, "--optimizers", "sgd", "--out", out)
    assert code == 0, err
    assert not output_files.lock_path(out).exists()


def _suite(folder: Path, text: str) -> Path:
    path = folder / "s.toml"
    path.write_text(text)
    return path


def test_a_full_disk_under_out_is_one_line(tmp_path, results_file, run, tiny):
    code, _, err = run("optimizers", *tiny, "--optimizers", "sgd", "--out", "/dev/full")
    assert code == 2
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("dnnbench: error: --out /dev/full: cannot write (No space left on device)")
    )
    assert "Traceback" not in err
    blocked = tmp_path / "file"
    blocked.write_text("")
    for argv in (["export", results_file], ["plot", results_file], ["optimizers", *tiny]):
        code, _, err = run(*argv, "--out", blocked / "x.png")
        assert code == 2, argv
        assert err.startswith(f"dnnbench: error: --out {blocked / 'x.png'}: cannot write") and "\n" == err[-1]
