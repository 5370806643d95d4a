"""Speed of dnnbench's engine against the machine's own matmul peak, in one process.

    python benchmarks/speed.py [--epochs 3] [--trials 1,4] [--out benchmarks/speed.json]
                               [--peers] [--suite] [--suite-epochs 20] [--quick]

On MNIST-sized synthetic data (60,000 x 784, 10 classes) and the reference MLP 784-500-500-10,
batch 100, it measures:
- the floor: XLA's float32 matmul throughput for the model's shapes (forward + backward of one
  minibatch as three matmuls per layer), the best the machine can do for this work;
- dnnbench's steady-state epoch time (training only, and with per-epoch evaluation), achieved
  GFLOP/s and % of the floor; compile time separately;
- trial scaling: 1, 4, ... vmapped trials of one structure, time per trial.
With ``--peers`` (``benchmarks/peers.py``; needs the ``bench`` extras) also, on the same data:
- the five-optimizer x ``--suite-epochs`` reference suite through dnnbench's library, end to end
  (compile included; ``--suite`` runs only this one);
- the same suite with Keras 3 (JAX backend) running SEED.md's reference code, one optimizer after
  another; a plain eager PyTorch loop (Adam) when torch is installed;
- the ratios against dnnbench and the peak memory (RSS) of the process.
``--quick`` is a smoke configuration (2,000 samples, 2 epochs): it checks the wiring, measures nothing.
Results print as rich tables and are written as JSON. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dnnbench import data as datamod
from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.train import engine

SIZES = (784, 500, 500, 10)
BATCH = 100
N_TRAIN = 60_000


def flops_per_sample(sizes: tuple[int, ...] = SIZES) -> float:
    """Forward 2*MACs, backward 4*MACs: 6 FLOP per weight per sample."""
    return 6.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def matmul_floor(repeats: int = 20, streams: int = 1) -> float:
    """GFLOP/s of the three matmuls per layer of one training step (x@W, dz@W.T, x.T@dz), the best
    of ``repeats``, with ``streams`` copies of the program running at once on as many threads (as
    the runner trains several programs at once: one batch-100 stream leaves cores idle)."""
    key = jax.random.key(0)
    mats = []
    for a, b in zip(SIZES[:-1], SIZES[1:], strict=True):
        k1, k2, k3, key = jax.random.split(key, 4)
        mats.append(
            (jax.random.normal(k1, (BATCH, a)), jax.random.normal(k2, (a, b)), jax.random.normal(k3, (BATCH, b)))
        )

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
    with ThreadPoolExecutor(max_workers=streams) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(lambda _: jax.block_until_ready(many(mats)), range(streams)))
            best = min(best, time.perf_counter() - start)
    return streams * flops_per_sample() * BATCH * steps / best / 1e9


def adam_trials(trials: int, epochs: int) -> tuple[TrialSpec, ...]:
    """``trials`` seeds of the recipe's MLP under Adam: the trials both timings run."""
    return tuple(
        TrialSpec(
            optimizer="adam",
            seed=s,
            model=ModelConfig(hidden=(500, 500)),
            train=TrainConfig(epochs=epochs, batch_size=BATCH),
        )
        for s in range(trials)
    )


def dnnbench_epoch(trials: int, epochs: int, data: datamod.Dataset) -> dict[str, float]:
    specs = adam_trials(trials, epochs)
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
    import resource

    # Peak resident memory of the process so far (rows run in increasing trial counts, so each
    # row's figure is the high-water mark of its own run or an earlier, smaller one).
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "trials": trials,
        "compile_s": out.compile_s,
        "epoch_s": steady,
        "epoch_s_per_trial": steady / trials,
        "train_gflops": flops_per_sample() * samples / steady / 1e9,
        "wall_s": wall,
        "peak_rss_mb": peak_mb,
    }


def runner_epoch(trials: int, epochs: int, data: datamod.Dataset) -> dict[str, float]:
    """The same trials through ``runner.execute`` as a user's command runs them: chunked to the
    memory budget, split for the workers, several programs at once. Timed on a second, compiled
    run: wall time per trial-epoch (evaluation, initialisation and result rows included)."""
    from dnnbench.run import runner

    run = runner.Run(adam_trials(trials, epochs))
    chunks, workers = runner.chunks_of(run, data)
    runner.execute(run, data)  # compiles
    start = time.perf_counter()
    runner.execute(run, data)
    wall = time.perf_counter() - start
    samples = (len(data.y_train) // BATCH) * BATCH * trials * epochs
    return {
        "trials": trials,
        "programs": len(chunks),
        "workers": workers,
        "wall_s": wall,
        "epoch_s_per_trial": wall / (trials * epochs),
        "train_gflops": flops_per_sample() * samples / wall / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials", default="1,4")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/speed.json"))
    # --- peers (benchmarks/peers.py) ---
    parser.add_argument("--peers", action="store_true", help="also the dnnbench suite, Keras 3 (JAX) and PyTorch")
    parser.add_argument("--suite", action="store_true", help="also the dnnbench five-optimizer suite (no peers)")
    parser.add_argument("--suite-epochs", type=int, default=20, help="epochs of each optimizer in the suites")
    parser.add_argument("--torch-epochs", type=int, default=3, help="epochs of the PyTorch loop")
    parser.add_argument("--quick", action="store_true", help="tiny smoke configuration: 2,000 samples, 2 epochs")
    args = parser.parse_args()
    # Cold compiles, as a first run pays them: the persistent compilation cache would hide them.
    os.environ.setdefault("DNNBENCH_COMPILE_CACHE", "off")
    n_train, n_test = N_TRAIN, 10_000
    if args.quick:
        n_train, n_test = 2_000, 500
        args.epochs, args.trials, args.suite_epochs, args.torch_epochs = 2, "1", 2, 2
    load_start = os.getloadavg()
    # --- end peers ---

    raw = datamod.sources.load_synthetic(train=n_train + n_train // 10, test=n_test, features=784, classes=10)
    data = datamod.split(raw, 0.1)  # 59,400 training samples, 6,600 validation, 10,000 test
    # The floor is the machine's best for this work: one stream, or as many as the runner trains
    # at once (engine.concurrency()), whichever is faster.
    streams = engine.concurrency()
    floor_one = matmul_floor(3 if args.quick else 20)
    floor_many = matmul_floor(3 if args.quick else 10, streams) if streams > 1 else floor_one
    floor = max(floor_one, floor_many)
    rows = [dnnbench_epoch(int(t), args.epochs, data) for t in args.trials.split(",")]
    through_runner = [runner_epoch(int(t), args.epochs, data) for t in args.trials.split(",") if 1 < int(t) <= 16]
    for row in rows + through_runner:
        row["pct_of_floor"] = 100.0 * row["train_gflops"] / floor
    result = {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "platform": platform.platform(),
        "matmul_floor_gflops": floor,
        "matmul_one_stream_gflops": floor_one,
        "matmul_streams": streams,
        "matmul_streams_gflops": floor_many,
        "floor_epoch_s": flops_per_sample() * (len(data.y_train) // BATCH) * BATCH / floor / 1e9,
        "flops_per_sample": flops_per_sample(),
        "rows": rows,
        "runner_rows": through_runner,
        "note": "epoch_s includes evaluation of train/val/test each epoch (forward passes)",
    }
    # --- peers (benchmarks/peers.py) ---
    peer_tables = []
    if args.peers or args.suite:
        result["peers"], result["summary"], peer_tables = run_peers(args, raw, n_train, floor, result)
    result["load_average"] = {"start": list(load_start), "end": list(os.getloadavg()), "cpus": os.cpu_count()}
    # --- end peers ---
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    table = Table(
        title=f"dnnbench speed on {result['device']} ({result['backend']}): matmul floor {floor:.1f} GFLOP/s "
        f"(one stream {floor_one:.1f}, {streams} at once {floor_many:.1f}), "
        f"{result['floor_epoch_s']:.2f} s/epoch",
        title_justify="left",
    )
    for col in (
        "trials",
        "compile s",
        "epoch s (steady)",
        "s/epoch/trial",
        "GFLOP/s (train FLOPs)",
        "% of floor",
        "peak RSS MiB",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["trials"]),
            f"{r['compile_s']:.2f}",
            f"{r['epoch_s']:.2f}",
            f"{r['epoch_s_per_trial']:.2f}",
            f"{r['train_gflops']:.1f}",
            f"{r['pct_of_floor']:.0f}%",
            f"{r['peak_rss_mb']:.0f}",
        )
    for r in through_runner:
        table.add_row(
            f"{r['trials']} via runner ({r['programs']} programs, {r['workers']} at once)",
            "-",
            f"{r['wall_s'] / args.epochs:.2f}",
            f"{r['epoch_s_per_trial']:.2f}",
            f"{r['train_gflops']:.1f}",
            f"{r['pct_of_floor']:.0f}%",
            "",
        )
    table.caption = (
        "epoch time includes per-epoch evaluation on train/val/test; % counts training FLOPs only; "
        "plain rows: one vmapped program (engine.train_group); 'via runner': runner.execute, "
        "compiled, wall time"
    )
    console = Console() if sys.stdout.isatty() else Console(width=140)
    console.print(table)
    # --- peers (benchmarks/peers.py) ---
    for extra in peer_tables:
        console.print(extra)
    console.print(f"JSON: {args.out}")
    # --- end peers ---


# ------------------------------------------------------------------ peers (benchmarks/peers.py)


def run_peers(
    args: argparse.Namespace, raw: datamod.sources.RawData, n_train: int, floor: float, result: dict
) -> tuple[dict, dict, list[Table | Text]]:
    """The suites on the same data (the first ``n_train`` training samples), ratios, memory; tables."""
    try:
        import peers
    except ImportError:  # run as a module, not as a script
        from benchmarks import peers

    arrays = peers.Arrays(raw.x_train[:n_train], raw.y_train[:n_train], raw.x_test, raw.y_test)
    rss = {"after_dnnbench_epochs_mb": peers.peak_rss_mb()}
    out: dict = {"dnnbench_suite": peers.dnnbench_suite(arrays, epochs=args.suite_epochs)}
    rss["after_dnnbench_suite_mb"] = peers.peak_rss_mb()
    if args.peers:
        out["keras"] = peers.keras_suite(arrays, epochs=args.suite_epochs)
        rss["after_keras_mb"] = peers.peak_rss_mb()
        # torch at every core (as asked) and, on a multi-core machine, at one thread: OpenMP threads
        # that wait on a busy core can be several times slower; the faster run is torch's figure.
        counts = [os.cpu_count() or 1] + ([1] if (os.cpu_count() or 1) > 1 else [])
        tried = [peers.torch_loop(arrays, epochs=args.torch_epochs, threads=n) for n in counts]
        out["torch"] = min(tried, key=lambda r: r.get("epoch_s", float("inf")))
        if "skipped" not in out["torch"]:
            out["torch"]["epoch_s_by_threads"] = {str(r["threads"]): r["epoch_s"] for r in tried}
        rss["after_torch_mb"] = peers.peak_rss_mb()
    result["peak_rss_mb"] = rss

    nan = float("nan")
    row1 = result["rows"][0]
    ours = out["dnnbench_suite"]
    epochs_run = sum(len(r["epoch_times_s"]) for r in ours["optimizers"].values())
    trained = epochs_run * (ours["n_train"] // BATCH) * BATCH
    suite_gflops = flops_per_sample() * trained / ours["suite_wall_s"] / 1e9
    keras = out.get("keras", {"skipped": "not run (use --peers)"})
    torch = out.get("torch", {"skipped": "not run (use --peers)"})
    k_fit = keras.get("suite_fit_s", nan)
    summary = {
        "matmul_floor_gflops": floor,
        "floor_epoch_s": result["floor_epoch_s"],
        "dnnbench_epoch_s": row1["epoch_s"],
        "dnnbench_pct_of_floor": row1["pct_of_floor"],
        "dnnbench_epoch_over_floor": row1["epoch_s"] / result["floor_epoch_s"],
        "dnnbench_compile_s": row1["compile_s"],
        "dnnbench_suite_wall_s": ours["suite_wall_s"],
        # every trial-epoch's training FLOPs over the suite's whole wall time (compile and
        # evaluation included): a lower bound on the steady training throughput
        "dnnbench_suite_gflops": suite_gflops,
        "dnnbench_suite_pct_of_floor": 100.0 * suite_gflops / floor,
        "dnnbench_suite_compile_s": ours["compile_s"],
        "compile_sum_share_of_suite": ours["compile_share"],
        "compile_alone_s": ours["compile_alone_s"],
        "compile_share_of_suite": ours["compile_alone_s"] / ours["suite_wall_s"],
        "dnnbench_suite_epoch_s": ours["epoch_s"],
        # the suite's wall time per epoch trained: what an epoch costs when several programs share the CPU
        "dnnbench_suite_wall_per_epoch_s": ours["suite_wall_s"] / epochs_run,
        "keras_suite_fit_s": k_fit,
        "keras_suite_wall_s": keras.get("suite_wall_s", nan),
        "keras_epoch_s": keras.get("epoch_s", nan),
        "speedup_keras_over_dnnbench_suite": k_fit / ours["suite_wall_s"],
        "speedup_keras_full_code_over_dnnbench_suite": keras.get("suite_wall_s", nan) / ours["suite_wall_s"],
        "keras_epoch_over_dnnbench_suite_wall_per_epoch": keras.get("epoch_s", nan)
        / (ours["suite_wall_s"] / epochs_run),
        "torch_epoch_s": torch.get("epoch_s", nan),
        "torch_epoch_over_dnnbench_epoch": torch.get("epoch_s", nan) / row1["epoch_s"],
        "peak_rss_dnnbench_mb": rss["after_dnnbench_suite_mb"],
        "peak_rss_process_mb": peers.peak_rss_mb(),
        "skipped": {name: part["skipped"] for name, part in (("keras", keras), ("torch", torch)) if "skipped" in part},
    }

    def fmt(value: float, spec: str = ".2f", unit: str = "") -> str:
        return "n/a" if value != value else f"{value:{spec}}{unit}"

    s = summary
    epochs = args.suite_epochs
    head = Table(
        title=f"dnnbench against the floor and its peers ({len(arrays[1]):,} training samples, batch {BATCH})",
        title_justify="left",
    )
    for col, justify in (("figure", "left"), ("value", "right"), ("target (issue 6)", "left")):
        head.add_column(col, justify=justify)
    head.add_row(
        "matmul floor (the faster of one stream and the runner's workers at once)",
        f"{floor:.1f} GFLOP/s = {s['floor_epoch_s']:.2f} s/epoch",
        "",
    )
    head.add_row(
        "dnnbench steady epoch (1 trial alone, with eval)",
        f"{s['dnnbench_epoch_s']:.2f} s = {s['dnnbench_pct_of_floor']:.0f}% of floor "
        f"({s['dnnbench_epoch_over_floor']:.2f}x the floor's time)",
        ">= 90% of floor",
    )
    head.add_row("dnnbench compile (1 trial)", f"{s['dnnbench_compile_s']:.2f} s", "")
    head.add_row(
        f"dnnbench suite 5 optimizers x {epochs} epochs, end to end",
        f"{s['dnnbench_suite_wall_s']:.1f} s (compiles summed {s['dnnbench_suite_compile_s']:.1f} s)",
        "",
    )
    head.add_row(
        "the suite's programs compiled again alone, one after another",
        f"{s['compile_alone_s']:.1f} s = {100 * s['compile_share_of_suite']:.0f}% of the suite's wall",
        "compile <= 10% of suite wall",
    )
    head.add_row(
        "dnnbench suite throughput, end to end (compile + eval included)",
        f"{s['dnnbench_suite_gflops']:.1f} GFLOP/s = {s['dnnbench_suite_pct_of_floor']:.0f}% of floor",
        ">= 90% of floor",
    )
    head.add_row(
        f"Keras-JAX suite 5 x {epochs} (build+compile+fit)",
        f"{fmt(k_fit, '.1f', ' s')} (with evaluate+predict {fmt(s['keras_suite_wall_s'], '.1f', ' s')})",
        "",
    )
    head.add_row(
        "speed-up: Keras suite / dnnbench suite",
        f"{fmt(s['speedup_keras_over_dnnbench_suite'], '.2f', 'x')} "
        f"(full reference code: {fmt(s['speedup_keras_full_code_over_dnnbench_suite'], '.2f', 'x')})",
        ">= 1.3x",
    )
    head.add_row(
        "epoch: Keras steady (median) / dnnbench suite wall per epoch",
        f"{fmt(s['keras_epoch_s'], '.2f', ' s')} / {s['dnnbench_suite_wall_per_epoch_s']:.2f} s = "
        f"{fmt(s['keras_epoch_over_dnnbench_suite_wall_per_epoch'], '.2f', 'x')}",
        "",
    )
    head.add_row(
        "PyTorch eager epoch (Adam) / dnnbench epoch",
        f"{fmt(s['torch_epoch_s'], '.2f', ' s')} / {s['dnnbench_epoch_s']:.2f} s = "
        f"{fmt(s['torch_epoch_over_dnnbench_epoch'], '.2f', 'x')}"
        if "torch" not in s["skipped"]
        else torch["skipped"],
        "",
    )
    head.add_row(
        "peak RSS: after dnnbench / whole process",
        f"{s['peak_rss_dnnbench_mb']:.0f} MiB / {s['peak_rss_process_mb']:.0f} MiB",
        "reported",
    )
    load = os.getloadavg()
    head.caption = (
        f"load average now {load[0]:.2f} on {os.cpu_count()} CPUs (other processes slow every figure); "
        "speed-up counts Keras's fit only, conservatively"
    )

    per = Table(
        title=f"per optimizer, {epochs} epochs: dnnbench | Keras-JAX  (first epoch includes compile; "
        f"dnnbench trains {ours['workers']} programs at once, each epoch shares the CPU)",
        title_justify="left",
    )
    for col in ("optimizer", "first epoch s", "steady epoch s", "wall s (Keras: to end of fit)", "test acc"):
        per.add_column(col, justify="left" if col == "optimizer" else "right")
    for name, mine in ours["optimizers"].items():
        theirs = keras.get("optimizers", {}).get(name, {})
        pair = lambda key, spec=".2f", m=mine, t=theirs: f"{fmt(m.get(key, nan), spec)} | {fmt(t.get(key, nan), spec)}"
        wall = f"{mine['wall_s']:.1f} | {fmt(theirs.get('fit_s', nan), '.1f')}"
        per.add_row(name, pair("first_epoch_s"), pair("epoch_s"), wall, pair("test_acc", ".3f"))
    if "torch" in out and "skipped" not in torch:
        per.add_row(
            f"torch adam ({torch['threads']} thr)",
            f"{torch['first_epoch_s']:.2f}",
            f"{torch['epoch_s']:.2f}",
            f"{torch['wall_s']:.1f}",
            f"{torch['test_acc']:.3f}",
        )
    notes = keras.get("notes", []) + ours["notes"]
    if "epoch_s_by_threads" in torch:
        by = ", ".join(f"{n} thread(s) {t:.2f} s" for n, t in torch["epoch_s_by_threads"].items())
        notes.append(f"torch steady epoch by torch.set_num_threads: {by}; the faster one is torch's figure")
    return out, summary, [head, per, Text("\n".join(f"- {note}" for note in notes))]


if __name__ == "__main__":
    main()
