"""How much faster is ``dnnbench tune`` than trying the same candidates one run at a time?

Arm A: ``dnnbench tune --optimizers adam --budget N`` (its N candidates train as one vmapped,
compiled program; the final runs -- default and winner on ``--seeds`` fresh seeds -- included).
Arm B: the same N candidates (read back from A's results file), each as its own
``dnnbench diagnose`` process: what a user without ``tune`` would script. Both arms are
subprocesses timed by wall clock, each with its own empty persistent compilation cache (so B's
second and later runs load their program from the cache, as they would for a user). Run it on a
quiet machine; the figures go to stdout and to ``benchmarks/tune_speed.json`` (not committed).

    .venv/bin/python benchmarks/tune_speed.py --budget 32 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DNNBENCH = [sys.executable, "-m", "dnnbench"]


def _run(argv: list[str], cache: Path) -> float:
    env = {**os.environ, "DNNBENCH_COMPILE_CACHE": str(cache)}
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1, help="final-run seeds of the tune arm")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "tune_speed.json")
    args = parser.parse_args()
    common = ["--dataset", args.dataset, "--epochs", str(args.epochs), "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = tmp / "tune.jsonl"
        tune_s = _run(
            [
                *DNNBENCH,
                "tune",
                "--optimizers",
                "adam",
                "--budget",
                str(args.budget),
                "--seeds",
                str(args.seeds),
                *common,
                "--out",
                str(results),
            ],
            tmp / "cache-a",
        )
        rows = [json.loads(line) for line in results.read_text().splitlines()]
        search = [r for r in rows if r.get("phase") == "search"]
        one_by_one = []
        for row in search:
            hp = row["hyperparams"]
            argv = [*DNNBENCH, "diagnose", "--optimizer", "adam", "--lr", repr(hp["learning_rate"]), *common]
            for name in ("b1", "b2", "eps"):
                argv += ["--hp", f"{name}={hp[name]!r}"]
            one_by_one.append(_run(argv, tmp / "cache-b"))
    load = os.getloadavg()
    report = {
        "budget": args.budget,
        "epochs": args.epochs,
        "dataset": args.dataset,
        "final_seeds": args.seeds,
        "tune_wall_s": tune_s,
        "diagnose_runs_wall_s": sum(one_by_one),
        "diagnose_first_s": one_by_one[0],
        "diagnose_median_s": sorted(one_by_one)[len(one_by_one) // 2],
        "speedup": sum(one_by_one) / tune_s,
        "loadavg_end": load,
        "cpus": os.cpu_count(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"tune --budget {args.budget} (adam, {args.epochs} epochs, {args.dataset}, finals on {args.seeds} seed(s)): "
        f"{tune_s:.1f} s"
    )
    print(
        f"{len(one_by_one)} x diagnose, one candidate each: {sum(one_by_one):.1f} s "
        f"(first {one_by_one[0]:.1f} s, median {report['diagnose_median_s']:.1f} s)"
    )
    print(f"speed-up: {report['speedup']:.1f}x   (load average at the end: {load[0]:.2f})")


if __name__ == "__main__":
    main()
