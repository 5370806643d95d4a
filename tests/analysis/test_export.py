"""CSV export and seed summaries of results rows, and ``dnnbench export``."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from dnnbench.analysis import export
from dnnbench.errors import DataError


def trial_row(
    optimizer: str,
    seed: int,
    test_acc: float | None,
    *,
    lr: float = 0.01,
    status: str = "ok",
    tags: dict | None = None,
    **hyperparams: float,
) -> dict:
    tags = dict(tags or {})
    hp = {"learning_rate": lr, **hyperparams}
    metrics = {
        "train_loss": 0.25,
        "train_acc": 0.95,
        "val_loss": 0.5,
        "val_acc": 0.85,
        "test_loss": 0.45,
        "test_acc": test_acc,
        "best_val_acc": 0.875,
    }
    return {
        "type": "trial",
        "id": f"{optimizer}{seed}",
        "optimizer": optimizer,
        "hyperparams": hp,
        "seed": seed,
        **tags,
        "config": {"optimizer": optimizer, "hyperparams": hp, "seed": seed, "tags": tags},
        "status": status,
        "metrics": metrics,
        "best_epoch": 4 + seed,
        "stopped_epoch": None,
        "diverged_epoch": 2 if status == "diverged" else None,
        "history": {},
        "timing": {"compile_s": 2.5, "train_s": 0.125},
        "diagnosis": {"label": "good fit"},
    }


ROWS = [
    trial_row("sgd", 0, 0.9, tags={"regularizer": "l2"}),
    trial_row("sgd", 1, 0.7, tags={"regularizer": "l2"}),
    trial_row("adam", 0, 0.123456789012345, lr=0.001, b1=0.9, tags={"regularizer": "dropout"}),
    trial_row("adam", 1, None, lr=0.001, b1=0.9, status="diverged", tags={"regularizer": "dropout"}),
]


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_has_a_header_and_one_row_per_trial():
    text = export.to_csv(ROWS)
    header = text.splitlines()[0].split(",")
    assert header[:4] == ["id", "optimizer", "seed", "status"]
    assert header[4:6] == ["hp_learning_rate", "hp_b1"]
    assert "regularizer" in header and "diagnosis" in header
    assert header[-2:] == ["timing_compile_s", "timing_train_s"]
    rows = parse(text)
    assert [r["id"] for r in rows] == ["sgd0", "sgd1", "adam0", "adam1"]
    assert rows[0]["hp_learning_rate"] == "0.01" and rows[0]["hp_b1"] == ""
    assert rows[2]["regularizer"] == "dropout"
    assert float(rows[2]["test_acc"]) == 0.123456789012345  # full precision survives
    assert rows[3]["test_acc"] == "" and rows[3]["status"] == "diverged" and rows[3]["diverged_epoch"] == "2"
    assert rows[1]["best_epoch"] == "5" and rows[1]["stopped_epoch"] == ""
    assert rows[0]["diagnosis"] == "good fit" and float(rows[0]["timing_train_s"]) == 0.125


def test_csv_rejects_rows_without_an_id():
    bad = [dict(ROWS[0])]
    del bad[0]["id"]
    with pytest.raises(DataError, match="no 'id'"):
        export.to_csv(bad)


def test_summarize_groups_by_label_with_stats_over_ok_seeds():
    sgd, adam = export.summarize(ROWS)
    assert (sgd.label, adam.label) == ("sgd l2", "adam dropout")
    assert sgd.stats["test_acc"].mean == pytest.approx(0.8)
    assert sgd.stats["test_acc"].std == pytest.approx(math.sqrt(0.02))  # sample std of 0.9 and 0.7
    assert sgd.stats["best_epoch"].mean == pytest.approx(4.5)
    assert adam.stats["test_acc"].n == 1  # the diverged seed is left out of the statistics
    assert adam.statuses == {"ok": 1, "diverged": 1}
    assert adam.diagnoses == {"good fit": 2}
    assert adam.learning_rates == [0.001]


def test_labels_name_swept_settings_only():
    rows = [trial_row("sgd", 0, 0.5, lr=0.1), trial_row("sgd", 0, 0.6, lr=0.01), trial_row("adam", 0, 0.7, lr=0.001)]
    assert export.swept_keys(rows) == {"sgd": ["hyperparams.learning_rate"], "adam": []}
    assert list(export.group(rows)) == ["sgd lr=0.1", "sgd lr=0.01", "adam"]
    assert list(export.group(ROWS)) == ["sgd l2", "adam dropout"]  # lr differs only between optimizers


@pytest.fixture()
def results(tmp_path) -> Path:
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"type": "header", "schema": "dnnbench/1"}, *ROWS]))
    return path


def test_export_command_to_stdout_and_to_a_file(cli, results, tmp_path):
    result = cli("export", results, "--csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == export.to_csv(ROWS)
    out = tmp_path / "deep" / "r.csv"
    result = cli("export", results, "--out", out)
    assert result.exit_code == 0
    assert len(parse(out.read_text())) == 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.csv"]


def test_export_command_data_errors(cli, tmp_path):
    assert isinstance(cli("export", tmp_path / "missing.jsonl").exception, DataError)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"type": "header", "schema": "dnnbench/1"}\n')
    result = cli("export", empty)
    assert isinstance(result.exception, DataError) and "no trial rows" in str(result.exception)
