"""Default learning rates: the signature's, else the documented one (with its source), else the
fallback -- and rows trained at the fallback are marked, with a caption that says how to tune."""

from __future__ import annotations

import inspect
import json
import textwrap

import optax
import optax.contrib
import pytest

from dnnbench import optim
from dnnbench.cli import main
from dnnbench.optim import catalogue, default_lrs

TINY = [
    "--dataset",
    "synthetic:train=200,test=50,features=8,classes=3",
    "--hidden",
    "8",
    "--epochs",
    "1",
    "--batch-size",
    "20",
    "--quiet",
]


@pytest.fixture(autouse=True)
def _fresh_specs():
    optim._resolve.cache_clear()  # a test's files must not be served from another test's cache
    yield
    optim._resolve.cache_clear()


def test_an_optimizer_without_a_default_gets_the_documented_rate_and_its_source():
    muon = optim.resolve_spec("optax.contrib.muon")
    assert muon.default_lr == 0.02 and not muon.lr_in_signature
    assert muon.origin["default_lr"] == 0.02
    assert muon.origin["default_lr_source"] == default_lrs.TABLE["optax.contrib.muon"].source
    described = optim.describe_spec("optax.adadelta")  # optax's default is None: no rate
    assert described["learning_rate"] == 1.0 and "Zeiler 2012" in described["lr_source"]
    assert optim.resolve("optax.adafactor")["learning_rate"] == 1e-2
    # a rate in the signature is kept, and said to come from there
    prodigy = optim.resolve_spec("optax.contrib.prodigy")
    assert prodigy.default_lr == 1.0 and prodigy.origin["default_lr_source"] == "signature"
    # the built-ins keep their own rates and their origin (their rows, ids and baseline unchanged)
    assert [optim.resolve_spec(n).default_lr for n in optim.RECIPE] == [0.1, 0.1, 0.01, 0.001, 0.001]
    assert optim.origin("adam") == {"spec": "adam", "kind": "builtin"}


def test_every_table_entry_names_an_optax_optimizer_without_a_default_rate():
    for name, entry in default_lrs.TABLE.items():
        contrib = name.startswith("optax.contrib.")
        module = optax.contrib if contrib else optax
        factory = getattr(module, name.removeprefix("optax.contrib." if contrib else "optax."))
        lr = inspect.signature(factory).parameters["learning_rate"].default
        assert lr is inspect.Parameter.empty or lr is None, (name, lr)  # never overrides a signature
        assert entry.value > 0 and len(entry.source) > 10, name


def test_no_catalogue_optimizer_that_runs_is_left_at_the_fallback():
    runnable, _ = optim.every()
    at_fallback = [s for s in runnable if optim.describe_spec(s)["lr_source"] == "fallback"]
    assert at_fallback == [], f"add a documented rate to dnnbench/optim/default_lrs.py for {at_fallback}"
    assert set(default_lrs.TABLE) <= set(catalogue.qualified_names())


def test_rows_at_the_fallback_are_marked_and_the_caption_says_to_tune(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    mine = tmp_path / "nolr.py"  # a factory with no default learning rate, in no table
    mine.write_text(
        textwrap.dedent("""
        import optax
        def make(learning_rate, b1=0.9):
            return optax.adam(learning_rate, b1=b1)
        """)
    )
    out = tmp_path / "r.jsonl"
    specs = f"{mine}:make,optax.lars,sgd"
    assert main(["optimizers", "--optimizers", specs, *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {r["optimizer"]: r for r in map(json.loads, out.read_text().splitlines()[1:4])}
    file_row, lars, sgd = rows[f"{mine}:make"], rows["optax.lars"], rows["sgd"]
    assert file_row["lr_fallback"] is True and file_row["hyperparams"]["learning_rate"] == optim.FALLBACK_LR
    assert file_row["optimizer_origin"]["default_lr_source"] == "fallback"
    assert lars["hyperparams"]["learning_rate"] == 0.12 and "lr_fallback" not in lars
    assert lars["optimizer_origin"]["default_lr_source"].startswith("SimCLR")
    assert "lr_fallback" not in sgd and sgd["optimizer_origin"] == {"spec": "sgd", "kind": "builtin"}
    assert "0.001†" in printed
    assert f"dnnbench tune --optimizers {mine}:make" in printed and "lr-sensitivity" in printed
    # the same factory at a given rate is not at the fallback
    assert optim.at_fallback(f"{mine}:make", 0.01) is False
    assert optim.at_fallback(f"{mine}:make", optim.FALLBACK_LR) is True
