"""Is every core busy on the default path? Whole processes, alternating, on MNIST-sized data.

The run of issue 20: ``dnnbench optimizers --data mnist_sized.npz --epochs 3 --val-split 0 --json``
(60,000 x 784 synthetic, the reference MLP 784-500-500-10, batch 100, the five recipe optimizers),
as a user runs it, in a fresh process each time (start-up, data, compile and training included;
the compile cache off), against:

- the default with an empty compile cache (a user's first run: what it builds it keeps, and a
  program whose epochs train in two workers is compiled once);
- the default with the compile cache filled by an untimed run before (a second run of the command);
- ``--backend threads``: the same programs on threads of one process (the path before issue 20);
- ``--workers 1 --threads 1``: one program at a time on one core (the N-core scaling reference);
- with ``--ray``, ``--backend ray``: a local Ray cluster started by the run, one task per program;
- Keras 3 on JAX, the recipe's code, the same five optimizers one after another (``peers.py``);
- the machine's floor: the run's FLOPs (training + evaluation) at the matmul peak of
  ``speed.matmul_floor`` with one stream per core.

Then the main job (``dnnbench optimizers`` on digits) cold and warm: compile cache off, empty, and
filled by the run before. Each configuration runs ``--repeats`` times, alternating, so a drift of
the machine hits all alike; figures are medians with the range. Run it on a quiet machine:

    .venv/bin/python benchmarks/cores_speed.py --repeats 3
    .venv/bin/python benchmarks/cores_speed.py --repeats 3 --only default,keras   # the targets' figures
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = (784, 500, 500, 10)
WEIGHTS = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:], strict=True))
EPOCHS, OPTIMIZERS, TRAIN, TEST, EVAL_TRAIN = 3, 5, 60_000, 10_000, 10_000


def run_flop() -> float:
    """Training (6 FLOP per weight per sample) and per-epoch evaluation (2 FLOP: the first 10,000
    training samples and the test set) of the five optimizers."""
    per_epoch = 6.0 * WEIGHTS * TRAIN + 2.0 * WEIGHTS * (EVAL_TRAIN + TEST)
    return OPTIMIZERS * EPOCHS * per_epoch


def make_data(path: Path) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, 784)).astype(np.float32)
    y_train, y_test = rng.integers(0, 10, TRAIN), rng.integers(0, 10, TEST)
    x_train = (centers[y_train] + 2.0 * rng.normal(size=(TRAIN, 784))).astype(np.float32)
    x_test = (centers[y_test] + 2.0 * rng.normal(size=(TEST, 784))).astype(np.float32)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, children included) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env={**os.environ, **(env or {})}, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def floor_gflops(streams: int) -> float:
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import speed; print(speed.matmul_floor(streams={streams}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


KERAS = """
import sys, numpy as np
sys.path.insert(0, {here!r})
import peers
d = np.load({data!r})
peers.keras_suite(peers.Arrays(d["x_train"], d["y_train"], d["x_test"], d["y_test"]), epochs={epochs})
"""


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras-JAX suite")
    parser.add_argument(
        "--ray",
        action="store_true",
        help="also --backend ray (a local cluster started by each run; its CPU is not counted: Ray's "
        "processes are not this script's children)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated configurations to time, by the start of their names (e.g. 'default,keras'; "
        "'main' for the main job); --workers 1 --threads 1 is always timed (the scaling reference)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "cores_speed.json")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    dnnbench = [sys.executable, "-m", "dnnbench"]
    off = {"DNNBENCH_COMPILE_CACHE": "off"}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mnist_sized.npz"
        make_data(data)
        job = [*dnnbench, "optimizers", "--data", str(data), "--epochs", str(EPOCHS), "--val-split", "0", "--json"]
        # the compile cache filled once, untimed: a run's programs as a second run loads them
        warm = {"DNNBENCH_COMPILE_CACHE": str(Path(tmp) / "warm-cache")}
        subprocess.run(job, env={**os.environ, **warm}, check=True, stdout=subprocess.DEVNULL)
        configs: dict[str, tuple[list[str], dict[str, str]]] = {
            "default": (job, off),
            "default, compile cache empty": (job, {}),  # a new folder each time: see below
            "default, compile cache filled": (job, warm),
            "--backend threads": ([*job, "--backend", "threads"], off),
            "--workers 1 --threads 1": ([*job, "--workers", "1", "--threads", "1"], off),
        }
        if args.ray:
            configs["--backend ray"] = ([*job, "--backend", "ray"], off)
        if not args.no_keras:
            if importlib.util.find_spec("keras") is None:  # peers.keras_suite would skip, in 0.4 s "timed"
                sys.exit("cores_speed: keras is not installed: pip install -e '.[bench]', or pass --no-keras")
            script = KERAS.format(here=str(HERE), data=str(data), epochs=EPOCHS)
            configs["Keras 3 (JAX)"] = ([sys.executable, "-c", script], {"KERAS_BACKEND": "jax"})
        wanted = [w.strip().lower() for w in args.only.split(",") if w.strip()]
        if wanted:
            configs = {
                name: config
                for name, config in configs.items()
                if name == "--workers 1 --threads 1" or any(name.lower().startswith(w) for w in wanted)
            }
        walls: dict[str, list[float]] = {name: [] for name in configs}
        cpus: dict[str, list[float]] = {name: [] for name in configs}
        for r in range(args.repeats):
            for name, (argv, env) in configs.items():
                if name == "default, compile cache empty":
                    env = {"DNNBENCH_COMPILE_CACHE": str(Path(tmp) / f"empty-cache{r}")}
                wall, cpu = timed(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
                print(f"  {name}: {wall:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr)
        gflops = floor_gflops(cores)
        floor_s = run_flop() / (gflops * 1e9)
        main_job: dict[str, list[float]] = {"cache off": [], "cache cold": [], "cache warm": []}
        for r in range(args.repeats if not wanted or "main" in wanted else 0):
            cache = Path(tmp) / f"cache{r}"
            main_job["cache off"].append(timed([*dnnbench, "optimizers", "--quiet"], off)[0])
            main_job["cache cold"].append(
                timed([*dnnbench, "optimizers", "--quiet"], {"DNNBENCH_COMPILE_CACHE": str(cache)})[0]
            )
            main_job["cache warm"].append(
                timed([*dnnbench, "optimizers", "--quiet"], {"DNNBENCH_COMPILE_CACHE": str(cache)})[0]
            )

    result: dict[str, object] = {
        "cores": cores,
        "floor_gflops": round(gflops, 1),
        "run_tflop": round(run_flop() / 1e12, 3),
        "floor_s": round(floor_s, 2),
        "load_average": os.getloadavg(),
    }
    base = statistics.median(walls["--workers 1 --threads 1"])
    for name in configs:
        wall = statistics.median(walls[name])
        busy = [c / w / cores for c, w in zip(cpus[name], walls[name], strict=True)]
        result[name] = {
            "wall_s": summary(walls[name]),
            "cpu_s": summary(cpus[name]),
            "cores_busy": summary(busy),
            "pct_of_floor": round(100 * floor_s / wall, 1),
            "vs_workers1_threads1": round(wall / base, 3),
        }
    if "Keras 3 (JAX)" in configs:  # each configuration of dnnbench against Keras, medians
        keras = statistics.median(walls["Keras 3 (JAX)"])
        result["vs_keras"] = {
            name: round(statistics.median(walls[name]) / keras, 3) for name in configs if name != "Keras 3 (JAX)"
        }
    result["scaling_target"] = round(1 / cores + 0.1, 3)
    result["main_job"] = {name: summary(values) for name, values in main_job.items() if values}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
