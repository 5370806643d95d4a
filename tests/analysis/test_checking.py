"""``dnnbench check``: verdicts per trial and metric, CI exit codes, markdown and benchmark JSON."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dnnbench.analysis import checking
from dnnbench.cli.results import app
from dnnbench.errors import DataError, InputError

OPTIMIZERS = {"sgd": 0.1, "momentum": 0.1, "adam": 0.001}


def trial_row(
    optimizer: str = "adam",
    seed: int = 0,
    *,
    lr: float = 0.001,
    test_acc: float = 0.8,
    test_loss: float = 0.5,
    status: str = "ok",
    tags: dict | None = None,
) -> dict:
    """A results row shaped like ``TrialResult.to_row()``, with chosen final numbers."""
    tags = dict(tags or {})
    config = {
        "optimizer": optimizer,
        "hyperparams": {"learning_rate": lr},
        "seed": seed,
        "model": {"hidden": [32], "activation": "relu"},
        "tags": tags,
    }
    metrics = {
        "train_loss": 0.4,
        "train_acc": 0.9,
        "val_loss": 0.6,
        "val_acc": 0.75,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "best_val_acc": 0.78,
    }
    return {
        "type": "trial",
        "id": f"{optimizer}-{lr:g}-{'-'.join(tags.values())}-{seed}",
        "optimizer": optimizer,
        "hyperparams": {"learning_rate": lr},
        "seed": seed,
        **tags,
        "config": config,
        "status": status,
        "metrics": metrics,
        "best_epoch": 3,
        "stopped_epoch": None,
        "diverged_epoch": None,
        "history": {"val_acc": [0.5, 0.7, 0.78, 0.75]},
        "timing": {"compile_s": 1.5, "train_s": 0.2},
        "diagnosis": {"label": "good fit", "evidence": {}, "remedies": []},
    }


def rows_of(offsets: dict[str, float] | None = None) -> list[dict]:
    """Three optimizers x two seeds; test_acc 0.70 + 0.05 * index + ``offsets[id]``."""
    rows = []
    for i, (name, lr) in enumerate(OPTIMIZERS.items()):
        for seed in (0, 1):
            rows.append(trial_row(name, seed, lr=lr, test_acc=round(0.70 + 0.05 * i + 0.01 * seed, 4)))
    for row in rows:
        row["metrics"]["test_acc"] += (offsets or {}).get(row["id"], 0.0)
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    header = {"type": "header", "schema": "dnnbench/1", "data": {"name": "synthetic"}, "config": {}}
    path.write_text("".join(json.dumps(r) + "\n" for r in [header, *rows]))
    return path


def verdicts(report: checking.CheckReport) -> dict[str, str]:
    return {e.trial_id: e.verdict for e in report.entries}


# --- library -----------------------------------------------------------------------------------


def seeds_of(changes: list[float], *, test_acc: float = 0.9, metric: str = "test_acc") -> tuple[list[dict], list[dict]]:
    """One row (adam) over ``len(changes)`` seeds: baseline ``test_acc`` + a small seed spread, current
    = baseline + ``changes[seed]``."""
    base = [trial_row("adam", seed, test_acc=round(test_acc + 0.002 * seed, 4)) for seed in range(len(changes))]
    cur = copy.deepcopy(base)
    for row, change in zip(cur, changes, strict=True):
        row["metrics"][metric] += change
    return base, cur


def test_identical_results_pass_with_zero_differences():
    report = checking.check(rows_of(), rows_of())
    assert not report.failed
    assert len(report.entries) == 6 and len(report.rows) == 3
    assert set(verdicts(report).values()) == {"ok"}
    assert all(e.difference == 0.0 for e in report.entries)
    assert all(r.n == 2 and r.difference == 0.0 and r.ci95 == (0.0, 0.0) for r in report.rows)
    assert report.summary() == "PASS: 3 rows (6 trials) within tolerance 0.005 on test_acc"


def test_a_uniform_small_drop_over_five_seeds_is_a_regression():
    # -0.008 on every seed (+- 0.001): far below the old per-trial 0.01, but the same on every seed.
    base, cur = seeds_of([-0.008, -0.007, -0.009, -0.008, -0.008])
    report = checking.check(base, cur)
    (row,) = report.rows
    assert row.verdict == "worse" and report.failed
    assert row.n == 5 and row.difference == pytest.approx(-0.008)
    half = 2.7764 * np.std([-0.008, -0.007, -0.009, -0.008, -0.008], ddof=1) / np.sqrt(5)
    assert row.ci95 == pytest.approx((-0.008 - half, -0.008 + half), abs=1e-6)
    assert row.ci95[1] < -0.005
    assert set(verdicts(report).values()) == {"worse"}  # each trial shows its row's verdict
    assert report.summary() == "FAIL: 1 worse (1 rows, 5 trials, tolerance 0.005 on test_acc)"


def test_one_noisy_seed_is_uncertain_and_fails_only_when_strict():
    base, cur = seeds_of([0.0, 0.0, 0.0, 0.0, -0.05])
    report = checking.check(base, cur)
    (row,) = report.rows
    assert row.verdict == "uncertain"
    assert row.ci95[0] < -0.005 < row.ci95[1]
    assert not report.failed
    assert report.summary() == "PASS: 1 rows (5 trials) within tolerance 0.005 on test_acc; 1 uncertain"
    strict = checking.check(base, cur, strict=True)
    assert strict.failed
    assert strict.summary() == "FAIL: 1 uncertain (1 rows, 5 trials, tolerance 0.005 on test_acc, strict)"


def test_an_improvement_is_listed_as_better_and_passes():
    base, cur = seeds_of([0.02, 0.03, 0.025, 0.02, 0.03])
    report = checking.check(base, cur)
    assert [r.verdict for r in report.rows] == ["better"] and not report.failed
    assert report.summary().endswith("; 1 better")


def test_a_missing_trial_fails_and_its_row_is_judged_on_the_seeds_left():
    base, cur = seeds_of([0.0] * 5)
    del cur[2]
    report = checking.check(base, cur)
    assert report.failed
    assert [(e.label, e.verdict) for e in report.problems] == [("adam seed=2", "missing")]
    assert report.rows[0].n == 4 and report.rows[0].verdict == "ok"
    assert report.summary() == "FAIL: 1 missing (1 rows, 5 trials, tolerance 0.005 on test_acc)"


def test_a_new_diverged_trial_is_listed_not_compared():
    base, cur = seeds_of([0.0] * 3)
    extra = trial_row("adam", 3, status="diverged")
    extra["metrics"] = {k: None for k in extra["metrics"]}
    report = checking.check(base, [*cur, extra])
    assert not report.failed
    assert [(e.label, e.verdict) for e in report.problems] == [("adam seed=3", "new")]
    assert report.rows[0].n == 3
    assert report.summary().endswith("; 1 new in CURRENT, not compared: adam seed=3")


@pytest.mark.parametrize(
    ("change", "verdict"), [(-0.005, "ok"), (-0.01, "ok"), (-0.0101, "worse"), (0.01, "ok"), (0.02, "better")]
)
def test_one_seed_falls_back_to_the_per_trial_rule(change, verdict):
    base, cur = seeds_of([change])
    report = checking.check(base, cur, tolerance=0.01)
    assert [(r.n, r.ci95, r.verdict) for r in report.rows] == [(1, None, verdict)]
    assert report.failed is (verdict == "worse")


def test_one_bad_seed_of_two_is_uncertain_not_worse():
    report = checking.check(rows_of(), rows_of({"momentum-0.1--1": -0.2}))
    row = next(r for r in report.rows if r.label == "momentum")
    assert row.verdict == "uncertain" and row.difference == pytest.approx(-0.1)
    entry = next(e for e in report.entries if e.trial_id == "momentum-0.1--1")
    assert (entry.baseline, entry.current, entry.verdict, entry.label) == (
        pytest.approx(0.76),
        pytest.approx(0.56),
        "uncertain",
        "momentum seed=1",
    )
    assert not report.failed and report.counts["uncertain"] == 1


def test_loss_metrics_are_worse_when_they_rise():
    base, cur = rows_of(), rows_of()
    for i, change in enumerate((0.06, 0.06, -0.10, -0.10, 0.04, 0.04)):
        cur[i]["metrics"]["test_loss"] += change
    report = checking.check(base, cur, tolerance=0.05, metrics=["test_loss", "test_acc"])
    by = {(r.label, r.metric): r.verdict for r in report.rows}
    assert by == {
        ("sgd", "test_loss"): "worse",
        ("momentum", "test_loss"): "better",
        ("adam", "test_loss"): "ok",
        ("sgd", "test_acc"): "ok",
        ("momentum", "test_acc"): "ok",
        ("adam", "test_acc"): "ok",
    }
    assert len(report.entries) == 12 and report.failed


def test_newly_diverged_missing_and_new_trials():
    base = rows_of()
    cur = rows_of()
    cur[0]["status"] = "diverged"
    cur[0]["metrics"] = {k: None for k in cur[0]["metrics"]}
    del cur[3]
    cur.append(trial_row("rmsprop", 0, lr=0.001))
    report = checking.check(base, cur)
    v = verdicts(report)
    assert v[base[0]["id"]] == "newly diverged"
    assert v[base[3]["id"]] == "missing"
    assert v["rmsprop-0.001--0"] == "new"
    assert report.entries[-1].trial_id == "rmsprop-0.001--0"  # new trials come last
    assert report.counts == {
        "ok": 3,
        "worse": 0,
        "uncertain": 0,
        "better": 0,
        "newly diverged": 1,
        "error": 0,
        "lost value": 0,
        "missing": 1,
        "new": 1,
    }
    assert report.failed


def test_still_diverged_is_not_a_regression_and_new_trials_alone_pass():
    base, cur = rows_of(), rows_of()
    for rows in (base, cur):
        rows[0]["status"] = "diverged"
        rows[0]["metrics"]["test_acc"] = None
    cur.append(trial_row("rmsprop", 0))
    report = checking.check(base, cur)
    assert verdicts(report)[base[0]["id"]] == "ok"
    assert not report.failed


def test_bad_arguments_and_malformed_rows():
    with pytest.raises(InputError, match="best_epoch"):
        checking.check(rows_of(), rows_of(), metrics=["best_epoch"])
    with pytest.raises(InputError, match="tolerance"):
        checking.check(rows_of(), rows_of(), tolerance=-0.1)
    rows = rows_of()
    with pytest.raises(DataError, match="appears twice"):
        checking.check(rows + rows[:1], rows)
    del rows[2]["id"]
    with pytest.raises(DataError, match="current: trial 3 has no 'id'"):
        checking.check(rows_of(), rows)


def test_labels_name_tags_and_swept_settings():
    rows = [
        trial_row("sgd", 0, lr=0.1, tags={"regularizer": "l2"}),
        trial_row("sgd", 0, lr=0.01, tags={"regularizer": "l2"}),
        trial_row("adam", 1, lr=0.001, tags={"regularizer": "dropout"}),
    ]
    names = [e.label for e in checking.check(rows, rows).entries]
    assert names == ["sgd l2 lr=0.1 seed=0", "sgd l2 lr=0.01 seed=0", "adam dropout seed=1"]


def test_markdown_states_each_verdict_with_its_interval():
    base, cur = seeds_of([-0.008, -0.007, -0.009, -0.008, -0.008])
    noisy_base, noisy_cur = seeds_of([0.0, 0.0, 0.0, 0.0, -0.05])
    for row in [*noisy_base, *noisy_cur]:
        row["optimizer"], row["id"] = "sgd", row["id"].replace("adam", "sgd")
    del cur[1]
    text = checking.markdown(checking.check([*base, *noisy_base], [*cur, *noisy_cur]))
    lines = text.splitlines()
    assert "| row | metric | seeds | baseline | current | Δ mean | 95% interval | verdict |" in lines
    worse = next(line for line in lines if line.startswith("| adam |"))
    assert worse.startswith("| adam | test_acc | 4 | 0.9045 | 0.8962 | -0.0083 | [-0.0090, -0.0075] | ❌ worse |")
    noisy = next(line for line in lines if line.startswith("| sgd |"))
    assert noisy.endswith("| -0.0100 | [-0.0378, +0.0178] | ⚠️ uncertain |")
    assert "| adam seed=1 | `adam-0.001--1` | test_acc | 0.9020 | – | ❌ missing |" in lines
    assert "**FAIL**: 1 worse, 1 uncertain, 1 missing (2 rows, 10 trials, tolerance 0.005 on test_acc)" in lines
    assert lines[-1].startswith("Rule: per row, the mean seed-paired change")


def test_github_benchmark_shape():
    rows = rows_of()
    rows[0]["metrics"]["test_acc"] = None  # diverged: no point rather than a fake 0
    entries = checking.github_benchmark(rows, metrics=("test_acc", "val_acc"))
    assert len(entries) == 6 * 2 - 1
    assert all(set(e) == {"name", "unit", "value", "extra"} and e["unit"] == "accuracy" for e in entries)
    assert all(isinstance(e["value"], float) for e in entries)
    assert len({e["name"] for e in entries}) == len(entries)
    assert {
        "name": "adam seed=1 test_acc",
        "unit": "accuracy",
        "value": pytest.approx(0.81),
        "extra": "id adam-0.001--1, status ok",
    } in entries
    json.dumps(entries, allow_nan=False)
    with pytest.raises(InputError, match="loss"):
        checking.github_benchmark(rows, metrics=("test_loss",))


# --- command -----------------------------------------------------------------------------------


@pytest.fixture()
def cli():
    runner = CliRunner()
    # Wide enough that rich never wraps a row (pytest-xdist workers set COLUMNS=80).
    env = {"GITHUB_STEP_SUMMARY": None, "COLUMNS": "200"}
    return lambda *args, env=env: runner.invoke(app, [str(a) for a in args], env=env)


def test_check_file_against_its_copy_exits_0(cli, tmp_path):
    base = write(tmp_path / "base.jsonl", rows_of())
    copy_path = tmp_path / "copy.jsonl"
    copy_path.write_bytes(base.read_bytes())
    result = cli("check", base, copy_path)
    assert result.exit_code == 0, result.output
    assert "PASS: 3 rows (6 trials) within tolerance 0.005 on test_acc" in result.stdout


def test_check_a_drop_on_every_seed_exits_1_and_marks_the_row(cli, tmp_path):
    base, cur = seeds_of([-0.008, -0.007, -0.009, -0.008, -0.008])
    result = cli("check", write(tmp_path / "base.jsonl", base), write(tmp_path / "cur.jsonl", cur))
    assert result.exit_code == 1
    line = next(line for line in result.stdout.splitlines() if "│ adam" in line)
    assert "│     5 │" in line and "-0.0080" in line and "[-0.0089, -0.0071]" in line and "worse" in line
    assert "FAIL: 1 worse (1 rows, 5 trials, tolerance 0.005 on test_acc)" in result.stdout


def test_check_an_uncertain_row_passes_unless_strict(cli, tmp_path):
    base, cur = seeds_of([0.0, 0.0, 0.0, 0.0, -0.05])
    paths = write(tmp_path / "base.jsonl", base), write(tmp_path / "cur.jsonl", cur)
    result = cli("check", *paths)
    assert result.exit_code == 0
    assert "uncertain" in next(line for line in result.stdout.splitlines() if "│ adam" in line)
    assert cli("check", *paths, "--strict").exit_code == 1
    assert cli("check", *paths, "--tolerance", "0.05").exit_code == 0


def test_check_newly_diverged_and_missing_exit_1(cli, tmp_path):
    base = write(tmp_path / "base.jsonl", rows_of())
    diverged = rows_of()
    diverged[2]["status"] = "diverged"
    assert cli("check", base, write(tmp_path / "d.jsonl", diverged)).exit_code == 1
    result = cli("check", base, write(tmp_path / "m.jsonl", rows_of()[1:]))
    assert result.exit_code == 1
    assert "missing" in next(line for line in result.stdout.splitlines() if "sgd seed=0" in line)


def test_check_appends_markdown_to_github_step_summary(cli, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    base = write(tmp_path / "base.jsonl", rows_of())
    cur = write(tmp_path / "cur.jsonl", rows_of()[1:])
    result = cli(
        "check", base, cur, "--format", "markdown", env={"GITHUB_STEP_SUMMARY": str(summary), "COLUMNS": "200"}
    )
    assert result.exit_code == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n### dnnbench check")
    assert "| row | metric | seeds | baseline | current | Δ mean | 95% interval | verdict |" in text
    assert "| sgd | test_acc | 1 | 0.7100 | 0.7100 | +0.0000 | one seed | ok |" in text
    assert "**FAIL**: 1 missing" in text
    assert "**FAIL**: 1 missing" in result.stdout


def test_check_github_benchmark_format_prints_current_values(cli, tmp_path):
    base = write(tmp_path / "base.jsonl", rows_of())
    result = cli("check", base, base, "--format", "github-benchmark", "--metric", "test_acc", "--metric", "val_acc")
    assert result.exit_code == 0
    entries = json.loads(result.stdout)
    assert len(entries) == 12
    assert entries[0] == {
        "name": "sgd seed=0 test_acc",
        "unit": "accuracy",
        "value": 0.7,
        "extra": "id sgd-0.1--0, status ok",
    }


def test_check_errors_are_dnnbench_errors(cli, tmp_path):
    base = write(tmp_path / "base.jsonl", rows_of())
    assert isinstance(cli("check", base, tmp_path / "nope.jsonl").exception, DataError)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert isinstance(cli("check", base, bad).exception, DataError)
    assert isinstance(cli("check", base, base, "--format", "html").exception, InputError)
    assert isinstance(cli("check", base, base, "--metric", "speed").exception, InputError)


def test_report_renders_mean_and_std_over_seeds(cli, tmp_path):
    result = cli("report", write(tmp_path / "r.jsonl", rows_of()))
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if "momentum" in line)
    # test_acc 0.75 and 0.76: mean 0.755, sample std 0.00707
    assert "0.7550 ± 0.0071" in line and "good fit" in line and "ok" in line
    assert "mean ± std over 2 seeds" in result.stdout


# ---- a CI gate without holes


def test_check_refuses_an_empty_baseline(tmp_path, results_file, run):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(results_file.read_text().splitlines(keepends=True)[0])  # a header, no trials
    for base, cur in ((empty, results_file), (empty, empty)):
        code, _, err = run("check", base, cur)
        assert code == 2 and "the baseline has no trials to compare" in err


def test_check_lists_new_trials_and_reports_errors(tmp_path, results_file, run):
    lines = results_file.read_text().splitlines(keepends=True)
    base = tmp_path / "base.jsonl"
    base.write_text(lines[0] + lines[1])  # sgd only
    code, out, _ = run("check", base, results_file, "--format", "markdown")
    assert code == 0
    assert (
        "**PASS**: 1 rows (1 trials) within tolerance 0.005 on test_acc; 1 new in CURRENT, not compared: "
        "adam seed=0" in out
    )
    broken = json.loads(lines[1])
    broken["status"], broken["metrics"], broken["error"] = "error", {}, "RuntimeError: boom"
    cur = tmp_path / "cur.jsonl"
    cur.write_text(lines[0] + json.dumps(broken) + "\n")
    code, out, _ = run("check", base, cur, "--format", "markdown")
    assert code == 1
    assert "❌ error" in out and "newly diverged" not in out
    assert "**FAIL**: 1 error (0 rows, 1 trials" in out
