"""Speed and size of `dnnbench report --html` on 1,000 real trials (the target: < 5 s, < 5 MB).

Two shapes of 1,000 trials, each trained once on tiny synthetic data by a real `dnnbench sweep`
(20 epochs, so every trial has full histories, diagnoses and gradient norms) and kept in
results/html-report-bench/ (git-ignored) for later runs:

- rows:  100 learning rates x 10 seeds = 100 comparison rows with seed statistics and paired CIs;
- wide: 1,000 learning rates x 1 seed  = 1,000 comparison rows (the largest tables).

Then the report command runs end to end (a fresh process: start-up, reading, statistics, plots,
writing) --repeat times; the script prints the best and worst wall time and the page's size.

    .venv/bin/python benchmarks/html_report.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DNNBENCH = Path(sys.executable).with_name("dnnbench")
DATA = [
    "--dataset",
    "synthetic:train=400,test=100,features=16,classes=4",
    "--hidden",
    "16,16",
    "--epochs",
    "20",
    "--batch-size",
    "50",
    "--optimizer",
    "adam",
    "--quiet",
    "--force",
]


def _rates(n: int) -> str:
    return ",".join(f"{10 ** (-4 + 3 * i / (n - 1)):.6g}" for i in range(n))


SHAPES = {"rows": (100, 10), "wide": (1000, 1)}


def results(name: str) -> Path:
    rates, seeds = SHAPES[name]
    path = HERE.parent / "results" / "html-report-bench" / f"{name}-{rates * seeds}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        subprocess.run(
            [str(DNNBENCH), "sweep", "--vary", f"lr={_rates(rates)}", "--seeds", str(seeds), *DATA, "--out", str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"trained {path.name} in {time.perf_counter() - start:.0f} s")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'shape':<6} {'trials':>6} {'rows':>5} {'wall s (best..worst)':>22} {'size MB':>8}")
    for name, (rates, seeds) in SHAPES.items():
        source = results(name)
        out = source.with_suffix(".html")
        walls = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(
                [str(DNNBENCH), "report", str(source), "--html", str(out), "--force"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            walls.append(time.perf_counter() - start)
        print(
            f"{name:<6} {rates * seeds:>6} {rates:>5} {min(walls):>10.2f} .. {max(walls):<9.2f} "
            f"{out.stat().st_size / 1e6:>8.2f}"
        )


if __name__ == "__main__":
    main()
