"""Optimizer specs: user files, modules, plugins and optax names run like the built-ins.

Updates equal a NumPy reference of their rules; hyperparameters come from the factory's
signature and share one compiled program (numbers) or split it (static settings); schedules are
per-trial numbers; every bad spec is one line, exit 2, nothing written."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dnnbench import optim
from dnnbench.cli import main
from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.errors import InputError
from dnnbench.optim import schedules
from dnnbench.train import engine

ROOT = Path(__file__).resolve().parents[2]
LION_FILE = ROOT / "examples" / "lion.py"
LION = f"{LION_FILE}:make_lion"
TINY = [
    "--dataset",
    "synthetic:train=200,test=50,features=8,classes=3",
    "--hidden",
    "8",
    "--epochs",
    "2",
    "--batch-size",
    "20",
    "--quiet",
]
F32 = np.float32


@pytest.fixture(autouse=True)
def _fresh_specs():
    optim._resolve.cache_clear()  # a test's files must not be served from another test's cache
    yield
    optim._resolve.cache_clear()


@pytest.fixture(scope="module")
def ds():
    return split(sources.load_synthetic(train=200, test=50, features=8, classes=3), 0.1)


def _params():
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((3, 4)).astype(F32), "b": rng.standard_normal(4).astype(F32)}


def _grads(steps: int = 10):
    rng = np.random.default_rng(1)
    return [
        {"w": rng.standard_normal((3, 4)).astype(F32), "b": rng.standard_normal(4).astype(F32)} for _ in range(steps)
    ]


def _run(tx, params, grads):
    params = jax.tree.map(jnp.asarray, params)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, params)
        params = optax.apply_updates(params, updates)
    return jax.tree.map(np.asarray, params)


def ref_lion(theta, grads, learning_rate, b1, b2, weight_decay):
    m = np.zeros_like(theta)
    for g in grads:
        c = F32(b1) * m + F32(1 - b1) * g
        theta = theta - F32(learning_rate) * (np.sign(c) + F32(weight_decay) * theta)
        m = F32(b2) * m + F32(1 - b2) * g
    return theta


def ref_adamax(theta, grads, learning_rate, b1, b2, eps):
    m, u = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, 1):
        m = F32(b1) * m + F32(1 - b1) * g
        u = np.maximum(F32(b2) * u, np.abs(g) + F32(eps))  # optax: eps inside the max
        theta = theta - F32(learning_rate) * (m / F32(1 - b1**t)) / u
    return theta


@pytest.mark.parametrize(
    "spec, ref, values",
    [
        (LION, ref_lion, {"learning_rate": 0.01, "b1": 0.8, "b2": 0.95, "weight_decay": 0.1}),
        ("lion", ref_lion, {"learning_rate": 0.01, "b1": 0.8, "b2": 0.95, "weight_decay": 0.1}),
        ("optax.lion", ref_lion, {"learning_rate": 0.003, "b1": 0.9, "b2": 0.99, "weight_decay": 0.0}),
        ("adamax", ref_adamax, {"learning_rate": 0.02, "b1": 0.7, "b2": 0.9, "eps": 0.1}),
    ],
)
def test_user_file_and_catalogue_updates_equal_numpy_reference(spec, ref, values):
    lr = values.pop("learning_rate")
    params, grads = _params(), _grads()
    got = _run(optim.build(spec, lr, **values), params, grads)
    for leaf in params:
        np.testing.assert_allclose(
            got[leaf],
            ref(params[leaf], [g[leaf] for g in grads], lr, **values),
            rtol=1e-5,
            atol=1e-6,
            err_msg=f"{spec} {leaf}",
        )


def test_numbers_live_in_the_state_so_one_update_function_serves_any_values():
    tx = optim.build(LION, 0.01)
    params, grads = _params(), _grads(3)
    state = tx.init(jax.tree.map(jnp.asarray, params))
    assert set(state.hyperparams) == {"learning_rate", "b1", "b2", "weight_decay"}
    # placing other numbers in the state is the same as building with them
    state = state._replace(
        hyperparams={**state.hyperparams, "learning_rate": jnp.float32(0.05), "b1": jnp.float32(0.5)}
    )
    p = jax.tree.map(jnp.asarray, params)
    for g in grads:
        updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, p)
        p = optax.apply_updates(p, updates)
    want = _run(optim.build(LION, 0.05, b1=0.5), params, grads)
    for leaf in params:
        np.testing.assert_allclose(np.asarray(p[leaf]), want[leaf], rtol=1e-6)


def test_hyperparameters_come_from_the_signature():
    lion = optim.resolve_spec(LION)
    assert lion.kind == "file" and lion.default_lr == 1e-4 and lion.lr_in_signature
    assert {p.name: p.kind for p in lion.params} == {"b1": "number", "b2": "number", "weight_decay": "number"}
    assert optim.resolve(LION) == {"learning_rate": 1e-4, "b1": 0.9, "b2": 0.99, "weight_decay": 0.0}
    catalogue = optim.resolve_spec("lion")  # optax.lion has no default learning rate: the table's documented one
    assert catalogue.default_lr == optim.default_lrs.TABLE["optax.lion"].value and not catalogue.lr_in_signature
    ada = optim.resolve_spec("adafactor")
    kinds = {p.name: p.kind for p in ada.params}
    assert kinds["min_dim_size_to_factor"] == "static" and kinds["decay_rate"] == "number"
    assert kinds["multiply_by_parameter_scale"] == "static"
    # optax.<name> is optax's own even where a built-in shares the name
    assert optim.resolve_spec("optax.adam").kind == "optax" and optim.resolve_spec("adam").kind == "builtin"
    assert optim.resolve("optax.adam")["eps"] == 1e-8 and optim.resolve("adam")["eps"] == 1e-7


def _specs(optimizer, values_list, **fields):
    return [
        TrialSpec(
            optimizer=optimizer,
            hyperparams=tuple(v.items()),
            seed=i,
            model=ModelConfig(hidden=(8,)),
            train=TrainConfig(epochs=2, batch_size=20),
            **fields,
        )
        for i, v in enumerate(values_list)
    ]


def test_user_optimizer_group_is_one_program_equal_to_its_trials_alone(ds):
    group = _specs(LION, [{"learning_rate": 0.01}, {"learning_rate": 0.003, "b1": 0.5}, {"weight_decay": 0.1}])
    assert len({s.structure for s in group}) == 1
    before = engine.compile_count
    together = engine.train_group(group, ds)
    compiled = engine.compile_count - before
    for i, one in enumerate(group):
        alone = engine.train_group([one], ds)
        np.testing.assert_allclose(
            alone.history["train_loss"][:, 0], together.history["train_loss"][:, i], rtol=1e-5, atol=1e-6
        )
    again = engine.compile_count
    engine.train_group([dataclasses.replace(s, hyperparams=(("learning_rate", 0.02),)) for s in group], ds)
    assert engine.compile_count == again, "new numbers must not recompile"
    assert compiled >= 1


def test_static_settings_split_programs_and_optax_static_cases_run(ds):
    a, b = _specs("adafactor", [{"min_dim_size_to_factor": 4}, {"min_dim_size_to_factor": 128}])
    assert a.structure != b.structure  # an int that changes the program
    c, d = _specs("adafactor", [{"decay_rate": 0.8}, {"decay_rate": 0.5}])
    assert c.structure == d.structure  # a number
    out = engine.train_group([a], ds)
    assert np.isfinite(out.history["train_loss"]).all()


def test_schedule_factor_matches_its_formula():
    S, T = 10, 100

    def f(kind, t, **over):
        sched = optim.Schedule(kind=kind, **over)
        return float(schedules.factor(kind, t, {k: jnp.float32(v) for k, v in sched.numbers.items()}, S, T))

    W = 20  # warmup 0.2 of 100 updates
    for t in (0, 9, 19):
        assert f("warmup_cosine", t, warmup=0.2) == pytest.approx((t + 1) / W, rel=1e-6)
    for t in (20, 50, 99):
        p = (t + 1 - W) / (T - W)
        assert f("warmup_cosine", t, warmup=0.2) == pytest.approx(0.5 * (1 + math.cos(math.pi * p)), abs=1e-6)
        assert f("linear", t, warmup=0.2, decay_to=0.1) == pytest.approx(1 - 0.9 * p, abs=1e-6)
    assert f("exponential", 99) == pytest.approx(0.01, rel=1e-5)  # its default final factor
    assert f("step", 29, step_every=3, step_factor=0.5) == 1.0  # 30 updates = 3 epochs: the first step
    assert f("step", 30, step_every=3, step_factor=0.5) == pytest.approx(0.5)
    assert f("step", 60, step_every=3, step_factor=0.5) == pytest.approx(0.25)
    assert f("step", 34) == pytest.approx(0.1)  # default: a step every third of training
    assert f("constant", 57) == 1.0
    assert f("constant", 4, warmup=1, warmup_epochs=True) == pytest.approx(0.5)  # 1 epoch = 10 updates


def test_warmup_cosine_lr_history_rises_then_falls_and_warmups_share_a_program(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    argv = [
        "optimizers",
        "--optimizers",
        "adam",
        "--schedule",
        "warmup_cosine",
        "--warmup",
        "0.2",
        *TINY,
        "--epochs",
        "10",
        "--out",
        str(out),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    row = [json.loads(line) for line in out.read_text().splitlines()][1]
    lr = row["history"]["lr"]
    assert len(lr) == 10 and lr[0] < lr[1] and lr[1] == pytest.approx(1e-3, rel=1e-6)
    assert all(later < earlier for earlier, later in zip(lr[1:], lr[2:], strict=False))
    assert row["config"]["schedule"]["kind"] == "warmup_cosine" and row["config"]["schedule"]["warmup"] == 0.2
    sweep = tmp_path / "s.jsonl"
    assert (
        main(
            [
                "sweep",
                "--vary",
                "warmup=0,0.1,0.3",
                "--schedule",
                "cosine",
                *TINY,
                "--workers",
                "1",
                "--out",
                str(sweep),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in sweep.read_text().splitlines()[1:-1]]
    assert [r["timing"]["executable_trials"] for r in rows] == [3, 3, 3]
    assert len({r["id"] for r in rows}) == 3


def test_rows_record_where_the_optimizer_came_from_and_resume_refuses_a_changed_file(tmp_path, capsys):
    mine = tmp_path / "my_opt.py"
    mine.write_text(LION_FILE.read_text())
    out = tmp_path / "r.jsonl"
    argv = ["optimizers", "--optimizers", f"adam,{mine}:make_lion,lion", *TINY, "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()][1:4]
    assert [r["optimizer_origin"]["kind"] for r in rows] == ["builtin", "file", "optax"]
    assert rows[1]["optimizer_origin"]["sha256"] == optim.user.sha256(mine)
    assert rows[1]["hyperparams"] == {"learning_rate": 1e-4, "b1": 0.9, "b2": 0.99, "weight_decay": 0.0}
    assert rows[2]["optimizer_origin"]["version"] == optax.__version__
    capsys.readouterr()
    mine.write_text(mine.read_text() + "\n# changed\n")
    optim._resolve.cache_clear()
    before = out.read_text()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "changed" in err and str(mine) in err and len(err.splitlines()) == 1
    assert out.read_text() == before


def test_hp_sets_every_optimizer_that_has_it_or_one(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert (
        main(
            [
                "optimizers",
                "--optimizers",
                f"adam,{LION},sgd",
                "--hp",
                "b1=0.5",
                "--hp",
                "adam.eps=1e-3",
                *TINY,
                "--out",
                str(out),
            ]
        )
        == 0
    ), capsys.readouterr().err
    rows = {r["optimizer"]: r for r in map(json.loads, out.read_text().splitlines()[1:4])}
    assert rows["adam"]["hyperparams"]["b1"] == 0.5 and rows["adam"]["hyperparams"]["eps"] == 1e-3
    assert rows[LION]["hyperparams"]["b1"] == 0.5 and "b1" not in rows["sgd"]["hyperparams"]


def test_sweep_of_one_optimizer_hyperparameter_is_one_program(tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    assert main(["sweep", "--vary", "adam.b1=0.5,0.9,0.99", *TINY, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()[1:-1]]
    assert [r["hyperparams"]["b1"] for r in rows] == [0.5, 0.9, 0.99]
    assert [r["timing"]["executable_trials"] for r in rows] == [3, 3, 3]


def test_lr_sensitivity_of_a_user_optimizer_is_one_program_per_grid(tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    assert (
        main(
            [
                "lr-sensitivity",
                "--optimizers",
                f"{LION},lion",
                "--points",
                "4",
                "--lr-min",
                "1e-4",
                "--lr-max",
                "1e-1",
                *TINY,
                "--workers",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    ), capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert len(rows) == 8 and {r["timing"]["executable_trials"] for r in rows} == {4}


def test_plugin_entry_point_is_found_listed_and_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "fancy_opt.py").write_text(LION_FILE.read_text())
    dist = tmp_path / "fancy_opt-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fancy-opt\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text("[dnnbench.optimizers]\nfancy_lion = fancy_opt:make_lion\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["optimizers", "--list"]) == 0
    assert "fancy_lion" in capsys.readouterr().out
    out = tmp_path / "r.jsonl"
    assert main(["optimizers", "--optimizers", "fancy_lion", *TINY, "--out", str(out)]) == 0
    row = json.loads(out.read_text().splitlines()[1])
    assert row["optimizer_origin"]["kind"] == "plugin" and row["optimizer_origin"]["version"] == "1.2"
    sys.modules.pop("fancy_opt", None)


def test_list_all_shows_catalogue_with_defaults_and_refusals(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["optimizers", "--list", "--all"]) == 0
    out = capsys.readouterr().out
    for name in (
        "optax.lion",
        "optax.lamb",
        "optax.nadam",
        "optax.yogi",
        "optax.adabelief",
        "optax.radam",
        "optax.novograd",
        "optax.sm3",
        "optax.adafactor",
        "optax.contrib.prodigy",
    ):
        assert name in out
    assert "min_dim_size_to_factor*=128" in out and "0.0003: Chen et al. 2023" in out
    # polyak_sgd runs (it is given the loss); sam and dpsgd say why they cannot
    assert "optax.polyak_sgd" in out and "optax.contrib.sam" in out and "clips each example's gradient" in out


# Every bad spec: one line on stderr naming the problem, exit 2, no traceback, nothing written.
def _bad_files(tmp: Path) -> dict[str, Path]:
    files = {
        "syntax": "def make(learning_rate=0.1):\n    return (\n",
        "importerr": "import numpy\nimport not_a_module_anywhere\n",
        "raises": (
            "import optax\ndef make(learning_rate=0.1, b=0.5):\n    if b > 0.3:\n"
            "        raise ValueError('b must be at most 0.3')\n    return optax.sgd(learning_rate)\n"
        ),
        "notx": "def make(learning_rate=0.1):\n    return 42\n",
        "nolr": "import optax\ndef make(step=0.1):\n    return optax.sgd(step)\n",
        "needs": "import optax\ndef make(learning_rate=0.1, *, rho):\n    return optax.sgd(learning_rate)\n",
    }
    out = {}
    for name, text in files.items():
        out[name] = tmp / f"{name}.py"
        out[name].write_text(textwrap.dedent(text))
    return out


BAD_SPECS = {
    "file not found": ("{tmp}/absent.py:make", [], ["absent.py", "not found"]),
    "syntax error": ("{syntax}:make", [], ["syntax.py:2", "syntax error"]),
    "import error": ("{importerr}:make", [], ["importerr.py:2", "ModuleNotFoundError", "not_a_module_anywhere"]),
    "attribute missing": ("{raises}:nope", [], ["no function 'nope'", "make"]),
    "factory raises": ("{raises}:make", ["--hp", "b=0.9"], ["raised ValueError", "b must be at most 0.3"]),
    "not a transformation": ("{notx}:make", [], ["returned int", "GradientTransformation"]),
    "no learning_rate": ("{nolr}:make", [], ["learning_rate", "step"]),
    "required parameter": ("{needs}:make", [], ["needs a value for 'rho'"]),
    "unknown hyperparameter": ("adam", ["--hp", "adam.beta1=0.9"], ["beta1", "b1", "b2", "eps"]),
    "hyperparameter nobody has": ("adam,sgd", ["--hp", "rho=0.9"], ["rho", "none of adam, sgd"]),
    "non-numeric value": ("lion", ["--hp", "b1=fast"], ["b1", "must be a number", "fast"]),
    "bool setting": ("optax.rmsprop", ["--hp", "centered=maybe"], ["centered", "true or false", "maybe"]),
    "out of range": ("adam", ["--hp", "b1=1.5"], ["b1", "[0, 1)", "1.5"]),
    "float32 overflow": ("adam", ["--hp", "eps=1e308"], ["eps", "float32", "1e308"]),
    "unknown schedule": ("adam", ["--schedule", "triangle"], ["schedule", "triangle", "warmup_cosine"]),
    "warmup out of range": ("adam", ["--schedule", "cosine", "--warmup", "1.5"], ["warmup", "1.5"]),
    "warmup text": ("adam", ["--warmup", "soon"], ["--warmup", "soon", "2e"]),
    "warmup too long": ("adam", ["--warmup", "5e"], ["warmup of 5 epochs", "2 epochs"]),
    "decay out of range": ("adam", ["--schedule", "linear", "--decay-to", "2"], ["decay_to", "2"]),
    "per-example gradients": ("optax.contrib.dpsgd", [], ["optax.contrib.dpsgd", "per-example gradients"]),
    "wraps an optimizer": (
        "optax.contrib.schedule_free",
        [],
        ["wraps another optimizer", "schedule_free(<optimizer>)"],
    ),
    "unknown wrapper": ("warmup(adam)", [], ["'warmup' is not a wrapper", "lookahead"]),
    "wrapper setting": ("lookahead(adam)", ["--hp", "lookahead.period=2"], ["lookahead.sync_period"]),
    "unknown optax name": ("optax.not_there", [], ["optax", "not_there", "--list --all"]),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_optimizer_spec_is_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    spec, extra, words = BAD_SPECS[case]
    spec = spec.format(tmp=tmp_path, **_bad_files(tmp_path))
    out = tmp_path / "out" / "r.jsonl"
    code = main(["optimizers", "--optimizers", spec, *extra, *TINY, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not out.exists() and not out.parent.exists()


def test_a_diverging_user_optimizer_is_a_result_and_its_neighbours_are_untouched(tmp_path, capsys):
    boom = tmp_path / "boom.py"
    boom.write_text(
        "import optax, jax.numpy as jnp\n"
        "def make(learning_rate=0.1):\n"
        "    return optax.chain(optax.scale(jnp.inf), optax.scale_by_learning_rate(learning_rate))\n"
    )
    out = tmp_path / "r.jsonl"
    code = main(["optimizers", "--optimizers", f"adam,{boom}:make", *TINY, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = {r["optimizer"]: r for r in map(json.loads, out.read_text().splitlines()[1:3])}
    assert rows[f"{boom}:make"]["status"] == "diverged" and rows["adam"]["status"] == "ok"
    alone = tmp_path / "alone.jsonl"
    assert main(["optimizers", "--optimizers", "adam", *TINY, "--out", str(alone)]) == 0
    assert json.loads(alone.read_text().splitlines()[1])["metrics"] == rows["adam"]["metrics"]


def test_python_api_errors_are_input_errors():
    with pytest.raises(InputError, match="has no hyperparameter 'beta'"):
        optim.resolve("lion", beta=0.9)
    with pytest.raises(InputError, match="learning rate"):
        optim.resolve(LION, 0.0)
