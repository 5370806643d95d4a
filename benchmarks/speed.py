"""Speed of dnnbench's engine against the machine's own matmul peak, in one process.

    python benchmarks/speed.py [--epochs 3] [--trials 1,4] [--out benchmarks/speed.json]

On MNIST-sized synthetic data (60,000 x 784, 10 classes) and the reference MLP 784-500-500-10,
batch 100, it measures:
- the floor: XLA's float32 matmul throughput for the model's shapes (forward + backward of one
  minibatch as three matmuls per layer), the best the machine can do for this work;
- dnnbench's steady-state epoch time (training only, and with per-epoch evaluation), achieved
  GFLOP/s and % of the floor; compile time separately;
- trial scaling: 1, 4, ... vmapped trials of one structure, time per trial.
Results print as a rich table and are written as JSON. Keras / PyTorch comparisons are not here yet.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.table import Table

from dnnbench import data as datamod
from dnnbench import engine
from dnnbench.config import ModelConfig, TrainConfig, TrialSpec

SIZES = (784, 500, 500, 10)
BATCH = 100
N_TRAIN = 60_000


def flops_per_sample(sizes: tuple[int, ...] = SIZES) -> float:
    """Forward 2*MACs, backward 4*MACs: 6 FLOP per weight per sample."""
    return 6.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def matmul_floor(repeats: int = 20) -> float:
    """GFLOP/s of the three matmuls per layer of one training step (x@W, dz@W.T, x.T@dz)."""
    key = jax.random.key(0)
    mats = []
    for a, b in zip(SIZES[:-1], SIZES[1:], strict=True):
        k1, k2, k3, key = jax.random.split(key, 4)
        mats.append((jax.random.normal(k1, (BATCH, a)), jax.random.normal(k2, (a, b)), jax.random.normal(k3, (BATCH, b))))

    steps = 100

    @jax.jit
    def many(ms):
        # The carry feeds every matmul's input, so XLA can neither hoist nor drop any of them.
        def body(carry, _):
            total = carry
            for x, w, dz in ms:
                xc = x + carry
                total = total + 1e-12 * (jnp.sum(xc @ w) + jnp.sum((dz + carry) @ w.T) + jnp.sum(xc.T @ dz))
            return total, None
        return jax.lax.scan(body, jnp.float32(0.0), None, length=steps)[0]

    jax.block_until_ready(many(mats))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(many(mats))
        best = min(best, time.perf_counter() - start)
    return flops_per_sample() * BATCH * steps / best / 1e9


def dnnbench_epoch(trials: int, epochs: int, data: datamod.Dataset) -> dict[str, float]:
    specs = [TrialSpec(optimizer="adam", seed=s, model=ModelConfig(hidden=(500, 500)),
                       train=TrainConfig(epochs=epochs, batch_size=BATCH)) for s in range(trials)]
    engine.clear_cache()
    times: list[float] = []
    last = [time.perf_counter()]

    def on_epoch(epoch: int, _metrics: dict) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    start = time.perf_counter()
    out = engine.train_group(specs, data, on_epoch=lambda e, m: on_epoch(e, m))
    wall = time.perf_counter() - start
    del start
    steady = float(np.median(times[1:])) if len(times) > 1 else times[0]
    samples = (len(data.y_train) // BATCH) * BATCH * trials
    return {"trials": trials, "compile_s": out.compile_s, "epoch_s": steady, "epoch_s_per_trial": steady / trials,
            "train_gflops": flops_per_sample() * samples / steady / 1e9, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials", default="1,4")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/speed.json"))
    args = parser.parse_args()

    raw = datamod.sources.load_synthetic(train=N_TRAIN + 6_000, test=10_000, features=784, classes=10)
    data = datamod.split(raw, 0.1)  # 59,400 training samples, 6,600 validation, 10,000 test
    floor = matmul_floor()
    rows = [dnnbench_epoch(int(t), args.epochs, data) for t in args.trials.split(",")]
    for row in rows:
        row["pct_of_floor"] = 100.0 * row["train_gflops"] / floor
    result = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
              "platform": platform.platform(), "matmul_floor_gflops": floor,
              "floor_epoch_s": flops_per_sample() * (len(data.y_train) // BATCH) * BATCH / floor / 1e9,
              "flops_per_sample": flops_per_sample(), "rows": rows,
              "note": "epoch_s includes evaluation of train/val/test each epoch (forward passes)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    table = Table(title=f"dnnbench speed on {result['device']} ({result['backend']}): matmul floor {floor:.1f} GFLOP/s, "
                        f"{result['floor_epoch_s']:.2f} s/epoch", title_justify="left")
    for col in ("trials", "compile s", "epoch s (steady)", "s/epoch/trial", "GFLOP/s (train FLOPs)", "% of floor"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["trials"]), f"{r['compile_s']:.2f}", f"{r['epoch_s']:.2f}", f"{r['epoch_s_per_trial']:.2f}",
                      f"{r['train_gflops']:.1f}", f"{r['pct_of_floor']:.0f}%")
    table.caption = "epoch time includes per-epoch evaluation on train/val/test; % counts training FLOPs only"
    Console().print(table)


if __name__ == "__main__":
    main()
