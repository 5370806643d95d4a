"""What does ``--backend ray`` cost over ``--backend local`` on one machine, and does a cluster
spread the programs over its nodes?

The same sweep -- 12 programs (6 optimizers x 2 seeds, ``--max-parallel 1``) of the reference MLP
(784-500-500-10, batch 100) for 2 epochs on MNIST-sized synthetic data -- trained in this process
through ``runner.execute``:

1. ``local``: the thread backend (the default);
2. Ray's start-up alone: ``ray.init(num_cpus=2)`` of a new local cluster;
3. ``ray`` on that 2-CPU cluster: cold (its workers start, import JAX and compile); once Ray is
   up (a fresh cluster whose two workers already ran a tiny program: JAX imported, nothing of the
   sweep compiled) -- the overhead ratio, ray / local wall time; and warm (the same workers again,
   the sweep's executables cached in them);
4. a 2-node ``ray.cluster_utils.Cluster`` (1 CPU each) running the same plan: which node trained
   each program.

Compilation caches are off (``DNNBENCH_COMPILE_CACHE=off``) so both backends compile. Every run's
rows are checked equal to the local ones. Run it on a quiet machine; figures to stdout and
``benchmarks/ray_overhead.json`` (not committed).

    .venv/bin/python benchmarks/ray_overhead.py            # the reference sizes (minutes)
    .venv/bin/python benchmarks/ray_overhead.py --small    # 6,000 samples, 64-64 MLP (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("DNNBENCH_COMPILE_CACHE", "off")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from dnnbench import data  # noqa: E402
from dnnbench.config import DataConfig, ModelConfig, TrainConfig, TrialSpec  # noqa: E402
from dnnbench.run import backends, runner

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
RAY = backends.Settings("ray")


def sweep(hidden: tuple[int, ...], epochs: int) -> runner.Run:
    specs = tuple(
        TrialSpec(
            optimizer=o, seed=s, model=ModelConfig(hidden=hidden), train=TrainConfig(epochs=epochs, batch_size=100)
        )
        for o in OPTIMIZERS
        for s in range(2)
    )
    return runner.Run(specs, max_parallel=1)  # one trial per program: 12 programs, 12 Ray tasks


def timed(run: runner.Run, ds: data.Dataset) -> tuple[float, list]:
    start = time.perf_counter()
    rows = runner.execute(run, ds)
    return time.perf_counter() - start, [(t.id, t.metrics) for t in rows]


def on_two_nodes(run: runner.Run, ds: data.Dataset) -> dict[str, int]:
    """Programs per node of a simulated 2-node cluster (one CPU each)."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    try:
        plan, workers = runner.chunks_of(run, ds)
        execution = backends.start(RAY, [[run.specs[i] for i in chunk] for chunk in plan], ds, workers=workers)
        for _ in execution.finished():
            pass
        execution.close()
        return dict(Counter(node[:8] for node in execution.nodes.values()))
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="6,000 samples and a 64-64 MLP: a quick check")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    train, hidden = (6000, (64, 64)) if args.small else (60000, (500, 500))
    ds = data.load(DataConfig(dataset=f"synthetic:train={train},test=10000,features=784,classes=10"))
    run = sweep(hidden, args.epochs)
    figures: dict[str, object] = {
        "programs": len(runner.chunks_of(run, ds)[0]),
        "train": train,
        "hidden": hidden,
        "epochs": args.epochs,
        "cores": len(os.sched_getaffinity(0)),
    }

    figures["local_s"], reference = timed(run, ds)
    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    figures["ray_start_s"] = time.perf_counter() - start
    try:
        ray_run = runner.Run(run.specs, max_parallel=1, backend=RAY)
        figures["ray_cold_s"], got = timed(ray_run, ds)
        assert got == reference, "ray rows differ from local rows"
        ray.shutdown()  # the same again once Ray's workers are up (JAX imported), nothing compiled in them
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        timed(runner.Run(sweep((8,), 1).specs[:2], max_parallel=1, backend=RAY), ds)
        figures["ray_up_s"], got = timed(ray_run, ds)
        assert got == reference, "ray rows differ from local rows"
        figures["ray_warm_s"], got = timed(ray_run, ds)
        assert got == reference, "ray rows differ from local rows"
    finally:
        ray.shutdown()
    figures["ratio_cold"] = figures["ray_cold_s"] / figures["local_s"]
    figures["ratio_up"] = figures["ray_up_s"] / figures["local_s"]
    figures["ratio_warm"] = figures["ray_warm_s"] / figures["local_s"]
    figures["programs_per_node"] = on_two_nodes(run, ds)
    for key, value in figures.items():
        print(f"{key:20} {value:.2f}" if isinstance(value, float) else f"{key:20} {value}")
    Path(__file__).with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
