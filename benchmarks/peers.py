"""dnnbench's peers, timed on the same arrays: Keras 3 (JAX backend), a PyTorch eager loop, dnnbench.

Used by ``benchmarks/speed.py --peers``; every function takes the data as ``Arrays``
(``x`` float32 ``(n, 784)``, ``y`` integer labels ``0..9``) and returns a JSON-ready dict.

- ``keras_suite``: the reference experiment of SEED.md, unchanged but for the optimizer, once per
  optimizer, one after another as a user would run it: build -> compile -> fit (validation on the
  test set every epoch, as dnnbench evaluates every epoch) -> evaluate -> predict.
- ``torch_loop``: the same MLP as a plain eager PyTorch loop (Adam, batch 100, test evaluation
  every epoch); ``{"skipped": ...}`` when torch is not installed.
- ``dnnbench_suite``: the same five optimizers x epochs through dnnbench's library
  (``dnnbench.run.runner.execute``), end to end, compile included.

Keras and torch are optional ``bench`` extras, imported only inside these functions. Keras must run
on JAX: ``KERAS_BACKEND`` is set to ``jax`` here before Keras is imported (an already-imported Keras
on another backend is reported, not silently used).
"""

from __future__ import annotations

import os
import resource
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

SIZES = (784, 500, 500, 10)
BATCH = 100
RECIPE = ("sgd", "momentum", "adagrad", "rmsprop", "adam")


class Arrays(NamedTuple):
    """The data every peer trains and tests on: ``x`` float32 ``(n, 784)``, ``y`` integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


KERAS_NOTES = (
    "loss: categorical_crossentropy on one-hot labels (keras.utils.to_categorical), exactly as in SEED.md",
    "fit(verbose=0): the progress bar is off (the reference's default verbose=1 would only add time to Keras)",
    "momentum: Keras SGD(momentum=0.9) is v = 0.9*v - lr*g; theta += v, not the recipe's EMA "
    "m = 0.9*m + 0.1*g; theta -= lr*m: at the same lr its steps are 1/(1-0.9) = 10x larger "
    "(lr=0.01 in Keras would be the recipe's rule at lr=0.1)",
    "adagrad: initial_accumulator_value=0 (Keras's default is 0.1) to match the recipe's v_0 = 0",
    "adam: Keras adds eps to sqrt(v) before the bias correction of the step size, optax after it",
    "wall_s covers build + compile + fit + evaluate + predict; fit_s is build + compile + fit only",
)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _steady(times: Sequence[float]) -> float:
    """The median of every epoch but the first (compile); the only epoch when there is one."""
    return float(np.median(times[1:])) if len(times) > 1 else float(times[0])


def _lr(name: str) -> dict[str, float]:
    from dnnbench.optim import DEFAULTS

    return DEFAULTS[name]


# --------------------------------------------------------------------------------------------- Keras


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if os.environ["KERAS_BACKEND"] != "jax":
        raise RuntimeError(f"KERAS_BACKEND={os.environ['KERAS_BACKEND']!r}; the comparison needs 'jax'")
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"keras was imported earlier on the {keras.backend.backend()!r} backend, not jax")
    return keras


def keras_optimizer(keras: Any, name: str) -> Any:
    """The Keras optimizer closest to dnnbench's ``name`` at dnnbench's default numbers."""
    hp = _lr(name)
    opt = keras.optimizers
    if name == "sgd":
        return opt.SGD(learning_rate=hp["learning_rate"])
    if name == "momentum":
        return opt.SGD(learning_rate=hp["learning_rate"], momentum=hp["momentum"])
    if name == "adagrad":
        return opt.Adagrad(learning_rate=hp["learning_rate"], initial_accumulator_value=0.0, epsilon=hp["eps"])
    if name == "rmsprop":
        return opt.RMSprop(learning_rate=hp["learning_rate"], rho=hp["decay"], epsilon=hp["eps"])
    if name == "adam":
        return opt.Adam(learning_rate=hp["learning_rate"], beta_1=hp["b1"], beta_2=hp["b2"], epsilon=hp["eps"])
    raise ValueError(f"no Keras counterpart for optimizer {name!r}")


def keras_suite(
    arrays: Arrays,
    optimizers: Sequence[str] = RECIPE,
    epochs: int = 20,
    batch_size: int = BATCH,
    seed: int = 0,
) -> dict[str, Any]:
    """SEED.md's Keras reference, once per optimizer, one after another; times per epoch and in all."""
    try:
        keras = _keras()
    except ImportError:
        return {"skipped": "keras not installed (pip install 'dnnbench[bench]')"}
    from keras.layers import Dense
    from keras.models import Sequential

    class EpochTimer(keras.callbacks.Callback):
        """Seconds of every epoch, training and the validation pass after it."""

        def on_train_begin(self, logs=None):
            self.times: list[float] = []
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now

    x_train, y_train, x_test, y_test = arrays
    n_classes = arrays.n_classes
    suite_start = time.perf_counter()
    yc_train = keras.utils.to_categorical(y_train, n_classes)
    yc_test = keras.utils.to_categorical(y_test, n_classes)
    runs: dict[str, dict[str, Any]] = {}
    for name in optimizers:
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        # ---- SEED.md's reference code, unchanged but for the optimizer (and verbose=0) ----
        model = Sequential()
        with warnings.catch_warnings():  # Keras 3 prefers an Input layer to input_dim; SEED.md uses input_dim
            warnings.simplefilter("ignore", UserWarning)
            model.add(Dense(input_dim=SIZES[0], units=SIZES[1], activation="relu"))
        model.add(Dense(units=SIZES[2], activation="relu"))
        model.add(Dense(units=n_classes, activation="softmax"))
        model.compile(loss="categorical_crossentropy", optimizer=keras_optimizer(keras, name), metrics=["accuracy"])
        timer = EpochTimer()
        history = model.fit(
            x_train,
            yc_train,
            batch_size=batch_size,
            epochs=epochs,
            validation_data=(x_test, yc_test),
            callbacks=[timer],
            verbose=0,
        )
        fit_s = time.perf_counter() - start
        score = model.evaluate(x_test, yc_test, verbose=0)
        result = model.predict(x_test, verbose=0)
        # ---------------------------------------------------------------------------------
        wall = time.perf_counter() - start
        runs[name] = {
            "first_epoch_s": timer.times[0],
            "epoch_s": _steady(timer.times),
            "epoch_times_s": timer.times,
            "fit_s": fit_s,
            "wall_s": wall,
            "test_acc": float(score[1]),
            "last_val_acc": float(history.history["val_accuracy"][-1]),
            "predict_shape": list(result.shape),
        }
        del model
    total = time.perf_counter() - suite_start
    return {
        "framework": f"keras {keras.__version__} (backend {keras.backend.backend()})",
        "optimizers": runs,
        "epochs": epochs,
        "batch_size": batch_size,
        "n_train": len(y_train),
        "suite_wall_s": total,
        "suite_fit_s": sum(r["fit_s"] for r in runs.values()),
        "epoch_s": float(np.median([r["epoch_s"] for r in runs.values()])),
        "notes": list(KERAS_NOTES),
    }


# --------------------------------------------------------------------------------------------- torch


def torch_loop(
    arrays: Arrays,
    epochs: int = 3,
    batch_size: int = BATCH,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, Any]:
    """A plain eager PyTorch loop of the same MLP with Adam; test evaluation after every epoch.

    ``threads`` defaults to ``os.cpu_count()`` (``torch.set_num_threads``, process-wide).
    """
    try:
        import torch
    except ImportError:
        return {"skipped": "torch not installed (pip install torch: CPU wheel)"}
    from torch import nn

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = arrays
    n_classes = arrays.n_classes
    hp = _lr("adam")
    start = time.perf_counter()
    model = nn.Sequential(
        nn.Linear(SIZES[0], SIZES[1]),
        nn.ReLU(),
        nn.Linear(SIZES[1], SIZES[2]),
        nn.ReLU(),
        nn.Linear(SIZES[2], n_classes),
    )
    opt = torch.optim.Adam(model.parameters(), lr=hp["learning_rate"], betas=(hp["b1"], hp["b2"]), eps=hp["eps"])
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(np.ascontiguousarray(x_train, np.float32)), torch.from_numpy(y_train.astype(np.int64))
    xs, ys = torch.from_numpy(np.ascontiguousarray(x_test, np.float32)), torch.from_numpy(y_test.astype(np.int64))
    steps = len(yt) // batch_size
    times: list[float] = []
    accs: list[float] = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(yt))
        for i in range(steps):
            idx = order[i * batch_size : (i + 1) * batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                int((model(xs[i : i + 2048]).argmax(1) == ys[i : i + 2048]).sum()) for i in range(0, len(ys), 2048)
            )
        accs.append(correct / len(ys))
        times.append(time.perf_counter() - t0)
    return {
        "framework": f"torch {torch.__version__} eager, {threads} threads",
        "threads": threads,
        "first_epoch_s": times[0],
        "epoch_s": _steady(times),
        "epoch_times_s": times,
        "wall_s": time.perf_counter() - start,
        "test_acc": accs[-1],
        "epochs": epochs,
        "n_train": len(yt),
    }


# ------------------------------------------------------------------------------------------ dnnbench


def dnnbench_suite(
    arrays: Arrays,
    optimizers: Sequence[str] = RECIPE,
    epochs: int = 20,
    batch_size: int = BATCH,
    val_split: float = 0.0,
    seed: int = 0,
) -> dict[str, Any]:
    """The five-optimizer reference suite through ``dnnbench.run.runner.execute``, compile included.

    ``val_split=0`` trains on exactly the samples Keras trains on (its reference has no validation
    set either; both evaluate the test set every epoch). dnnbench also evaluates the whole training
    set every epoch (clean train accuracy, which its diagnosis needs): extra forward passes Keras
    does not make (Keras reports a running average of the training batches instead).
    """
    from dnnbench import data as datamod
    from dnnbench.config import DataConfig, ModelConfig, TrainConfig, TrialSpec
    from dnnbench.run import runner
    from dnnbench.train import engine

    engine.clear_cache()  # compile included, as for a fresh process
    x_train, y_train, x_test, y_test = arrays
    n_classes = arrays.n_classes
    marks: dict[int, list[float]] = {}
    group_start: dict[int, float] = {}
    names: dict[int, str] = {}

    def on_group(g: int, _n: int, specs: Sequence[TrialSpec]) -> None:
        group_start[g] = time.perf_counter()
        names[g] = specs[0].optimizer
        marks[g] = [group_start[g]]

    def on_epoch(g: int, _epoch: int, _metrics: dict) -> None:
        marks[g].append(time.perf_counter())

    start = time.perf_counter()
    raw = datamod.sources.RawData(
        "synthetic",
        x_train,
        y_train.astype(np.int32),
        x_test,
        y_test.astype(np.int32),
        n_classes,
        None,
        "benchmarks/peers.py arrays",
    )
    data = datamod.split(raw, val_split)
    specs = tuple(
        TrialSpec(
            optimizer=name,
            seed=seed,
            model=ModelConfig(hidden=SIZES[1:-1]),
            train=TrainConfig(epochs=epochs, batch_size=batch_size),
        )
        for name in optimizers
    )
    run = runner.Run(specs=specs, data=DataConfig(dataset="synthetic", val_split=val_split))

    workers = runner.chunks_of(run, data)[1]
    results = runner.execute(run, data, on_epoch=on_epoch, on_group=on_group)
    wall = time.perf_counter() - start

    runs: dict[str, dict[str, Any]] = {}
    for g in sorted(group_start):
        res = next((r for r in results if r.optimizer == names[g]), None)
        times = list(np.diff(marks[g]))
        compile_s = float(res.timing.get("compile_s", float("nan"))) if res is not None else float("nan")
        runs[names[g]] = {
            "first_epoch_s": times[0],  # from the group's start: data to device, compile, init, epoch 1
            "epoch_s": _steady(times),
            "epoch_times_s": times,
            "compile_s": compile_s,
            "wall_s": marks[g][-1] - group_start[g],  # its start to its last epoch's end
            "test_acc": float(res.metrics.get("test_acc", float("nan"))) if res is not None else float("nan"),
            "status": res.status if res is not None else "?",
        }
    compile_total = float(np.nansum([r["compile_s"] for r in runs.values()]))
    # The compile work alone: in the suite it overlaps with training and its timings stretch with
    # the contention, so compile every program again, one after another, with nothing else running.
    engine.clear_cache()
    groups, _ = runner.chunks_of(run, data)
    alone_start = time.perf_counter()
    for members in groups:
        engine.prepare([specs[i] for i in members], data)
    compile_alone = time.perf_counter() - alone_start
    return {
        "framework": f"dnnbench (runner.execute, one compiled program per optimizer, {workers} at a time)",
        "workers": workers,
        "optimizers": runs,
        "epochs": epochs,
        "batch_size": batch_size,
        "val_split": val_split,
        "n_train": len(data.y_train),
        "suite_wall_s": wall,
        "compile_s": compile_total,
        "compile_share": compile_total / wall if wall > 0 else float("nan"),
        "compile_alone_s": compile_alone,
        "epoch_s": float(np.median([r["epoch_s"] for r in runs.values()])),
        "notes": [
            f"val_split={val_split:g}: {len(data.y_train)} training samples, as Keras; evaluation every epoch on "
            "train + val + test (forward passes), Keras validates on test only",
            "compile_s: the sum over optimizers of engine compile time (weights' init program shared); "
            f"programs compile on a few threads while others train ({workers} train at once), so the "
            "sum overstates compile's share of the wall time; compile_alone_s: the same programs "
            "compiled again one after another with nothing else running (the suite's compile work)",
        ],
    }
