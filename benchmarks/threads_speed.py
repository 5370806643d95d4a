"""What does ``--threads 1`` (the default: the same numbers on any machine) cost against XLA's
threads = every core (the old default), and what does ``--threads auto`` (the cores shared out
between a run's programs) give back?

Two workloads, each a fresh ``dnnbench`` process per run (XLA's pools are sized once per
process), alternating the thread counts so that a drift of the machine hits both alike:

1. the main job: ``dnnbench optimizers`` (5 optimizers, digits, reference MLP, 20 epochs): several
   programs train at once, which is where a CPU gains;
2. one program: ``dnnbench diagnose`` on MNIST-sized synthetic data (60,000 x 784, 2 epochs),
   where only XLA's own threads can use a second core.

Wall time of the whole process (start-up and compilation included; the compile cache is off).
``auto`` gives the main job's five programs one thread each (on up to 9 cores) and the one
program every core, so on a 2-core machine it should match the faster of the other two.
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


def wall(argv: list[str], threads: str) -> float:
    env = {**os.environ, "DNNBENCH_COMPILE_CACHE": "off"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dnnbench", *argv, "--threads", threads],
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
    settings = ("1", str(cores), "auto") if cores > 1 else ("1", "auto")
    for name, argv in WORKLOADS.items():
        times: dict[str, list[float]] = {threads: [] for threads in settings}
        for _ in range(args.repeats):
            for threads in settings:
                times[threads].append(round(wall(argv, threads), 2))
        figures[name] = times
        said = ", ".join(f"--threads {threads} {times[threads]} s" for threads in settings)
        ratios = {other: [a / b for a, b in zip(times["1"], times[other], strict=True)] for other in settings[1:]}
        print(f"{name}: {said}; " + ", ".join(f"1/{o} {min(r):.2f}-{max(r):.2f}" for o, r in ratios.items()))
    Path(__file__).with_suffix(".json").write_text(json.dumps({"cores": cores, **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
