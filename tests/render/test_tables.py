"""Issue 16, point 10: tables fit the console without cutting a number or a status; ``--wide`` and
``--columns`` choose what a results table shows.

Through the CLI, on the training commands (optimizers, sweep, lr-sensitivity, regularizers, tune,
run) and the results commands (report, check, profile). Each training run happens once, in a
fixture; a table is then printed again at another width with ``--resume`` on its finished results
file, which trains nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dnnbench.cli import main
from dnnbench.render import results as report_results
from dnnbench.render import tables as report
from dnnbench.run import runner

pytestmark = pytest.mark.xdist_group("tables")  # one worker trains the fixture's runs, once

TINY = ["--epochs", "1", "--hidden", "8", "-q"]  # the bundled digits data
COMMANDS = {
    "optimizers": ["optimizers", "--optimizers", "sgd,momentum,adam", "--target", "val_acc=0.05"],
    "sweep": ["sweep", "--vary", "lr=0.3,0.01", "--vary", "activation=relu,tanh"],
    "lr-sensitivity": [
        "lr-sensitivity",
        "--optimizers",
        "sgd,adam",
        "--points",
        "4",
        "--lr-min",
        "1e-3",
        "--lr-max",
        "1",
    ],
}


def _run(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _trials(path: Path) -> list[dict]:
    return [row for row in map(json.loads, path.read_text().splitlines()) if row["type"] == "trial"]


def _headers(text: str, table: int = 0) -> list[str]:
    """The column headers of the ``table``-th table in ``text``, a header folded over lines glued back."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("┃"):
            current.append([cell.strip() for cell in line.strip().strip("┃").split("┃")])
        elif current:
            blocks.append(current)
            current = []
    lines = blocks[table]
    return [" ".join(filter(None, (line[j] for line in lines))) for j in range(len(lines[0]))]


def _body(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("│")]


def _row(text: str, label: str) -> str:
    """The first line of the body row whose first cell is ``label``."""
    return next(line for line in _body(text) if line.split("│")[1].strip() == label)


def _nothing_cut(text: str, columns: int) -> None:
    assert all(len(line) <= columns for line in text.splitlines()), max(text.splitlines(), key=len)
    body = _body(text)
    assert body and all("…" not in line for line in body)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, monkeypatch_module) -> dict[str, Path]:
    """One finished results file per training command of ``COMMANDS``, trained once."""
    monkeypatch_module.setenv("COLUMNS", "200")
    folder = tmp_path_factory.mktemp("tables")
    files = {}
    for name, argv in COMMANDS.items():
        files[name] = folder / f"{name}.jsonl"
        code, _, err = _run(*argv, *TINY, "--out", files[name])
        assert code == 0, err
    return files


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture()
def no_training(monkeypatch):
    """Fail the test if anything is trained."""

    def refuse(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(runner, "execute", refuse)


def _again(finished: dict[str, Path], name: str, *extra: str) -> tuple[int, str, str]:
    """Print ``name``'s tables again from its finished results file (``--resume`` trains nothing)."""
    return _run(*COMMANDS[name], *TINY, "--out", finished[name], "--resume", *extra)


# ---- at 80 and 100 columns no number or status is cut


@pytest.mark.parametrize("columns", [80, 100])
def test_optimizers_table_keeps_numbers_whole(finished, monkeypatch, no_training, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = _again(finished, "optimizers")
    assert code == 0, err
    _nothing_cut(out, columns)
    for trial in _trials(finished["optimizers"]):
        row = _row(out, trial["optimizer"])
        assert f"{trial['metrics']['test_acc']:.4f}" in row and " ok " in row, row
    assert "Time to target" in out  # the second table fits too


@pytest.mark.parametrize("columns", [80, 100])
def test_sweep_tables_keep_numbers_whole(finished, monkeypatch, no_training, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = _again(finished, "sweep")
    assert code == 0, err
    _nothing_cut(out, columns)
    assert _headers(out)[:2] == ["lr", "activation"]  # the factors always show, headers whole
    rows = [line for line in _body(out) if line.split("│")[1].strip() in ("0.3", "0.01")]
    for trial in _trials(finished["sweep"]):
        tags = trial["config"]["tags"]
        assert any(
            f" {tags['activation']} " in row and f"{trial['metrics']['test_acc']:.4f}" in row and " ok " in row
            for row in rows
            if row.split("│")[1].strip() == str(tags["lr"])
        )
    assert _headers(out, 1) == ["factor", "level", "mean test_acc", "± std", "trials"]  # main effects


@pytest.mark.parametrize("columns", [80, 100])
def test_sensitivity_table_keeps_numbers_whole(finished, monkeypatch, no_training, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = _again(finished, "lr-sensitivity")
    assert code == 0, err
    _nothing_cut(out, columns)
    trials = _trials(finished["lr-sensitivity"])
    for name in ("sgd", "adam"):
        best = max(t["metrics"]["val_acc"] for t in trials if t["optimizer"] == name)
        assert f"{best:.4f}" in _row(out, name)


@pytest.mark.parametrize("columns", [80, 100])
def test_report_and_check_keep_numbers_whole(finished, monkeypatch, tmp_path, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    baseline = finished["optimizers"]
    current = tmp_path / "current.jsonl"
    rows = [json.loads(line) for line in baseline.read_text().splitlines()]
    for row in rows:
        if row["type"] == "trial" and row["optimizer"] == "adam":
            row["metrics"]["test_acc"] -= 0.05
    current.write_text("".join(json.dumps(row) + "\n" for row in rows))

    code, out, err = _run("report", baseline)
    assert code == 0, err
    _nothing_cut(out, columns)
    for trial in _trials(baseline):
        row = _row(out, trial["optimizer"])
        assert f"{trial['metrics']['test_acc']:.4f}" in row and " ok " in row

    code, out, err = _run("check", baseline, current)
    assert code == 1, err  # adam got worse
    _nothing_cut(out, columns)
    for trial in _trials(baseline):
        row = _row(out, trial["optimizer"])
        now = trial["metrics"]["test_acc"] - (0.05 if trial["optimizer"] == "adam" else 0)
        assert f"{now:.4f}" in row and f"{now - trial['metrics']['test_acc']:+.4f}" in row
        assert (" worse " if trial["optimizer"] == "adam" else " ok ") in row
    if columns == 80:  # what is hidden is the start of the stated order
        text = " ".join(out.split())
        hidden = text.split("hidden to fit 80 columns: ")[1].split(" (a wider")[0].split(", ")
        assert hidden == list(report_results.CHECK_DROP_ORDER[: len(hidden)])


def test_narrow_tables_name_what_they_hide_in_the_stated_order(finished, monkeypatch, no_training):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = _again(finished, "sweep")
    assert code == 0, err
    text = " ".join(out.split())
    hidden = text.split("hidden to fit 80 columns: ")[1].split(" (a wider")[0].split(", ")
    order = ["grad first/last (start → end)", "val acc", "train acc", "diagnosis"]  # one seed: no Δ
    assert hidden and hidden == order[: len(hidden)]
    assert not set(hidden) & set(_headers(out))
    assert {"lr", "activation", "test acc", "status"} <= set(_headers(out))
    assert "--wide keeps every column" in text


def _first_table_cells(text: str) -> list[dict[str, str]]:
    """The body rows of the first table in ``text`` (printed whole, one line a row), header -> cell."""
    headers, rows = _headers(text), []
    for line in text.splitlines():
        if line.startswith("│"):
            rows.append(dict(zip(headers, (cell.strip() for cell in line.strip().strip("│").split("│")), strict=True)))
        elif line.startswith("└"):
            break
    return rows


def _record_fields(text: str, headers: list[str]) -> dict[str, list[str]]:
    """A record layout's values per header, in row order: ``  header: value`` or ``  header:`` and the value
    on the next line."""
    values: dict[str, list[str]] = {}
    pending = None
    for line in text.splitlines():
        field = re.fullmatch(r"  ([^:]+):(?: (.*))?", line)
        if field and field[1] in headers:
            if field[2] is None:
                pending = field[1]
            else:
                values.setdefault(field[1], []).append(field[2].strip())
        elif pending:
            values.setdefault(pending, []).append(line.strip())
            pending = None
    return values


@pytest.mark.parametrize("columns", [16, 20, 30])
def test_class_10_below_the_narrowest_table_every_kept_column_is_a_whole_line(
    finished, monkeypatch, tmp_path, no_training, columns
):
    path = finished["optimizers"]
    worse = tmp_path / "current.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        if row["type"] == "trial" and row["optimizer"] == "adam":
            row["metrics"]["test_acc"] -= 0.05
    worse.write_text("".join(json.dumps(row) + "\n" for row in rows))
    for argv, kept in [
        (("report", path), ["test acc", "diagnosis", "status"]),
        (("check", path, worse), ["metric", "current", "Δ mean", "verdict"]),
        ((*COMMANDS["optimizers"], *TINY, "--out", path, "--resume"), ["test acc", "status"]),  # a training table
    ]:
        monkeypatch.setenv("COLUMNS", "400")
        _, wide, _ = _run(*argv)
        monkeypatch.setenv("COLUMNS", str(columns))
        code, out, err = _run(*argv)
        assert code in (0, 1), err  # check: adam got worse
        assert all(len(line) <= columns for line in out.splitlines()), max(out.splitlines(), key=len)
        assert "…" not in out
        fields = _record_fields(out, kept)
        for header in kept:  # each value whole, on its own line, as the wide table shows it
            assert fields.get(header) == [r[header] for r in _first_table_cells(wide) if r[header]], (argv[0], header)
        assert "columns: one per line" in " ".join(out.split())  # the caption says why


# ---- --wide: every column, at the table's natural width


@pytest.mark.parametrize("name", ["optimizers", "sweep", "lr-sensitivity"])
def test_wide_keeps_every_column_of_training_tables(finished, monkeypatch, no_training, name):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = _again(finished, name, "--wide")
    assert code == 0, err
    assert "hidden to fit" not in out and "…" not in out
    expected = {
        "optimizers": ["optimizer", *report.comparison_columns().values()],
        "sweep": ["lr", "activation", *report.sweep_columns("test_acc").values()],
        "lr-sensitivity": ["optimizer", *report.sensitivity_columns("val_acc").values()],
    }[name]
    assert _headers(out) == expected
    assert max(len(line) for line in out.splitlines()) > 80  # wider than the terminal, not squeezed


def test_wide_keeps_every_column_of_report_and_check(finished, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = _run("report", finished["optimizers"], "--wide")
    assert code == 0, err
    assert _headers(out) == ["label", *report_results.RESULTS_COLUMNS.values()] and "hidden to fit" not in out
    code, out, err = _run("check", finished["optimizers"], finished["optimizers"], "--wide")
    assert code == 0, err
    assert _headers(out) == ["row", *report_results.CHECK_COLUMNS.values()] and "hidden to fit" not in out


# ---- --columns: exactly these (and the identifying column), in the table's order


@pytest.mark.parametrize(
    ("name", "chosen", "headers"),
    [
        ("optimizers", "status,test_acc", ["optimizer", "test acc", "status"]),
        ("optimizers", "samples/s,Train Loss", ["optimizer", "train loss", "samples/s"]),  # headers as printed
        ("sweep", "status,val_acc,grad", ["lr", "activation", "val acc", "grad first/last (start → end)", "status"]),
        ("lr-sensitivity", "curve,best_lr", ["optimizer", "best lr", "curve (grid, low → high lr)"]),
    ],
)
def test_columns_show_exactly_the_chosen_ones(finished, monkeypatch, no_training, name, chosen, headers):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = _again(finished, name, "--columns", chosen)
    assert code == 0, err
    assert _headers(out) == headers and "hidden to fit" not in out


def test_columns_of_results_commands(finished, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    path = finished["optimizers"]
    code, out, err = _run("report", path, "--columns", "best_epoch,lr")
    assert code == 0, err
    assert _headers(out) == ["label", "lr", "best epoch"]
    code, out, err = _run("check", path, path, "--columns", "verdict,delta")
    assert code == 0, err
    assert _headers(out) == ["row", "Δ mean", "verdict"]
    code, out, err = _run("profile", path, "--columns", "score,rho1")
    assert code == 0, err
    assert _headers(out) == ["optimizer", "ρ(1)", "score"]


# ---- a bad --columns: one line, exit 2, nothing trained or written


@pytest.mark.parametrize(
    "argv",
    [
        ["optimizers", "--optimizers", "sgd"],
        ["optimizers", "--optimizers", "sgd", "--tune"],
        ["regularizers", "--methods", "none"],
        ["sweep", "--vary", "lr=0.1,0.01"],
        ["lr-sensitivity", "--optimizers", "sgd"],
        ["tune", "--optimizers", "sgd", "--budget", "2"],
    ],
)
def test_unknown_column_of_a_training_command_exits_2_before_training(tmp_path, no_training, argv):
    out = tmp_path / "r.jsonl"
    code, stdout, err = _run(*argv, *TINY, "--out", out, "--columns", "bogus")
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and "unknown column bogus; valid: " in err
    assert not out.exists()


def test_unknown_column_of_a_suite_run_exits_2_before_training(tmp_path, no_training):
    suite = tmp_path / "s.toml"
    suite.write_text(
        '[model]\nhidden = [8]\n\n[train]\nepochs = 1\n\n[[experiment]]\nkind = "optimizers"\noptimizers = ["sgd"]\n'
    )
    out = tmp_path / "r.jsonl"
    code, stdout, err = _run("run", suite, "--out", out, "--columns", "lr,nope", "-q")
    assert code == 2 and stdout == "" and err.count("\n") == 1 and "unknown column nope; valid: lr," in err
    assert not out.exists()


@pytest.mark.parametrize("argv", [["report", "R"], ["check", "R", "R"], ["profile", "R"]])
def test_unknown_column_of_a_results_command_exits_2(finished, argv):
    argv = [finished["optimizers"] if a == "R" else a for a in argv]
    code, stdout, err = _run(*argv, "--columns", "verdict,loss")
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert "unknown column" in err and "valid: " in err


@pytest.mark.parametrize(
    ("given", "message"), [("test_acc,,status", "an empty column name"), ("status,Status", "status given twice")]
)
def test_malformed_columns_exit_2(tmp_path, no_training, given, message):
    out = tmp_path / "r.jsonl"
    code, stdout, err = _run("optimizers", "--optimizers", "sgd", *TINY, "--out", out, "--columns", given)
    assert code == 2 and stdout == "" and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_help_documents_wide_and_columns():
    for command in ("optimizers", "sweep", "run", "report", "check", "profile"):
        code, out, _ = _run(command, "--help")
        assert code == 0 and "--wide" in out and "--columns" in out, command
    code, out, _ = _run("diagnose", "--help")  # prints no table
    assert "--wide" not in out and "--columns" not in out


# ---- bars show goodness; the sort column is shown


@pytest.mark.parametrize("metric", ["val_loss", "val_acc", "train_loss"])
def test_sensitivity_bars_are_tallest_at_the_best_rate(monkeypatch, metric, run, tiny):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run(
        "lr-sensitivity",
        *tiny,
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--optimizers",
        "sgd",
        "--lr-min",
        "1e-3",
        "--lr-max",
        "1",
        "--points",
        "5",
        "--metric",
        metric,
    )
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("│ sgd"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    grid = [f"{lr:.3g}" for lr in np.logspace(-3, 0, 5)]
    curve = cells[-1]
    assert len(curve) == 5 and curve[grid.index(cells[1])] == "█", row
    assert f"the taller the bar, the better the {metric}" in " ".join(out.split())


@pytest.mark.parametrize(
    ("sort", "header"), [("test_loss", "test loss"), ("best_val_acc", "best val acc"), ("test_acc", None)]
)
def test_sweep_shows_the_column_it_sorts_by(monkeypatch, sort, header, run, tiny):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run(
        "sweep", *tiny, "--epochs", "2", "--batch-size", "20", "--vary", "lr=0.3,0.1,0.01", "--sort", sort
    )
    assert code == 0, err
    lines = out.splitlines()
    head = next(line for line in lines if line.startswith("┃ lr"))
    headers = [c.strip() for c in head.strip("┃").split("┃")]
    assert headers[1] == (header or "train acc")
    column = headers.index(header or "test acc")
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│ 0.")]
    values = [float(r[column]) for r in rows]
    assert len(values) == 3 and values == sorted(values, reverse=not sort.endswith("loss"))


# ---- comparison tables fit the terminal by dropping named columns, never by cutting numbers


@pytest.mark.parametrize("columns", [80, 100, 120])
@pytest.mark.parametrize(
    "argv",
    [
        ["optimizers", "--optimizers", "sgd,adam", "--seeds", "2"],
        ["regularizers", "--methods", "none,l2", "--seeds", "1"],
        ["run", "SUITE"],
    ],
)
def test_tables_drop_named_columns_instead_of_cutting(tmp_path, monkeypatch, columns, argv, run, tiny, tiny_suite):
    from dnnbench.render import tables as report

    monkeypatch.setenv("COLUMNS", str(columns))
    if argv[0] == "run":
        suite = tmp_path / "s.toml"
        suite.write_text(tiny_suite)
        argv = ["run", suite, "--out", tmp_path / "s.jsonl", "-q"]
    else:
        argv = [*argv, *tiny]
    code, out, err = run(*argv)
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines)
    text = " ".join(out.split())
    body = [line for line in lines if line.startswith("│")]
    assert body and all("…" not in line and line.endswith("│") for line in body)  # nothing elided or cut
    rows = [line for line in body if line.split("│")[1].strip()]  # a row's first line (not a wrapped one)
    assert rows and all(" ok " in row and "underfitting" in row for row in rows)  # status and diagnosis
    assert all(any(c.strip().startswith("0.") for c in row.split("│")) for row in rows)  # test acc
    if "hidden to fit" in text:
        hidden = text.split(f"hidden to fit {columns} columns: ")[1].split(" (a wider")[0].split(", ")
        assert hidden and all(h in report.COMPARISON_DROP_ORDER for h in hidden)
        for h in hidden:
            assert f"┃ {h} ┃" not in out
    else:
        assert columns >= 100


# ---- an early-stopped row shows its restored epoch


def test_the_table_shows_the_restored_epoch_of_an_early_stopping_row():
    from rich.console import Console

    from dnnbench.analysis import stats
    from dnnbench.config import Regularization, TrainConfig, TrialSpec
    from dnnbench.render import tables as report
    from dnnbench.results.rows import TrialResult

    def trial(method: str, seed: int, best: int, ran: int) -> TrialResult:
        reg = Regularization(early_stopping=method == "early_stopping")
        return TrialResult(
            id=f"{method}-{seed}",
            spec=TrialSpec(seed=seed, train=TrainConfig(epochs=20), reg=reg, tags=(("regularizer", method),)),
            status="ok",
            metrics={"val_acc": 0.9, "best_val_acc": 0.95, "test_acc": 0.9},
            history={},
            best_epoch=best,
            stopped_epoch=ran if ran < 20 else None,
            diverged_epoch=None,
            timing={"epochs_run": ran},
        )

    trials = [
        trial("none", 0, 12, 20),
        trial("none", 1, 14, 20),
        trial("early_stopping", 0, 6, 11),
        trial("early_stopping", 1, 8, 13),
    ]
    table = report.comparison_table(
        stats.summarize(trials, lambda t: t.tags["regularizer"]),
        title="t",
        label_header="regularizer",
        show_epochs=True,
    )
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "0.950±0.000 (13)" in next(line for line in text.splitlines() if "│ none" in line)
    assert "0.950±0.000 (7 of 12)" in next(line for line in text.splitlines() if "│ early_stopping" in line)
    assert "best val (epoch) of an early-stopping row: at the restored epoch (B of E run)" in text
