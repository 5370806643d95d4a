"""Tags keep their JSON types (issue 14, point 6): a sweep's ``depth`` level 8 is 8 in the row, the
spec, the id and the CSV; labels read ``str(value)``; files written when tags were strings still
report, export, check and plot."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from dnnbench.analysis import export
from dnnbench.cli import main
from dnnbench.config import DataConfig, ModelConfig, Regularization, TrainConfig, TrialSpec
from dnnbench.errors import InputError
from dnnbench.experiments import sensitivity, sweep, tuning
from dnnbench.experiments.job import Job
from dnnbench.results import rows as results

TINY = [
    "--dataset",
    "synthetic:train=120,test=40,features=6,classes=3",
    "--epochs",
    "1",
    "--batch-size",
    "20",
    "--quiet",
]
VARY = ["--vary", "depth=1,2", "--vary", "lr=0.1,0.01", "--vary", "activation=relu,tanh", "--width", "8"]


def _run(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _rows(path: Path) -> list[dict]:
    """The header and the trial rows (not the closing summary)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if r["type"] in ("header", "trial")]


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A depth x lr x activation sweep's results file (8 trials, one seed)."""
    path = tmp_path_factory.mktemp("sweep") / "s.jsonl"
    code, _, err = _run(["sweep", *VARY, *TINY, "--out", path])
    assert code == 0, err
    return path


def test_sweep_rows_keep_ints_floats_and_names(swept):
    _, *trials = _rows(swept)
    assert len(trials) == 8
    for row in trials:
        tags = row["config"]["tags"]
        assert type(tags["depth"]) is int and type(tags["lr"]) is float and type(tags["activation"]) is str
        assert (row["depth"], row["lr"], row["activation"]) == (tags["depth"], tags["lr"], tags["activation"])
        assert len(row["config"]["model"]["hidden"]) == tags["depth"]  # the tag is the level that ran
        assert row["hyperparams"]["learning_rate"] == tags["lr"]
    assert {(r["depth"], r["lr"]) for r in trials} == {(1, 0.1), (1, 0.01), (2, 0.1), (2, 0.01)}


def test_the_same_sweep_twice_gives_the_same_ids(swept, tmp_path):
    again = tmp_path / "again.jsonl"
    code, _, err = _run(["sweep", *VARY, *TINY, "--out", again])
    assert code == 0, err

    def ids(path: Path) -> dict:  # programs may finish in any order: by levels
        return {(r["depth"], r["lr"], r["activation"]): r["id"] for r in _rows(path)[1:]}

    assert ids(swept) == ids(again) and len(set(ids(swept).values())) == 8
    # ... and a typed tag is part of the id: the same trial tagged "8" is another trial
    spec = TrialSpec(tags=(("depth", 8),))
    assert results.trial_id(spec, {}) == results.trial_id(TrialSpec(tags=(("depth", 8),)), {})
    assert results.trial_id(spec, {}) != results.trial_id(TrialSpec(tags=(("depth", "8"),)), {})


def test_tag_values_per_kind_of_level():
    factors = sweep.parse_vary(["depth=8", "residual=true", "b1=0.9"])
    (spec,) = sweep.sweep_specs(factors, TrialSpec(), [0], width=4)
    assert dict(spec.tags) == {"depth": 8, "residual": True, "b1": 0.9}
    assert [type(v) for _, v in spec.tags] == [int, bool, float]
    (spec,) = sweep.sweep_specs(sweep.parse_vary(["hidden=8x8", "warmup=2e"]), TrialSpec(), [0], width=4)
    assert dict(spec.tags) == {"hidden": "8x8", "warmup": "2e"}  # not one value: the level's text
    assert sweep.levels_label({"depth": 8, "lr": 0.01}, ["depth", "lr"]) == "depth=8 lr=0.01"


def test_tune_candidates_and_lr_grid_points_are_tagged_with_numbers():
    job = Job(DataConfig(), ModelConfig(hidden=(8,)), TrainConfig(epochs=1), Regularization(), seeds=(0,))
    planned = tuning.plan(job, ["sgd"], budget=3, metric="val_acc")
    assert [dict(s.tags) for s in planned.search] == [{"phase": "search", "candidate": i} for i in range(3)]
    specs = sensitivity.sensitivity_specs(["sgd"], [1e-3, 0.1], TrialSpec(), seeds=[0])
    assert [dict(s.tags)["lr"] for s in specs] == [s.learning_rate for s in specs] == [1e-3, 0.1]


@pytest.mark.parametrize("value", [None, (8, 8), float("nan"), [1]])
def test_a_tag_that_is_not_a_json_scalar_is_an_input_error(value):
    with pytest.raises(InputError, match="tag 'x' must be a string, integer, finite number or true/false"):
        TrialSpec(tags=(("x", value),))


def test_export_csv_shows_numbers(swept, cli):
    result = cli("export", swept)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    cells = {(c["depth"], c["lr"], c["activation"]) for c in csv.DictReader(lines)}
    assert cells == {(d, lr, a) for d in ("1", "2") for lr in ("0.1", "0.01") for a in ("relu", "tanh")}
    assert sum(",1,0.1,relu," in line for line in lines) == 1  # bare numbers, no quotes
    assert export.to_csv(_rows(swept)[1:]) == result.stdout


def _stringified(path: Path, out: Path) -> Path:
    """``path`` as a version before typed tags wrote it: every tag value a string."""
    head, *trials = _rows(path)
    for row in trials:
        tags = {k: str(v) for k, v in row["config"]["tags"].items()}
        row["config"]["tags"] = tags
        row.update(tags)
    out.write_text("".join(json.dumps(r) + "\n" for r in [head, *trials]))
    return out


def test_a_file_with_string_tags_still_reports_exports_checks_and_plots(swept, cli, tmp_path, monkeypatch):
    old = _stringified(swept, tmp_path / swept.name)
    assert _rows(old)[1]["config"]["tags"]["depth"] in ("1", "2")
    outputs = {}
    for path in (swept, old):
        monkeypatch.chdir(path.parent)  # the same name in the title: the same table width
        outputs[path] = cli("report", path.name), cli("export", path.name)
    (report_new, csv_new), (report_old, csv_old) = outputs[swept], outputs[old]
    assert report_old.exit_code == 0 and csv_old.exit_code == 0, report_old.output + csv_old.output
    assert "adam 1 0.1 relu" in report_old.stdout
    assert report_old.stdout == report_new.stdout and csv_old.stdout == csv_new.stdout  # labels and cells alike
    check = cli("check", old, old)
    assert check.exit_code == 0, check.output
    plot = cli("plot", old, "--terminal")
    assert plot.exit_code == 0, plot.output
    html = tmp_path / "r.html"
    assert cli("report", old, "--html", html).exit_code == 0 and "relu" in html.read_text()
