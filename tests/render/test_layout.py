"""The report layer's console and layout (``render/layout.py``): text from files and user code is
printed as text -- no control character, rich markup or emoji code acts on the terminal, and no
other output (HTML, SVG, CSV, markdown, errors, warnings, progress) carries one either."""

from __future__ import annotations

import contextlib
import io
import json
import re

from rich.table import Table
from rich.text import Text

from dnnbench.cli import main
from dnnbench.errors import InputError, printable
from dnnbench.render import layout
from dnnbench.render.progress import TrainingProgress

#: A window title, a cleared screen, a bell, NUL, a carriage return, a right-to-left override, markup, an emoji code.
HOSTILE = "x\x1b]0;pwned\x07\x1b[2J\x00\r\u202e[red]r[/] :smile: $a$"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
SHOWN = r"x\x1b]0;pwned\x07\x1b[2J\x00\x0d\u202e[red]r[/] :smile: $a$"
HEADER = {"type": "header", "schema": "dnnbench/1", "config": {}, "data": {"name": "synthetic"}}


def _run(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _row(seed: int, experiment: str) -> dict:
    return {
        "type": "trial",
        "id": f"t{seed}",
        "optimizer": "sgd",
        "hyperparams": {"learning_rate": 0.1},
        "seed": seed,
        "experiment": experiment,
        "config": {"optimizer": "sgd", "seed": seed, "tags": {"experiment": experiment}},
        "status": "ok",
        "metrics": {"train_loss": 0.5, "train_acc": 0.8, "val_acc": 0.7, "test_acc": 0.75, "best_val_acc": 0.7},
        "best_epoch": 2,
        "history": {"val_acc": [0.5, 0.7], "train_loss": [0.9, 0.5]},
        "diagnosis": {"label": "good fit", "evidence": {}, "remedies": []},
    }


def test_class_8_control_characters_never_reach_an_output(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [HEADER, _row(0, HOSTILE), _row(1, HOSTILE)]))
    outputs = {}
    for name, argv in {
        "report": ["report", path],
        "check": ["check", path, path],
        "check markdown": ["check", path, path, "--format", "markdown"],
        "export": ["export", path],
        "plot --terminal": ["plot", path, "--terminal"],
        "report --html": ["report", path, "--html", tmp_path / "r.html"],
        "plot svg": ["plot", path, "--out", tmp_path / "c.svg", "--metric", "val_acc"],
    }.items():
        code, out, err = _run(*argv)
        assert code == 0, (name, err)
        outputs[name] = out + err
    outputs["html page"] = (tmp_path / "r.html").read_text()
    outputs["svg"] = (tmp_path / "c.svg").read_text()
    for name, text in outputs.items():
        assert not RAW.search(text), (name, RAW.search(text))
    for name in ("check markdown", "export", "plot --terminal"):
        assert SHOWN in outputs[name], name
    for name in ("report", "check"):  # in a table, where a long label may fold over lines
        assert "pwned" in outputs[name] and "[red]r[/]" in outputs[name] and ":smile:" in outputs[name], name
    assert r"\x1b]0;pwned\x07" in outputs["html page"] and r"\x00" in outputs["svg"]

    # a suite run's table and an error line quoting a file
    suite = tmp_path / "s.toml"
    name = json.dumps("e\x1b[2J\x07")
    suite.write_text(
        '[data]\ndataset = "synthetic:train=100,test=20,features=4"\n[model]\nhidden = [4]\n[train]\nepochs = 1\n'
        f'batch_size = 20\n[[experiment]]\nname = {name}\nkind = "optimizers"\noptimizers = ["sgd"]\n'
    )
    code, out, err = _run("run", suite, "--out", tmp_path / "s.jsonl")
    assert code == 0 and not RAW.search(out + err) and r"e\x1b[2J\x07" in out, err
    assert str(InputError("a\x1b[2Jb\nc")) == r"a\x1b[2Jb\x0ac"  # every error message: one printable line
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(HEADER) + "\n" + json.dumps({**_row(0, "e"), "metrics": {"\x1b[2J": "high"}}) + "\n")
    code, _, err = _run("report", bad)  # the error names the file's key
    assert code == 2 and not RAW.search(err) and r"bad.jsonl:2: metrics.\x1b[2J: input should be" in err, err


def test_class_8_tables_progress_and_styles_keep_their_text():
    table = Table(title="t\x1b]0;x\x07")
    table.add_column("a\x00")
    table.add_row(Text.assemble(("ok", "green"), ("\x1b[2J", "red"), ("!", "bold")))
    cleaned = layout.clean(table)
    cell = cleaned.columns[0]._cells[0]
    assert [(cell.plain[s.start : s.end], s.style) for s in cell.spans] == [
        ("ok", "green"),
        (r"\x1b", "red"),  # the escape keeps the style of the character it shows
        ("[2J", "red"),
        ("!", "bold"),
    ]
    assert printable("tab\tand\nnewline") == "tab\tand\nnewline"  # a string (the title) is escaped as rendered
    out = io.StringIO()
    console = layout.SafeConsole(file=out, width=80, force_terminal=True, highlight=False)
    console.print(table, "[/] \x1b[2J", Text("\x07"))
    printed = out.getvalue()  # rich's own styles are ESC [ ... m; nothing else may act on the terminal
    assert not any(raw in printed for raw in ("\x07", "\x00", "\x1b]", "\x1b[2J"))
    assert r"ok\x1b" in Text.from_ansi(printed).plain and r"[/] \x1b[2J" in printed

    class Spec:  # what the progress bar reads of a group's first trial
        optimizer = "adam\x1b]0;pwned\x07"
        tags = (("experiment", "[/bold]\x1b[2J"),)

        class train:
            epochs = 2

    with TrainingProgress(None, enabled=True) as progress:
        progress.on_group(0, 1, [Spec()])
        description = progress._progress.tasks[0].description
    assert description == r"[1/1] adam\x1b]0;pwned\x07 [/bold]\x1b[2J ×1 trials"
