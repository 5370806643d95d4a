"""The executable store: a warm process trains with nothing built and the very same numbers; a
damaged entry is built again; the identity changes with what decides a program and not with a
trial's numbers; ``off`` writes nothing. Tiny synthetic data keeps each build to a second or two."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnnbench import optim
from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.train import engine, executables

MODEL = ModelConfig(hidden=(16,))
TRAIN = TrainConfig(epochs=2, batch_size=50)
GROUP = tuple(
    TrialSpec(optimizer="adam", hyperparams=(("learning_rate", lr),), seed=seed, model=MODEL, train=TRAIN)
    for lr, seed in ((0.01, 0), (0.003, 1))
)
PROGRAMS = 3  # weight init, optimizer init, epoch


@pytest.fixture(scope="module", autouse=True)
def without_jax_cache():
    """JAX's own compilation cache is decided at the process's first compile: decided here, off
    unless decided before, so that pointing the store at a folder below does not turn it on."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(engine.COMPILE_CACHE_ENV, "off")
        engine._use_compile_cache()


@pytest.fixture(scope="module")
def ds():
    return split(sources.load_synthetic(train=600, test=100, features=20, classes=3), 0.1)


def train(specs, ds, cache: Path | str, monkeypatch) -> tuple[engine.GroupOutput, int, int]:
    """Train ``specs`` as a fresh process would (nothing in memory) with the store at ``cache``:
    the output and how many executables it built and loaded."""
    monkeypatch.setenv(engine.COMPILE_CACHE_ENV, str(cache))
    engine.clear_cache()
    compiled, loaded = engine.compile_count, engine.loaded_count
    out = engine.train_group(specs, ds)
    return out, engine.compile_count - compiled, engine.loaded_count - loaded


def assert_identical(a: engine.GroupOutput, b: engine.GroupOutput) -> None:
    assert a.history.keys() == b.history.keys()
    for name, values in a.history.items():
        np.testing.assert_array_equal(b.history[name], values, err_msg=name)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def cold(ds, tmp_path_factory):
    """The group trained into an empty store: (its output, the cache folder)."""
    cache = tmp_path_factory.mktemp("cold")
    with pytest.MonkeyPatch.context() as monkeypatch:
        out, compiled, loaded = train(GROUP, ds, cache, monkeypatch)
    assert (compiled, loaded) == (PROGRAMS, 0)
    return out, cache


def entries(cache: Path) -> list[Path]:
    return sorted((cache / executables.FOLDER).glob("*.bin"))


def test_a_cold_run_stores_each_program_once_and_leaves_no_temporary_file(cold):
    _, cache = cold
    assert len(entries(cache)) == PROGRAMS
    assert [p.name for p in (cache / executables.FOLDER).iterdir() if p.suffix != ".bin"] == []


def test_a_warm_process_builds_nothing_and_trains_the_same_bits(cold, ds, tmp_path, monkeypatch):
    first, cache = cold
    shutil.copytree(cache, tmp_path / "cache")
    again, compiled, loaded = train(GROUP, ds, tmp_path / "cache", monkeypatch)
    assert (compiled, loaded) == (0, PROGRAMS)
    assert_identical(first, again)


_WARM_PROCESS = """
import json
import numpy as np, jax
from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.train import engine
GROUP = tuple(
    TrialSpec(optimizer="adam", hyperparams=(("learning_rate", lr),), seed=seed, model=ModelConfig(hidden=(16,)),
              train=TrainConfig(epochs=2, batch_size=50))
    for lr, seed in ((0.01, 0), (0.003, 1))
)
ds = split(sources.load_synthetic(train=600, test=100, features=20, classes=3), 0.1)
out = engine.train_group(GROUP, ds)
print(json.dumps({
    "compiled": engine.compile_count, "loaded": engine.loaded_count,
    "history": {k: v.tolist() for k, v in out.history.items()},
    "params": [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(out.params)],
}))
"""


def test_another_process_finds_the_same_entries(cold, tmp_path):
    """The identity has no per-process part (an address, a set's order): a new process loads all."""
    first, cache = cold
    shutil.copytree(cache, tmp_path / "cache")
    env = {**os.environ, engine.COMPILE_CACHE_ENV: str(tmp_path / "cache")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-c", _WARM_PROCESS],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    warm = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (warm["compiled"], warm["loaded"]) == (0, PROGRAMS)
    for name, values in first.history.items():
        np.testing.assert_array_equal(np.asarray(warm["history"][name], values.dtype), values, err_msg=name)
    for got, want in zip(warm["params"], jax.tree.leaves(first.params), strict=True):
        np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want))


def _process_run(cache: Path, **env: str) -> dict:
    """``_WARM_PROCESS`` in a new process with the compile cache at ``cache`` (and ``env``)."""
    full = {**os.environ, engine.COMPILE_CACHE_ENV: str(cache), **env}
    if "JAX_COMPILATION_CACHE_DIR" not in env:
        full.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", _WARM_PROCESS], env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_after_a_change_to_dnnbench_the_store_fills_with_programs_that_run(tmp_path):
    """A change to dnnbench's code gives every program a new identity while its executable stays
    the same: the store misses. Had JAX's own cache been on beside it, JAX would have loaded the
    executable from there, and stored again it lost its kernels (jaxlib 0.10.2: the next run's
    every trial failed with "Function ... not found"). Here the store alone keeps programs."""
    cache = tmp_path / "xla"
    cold = _process_run(cache)
    shutil.rmtree(cache / executables.FOLDER)  # what a new identity amounts to: no entry found
    refilled = _process_run(cache)
    warm = _process_run(cache)  # exit 0: its programs ran
    assert [p.name for p in cache.iterdir()] == [executables.FOLDER]  # nothing of JAX's cache
    assert (refilled["compiled"], refilled["loaded"]) == (PROGRAMS, 0)
    assert (warm["compiled"], warm["loaded"]) == (0, PROGRAMS)
    assert warm["history"] == refilled["history"] == cold["history"]
    assert warm["params"] == cold["params"]


def test_an_executable_jax_loaded_from_its_own_cache_is_not_stored(tmp_path):
    """Where the user turned JAX's cache on themselves, a program JAX loads from it runs, and the
    store keeps only the ones compiled afresh."""
    jax_cache = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    cache = tmp_path / "xla"
    cold = _process_run(cache, **jax_cache)
    assert len(list((tmp_path / "jax").iterdir())) >= PROGRAMS
    shutil.rmtree(cache / executables.FOLDER)
    from_jax = _process_run(cache, **jax_cache)
    assert not (cache / executables.FOLDER).exists() or entries(cache) == []
    again = _process_run(cache, **jax_cache)
    assert again["history"] == from_jax["history"] == cold["history"]
    assert again["params"] == cold["params"]


def test_a_damaged_entry_is_built_again_and_overwritten(cold, ds, tmp_path, monkeypatch):
    first, cache = cold
    shutil.copytree(cache, tmp_path / "cache")
    garbage, truncated, unloadable = entries(tmp_path / "cache")
    garbage.write_bytes(os.urandom(len(garbage.read_bytes())))
    truncated.write_bytes(truncated.read_bytes()[:1000])
    # whole and of this identity, but XLA cannot read the executable in it
    text, devices, payload, in_tree, out_tree = pickle.loads(unloadable.read_bytes()[executables._HEAD :])
    body = pickle.dumps((text, devices, payload[: len(payload) // 2], in_tree, out_tree))
    unloadable.write_bytes(executables._MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    again, compiled, loaded = train(GROUP, ds, tmp_path / "cache", monkeypatch)
    assert (compiled, loaded) == (PROGRAMS, 0)
    assert_identical(first, again)
    _, compiled, loaded = train(GROUP, ds, tmp_path / "cache", monkeypatch)  # whole again
    assert (compiled, loaded) == (0, PROGRAMS)


def test_an_entry_of_another_identity_under_the_name_is_not_run(cold, tmp_path):
    """A file copied under another entry's name (or a digest collision) names another program."""
    _, cache = cold
    a, b = entries(cache)[:2]
    found = (tmp_path / b.name, "the identity of b")
    shutil.copy(a, found[0])
    assert executables.load(found) is None


def test_other_numbers_load_the_same_programs(cold, ds, tmp_path, monkeypatch):
    first, cache = cold
    shutil.copytree(cache, tmp_path / "cache")
    other = tuple(dataclasses.replace(s, hyperparams=(("learning_rate", 0.05),), seed=s.seed + 7) for s in GROUP)
    out, compiled, loaded = train(other, ds, tmp_path / "cache", monkeypatch)
    assert (compiled, loaded) == (0, PROGRAMS)
    assert not np.allclose(out.history["train_loss"], first.history["train_loss"])
    assert len(entries(tmp_path / "cache")) == PROGRAMS


def identity(spec: TrialSpec) -> str | None:
    """The identity of an epoch program of ``spec``'s structure (the engine's keys hold it)."""
    return executables.identity(("epoch", spec.structure, 2), spec.optimizer)


def test_the_identity_changes_with_the_program_and_not_with_a_trials_numbers(monkeypatch):
    base = GROUP[0]
    same = identity(base)
    assert same is not None and same == identity(base)
    assert identity(dataclasses.replace(base, hyperparams=(("learning_rate", 0.5),), seed=9)) == same
    assert identity(dataclasses.replace(base, train=TrainConfig(epochs=2, batch_size=20))) != same
    assert identity(dataclasses.replace(base, model=ModelConfig(hidden=(16,), activation="tanh"))) != same
    assert identity(TrialSpec(optimizer="optax.adam", model=MODEL, train=TRAIN)) != same
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert identity(base) != same


def test_a_user_optimizer_file_is_known_by_its_content(tmp_path):
    source = Path(__file__).parents[2] / "examples" / "lion.py"
    path = tmp_path / "lion.py"
    path.write_text(source.read_text())
    spec = TrialSpec(optimizer=f"{path}:make_lion", model=MODEL, train=TRAIN)
    before = identity(spec)
    assert before is not None and identity(TrialSpec(optimizer=f"lookahead({path}:make_lion)")) is not None
    path.write_text(source.read_text() + "\n# changed\n")
    optim._resolve.cache_clear()  # a new process reads the file again; this one cached it
    changed = identity(spec)
    assert changed != before
    # a module beside it, which the file may import, is part of its code too
    (tmp_path / "helpers.py").write_text("SCALE = 2.0\n")
    assert identity(spec) != changed


def test_an_optimizer_whose_code_is_not_hashed_is_not_stored(ds, tmp_path, monkeypatch):
    module_adam = tuple(dataclasses.replace(s, optimizer="optax:adam") for s in GROUP)
    assert executables.optimizer_code("optax:adam") is None
    assert executables.optimizer_code("lookahead(optax:adam)") is None
    _, compiled, loaded = train(module_adam, ds, tmp_path, monkeypatch)
    assert (compiled, loaded) == (PROGRAMS, 0)
    assert len(entries(tmp_path)) == 1  # the weight init's: it has no optimizer in it
    assert executables.identity(("epoch", object()), None) is None  # an address in the key


def test_with_the_cache_off_a_runs_folder_is_shared_and_then_nothing_is(ds, tmp_path, monkeypatch):
    """``share_executables``: what one process of a run built, another loads (the same bits);
    once the run ends, the cache being off stores nothing again."""
    monkeypatch.setattr(engine, "_RUN_STORE", None)
    engine.share_executables(tmp_path / "run")
    first, compiled, loaded = train(GROUP, ds, "off", monkeypatch)
    assert (compiled, loaded) == (PROGRAMS, 0)
    assert len(entries(tmp_path / "run")) == PROGRAMS
    again, compiled, loaded = train(GROUP, ds, "off", monkeypatch)  # another process of the run
    assert (compiled, loaded) == (0, PROGRAMS)
    assert_identical(first, again)
    engine.share_executables(None)
    shutil.rmtree(tmp_path / "run")
    _, compiled, loaded = train(GROUP, ds, "off", monkeypatch)
    assert (compiled, loaded) == (PROGRAMS, 0)
    assert list(tmp_path.iterdir()) == []


def test_the_persistent_store_comes_before_a_runs_folder(ds, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "_RUN_STORE", None)
    engine.share_executables(tmp_path / "run")
    train(GROUP[:1], ds, tmp_path / "cache", monkeypatch)
    assert len(entries(tmp_path / "cache")) == PROGRAMS
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("setting", ["off", "store-off", "a-file"])
def test_off_writes_nothing_and_an_unusable_folder_is_skipped(ds, tmp_path, monkeypatch, setting):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = {"off": "off", "store-off": tmp_path / "cache", "a-file": blocker / "xla"}[setting]
    if setting == "store-off":
        monkeypatch.setenv(executables.ENV, "off")
    _, compiled, loaded = train(GROUP[:1], ds, cache, monkeypatch)
    assert (compiled, loaded) == (PROGRAMS, 0)
    assert [p.name for p in tmp_path.rglob("*")] == ["a-file"]


def test_writers_of_one_entry_at_once_leave_one_whole_entry(tmp_path):
    executable = jax.jit(lambda x: 2 * x).lower(jnp.arange(3.0)).compile()
    found = (tmp_path / "entry.bin", "one identity")
    writers = [threading.Thread(target=executables.save, args=(found, executable)) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert [p.name for p in tmp_path.iterdir()] == ["entry.bin"]
    np.testing.assert_array_equal(executables.load(found)(jnp.arange(3.0)), [0.0, 2.0, 4.0])
