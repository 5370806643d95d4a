"""What does ``--threads 1`` (the default: the same numbers on any machine) cost against XLA's
threads = every core (the old default)?

Two workloads, each a fresh ``dnnbench`` process per run (XLA's pools are sized once per
process), alternating the thread counts so that a drift of the machine hits both alike:

1. the main job: ``dnnbench optimizers`` (5 optimizers, digits, reference MLP, 20 epochs): several
   programs train at once, which is where a CPU gains;
2. one program: ``dnnbench diagnose`` on MNIST-sized synthetic data (60,000 x 784, 2 epochs),
   where only XLA's own threads can use a second core.

Wall time of the whole process (start-up and compilation included; the compile cache is off).
Run it on a quiet machine:

    .venv/bin/python benchmarks/threads_speed.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WORKLOADS = {
    "main job (optimizers, digits, 20 epochs)": ["optimizers", "--quiet"],
    "one program (diagnose, 60,000 x 784, 2 epochs)": [
        "diagnose",
        "--dataset",
        "synthetic:train=60000,test=10000,features=784,classes=10",
        "--epochs",
        "2",
        "--quiet",
    ],
}


def wall(argv: list[str], threads: int) -> float:
    env = {**os.environ, "DNNBENCH_COMPILE_CACHE": "off"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dnnbench", *argv, "--threads", str(threads)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    figures: dict[str, dict[str, list[float]]] = {}
    for name, argv in WORKLOADS.items():
        times: dict[str, list[float]] = {"1": [], str(cores): []}
        for _ in range(args.repeats):
            for threads in (1, cores):
                times[str(threads)].append(round(wall(argv, threads), 2))
        figures[name] = times
        ratios = [a / b for a, b in zip(times["1"], times[str(cores)], strict=True)]
        print(
            f"{name}: --threads 1 {times['1']} s, --threads {cores} {times[str(cores)]} s, "
            f"ratio 1/{cores} threads {min(ratios):.2f}-{max(ratios):.2f}"
        )
    Path(__file__).with_suffix(".json").write_text(json.dumps({"cores": cores, **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
