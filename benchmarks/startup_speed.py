"""The main job's start-up against an earlier commit, both measured today on this machine.

Seconds are not comparable between days here: the development machine's speed drifts (its matmul
floor was 353.5 GFLOP/s on 2026-11-28 and 167.6 on 2026-12-07, and the same code's first main job
took 7.6 s and 12.0-13.4 s). A target stated in seconds on one day is therefore checked as a ratio
against the code it was stated for, both run in one session, alternating:

- this checkout and ``--against`` (a commit, checked out into a temporary git worktree that is
  removed at the end), each through its own ``dnnbench`` entry point (read from its
  ``pyproject.toml``: the module layout changed between them) with this environment's packages;
- the main job, ``dnnbench optimizers`` (five optimizers on the bundled digits, 20 epochs), as a
  whole process: imports, data, compiling or loading the programs, training, exit;
- **cold**: an empty compile cache (a user's first run; the digits kept from an untimed run
  before, as after any first run); **warm**: the cache the cold run filled (every later run).
  Each version has a cache folder of its own (``XDG_CACHE_HOME``).

Prints medians, minima and maxima, and the ratios (this checkout / the other), writes JSON. On a
quiet machine:

    .venv/bin/python benchmarks/startup_speed.py --against 737cac6 --repeats 4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cores_speed import summary  # this folder is on sys.path: the script's own

ROOT = Path(__file__).resolve().parent.parent
JOB = ["optimizers", "--quiet"]


def entry_point(root: Path) -> tuple[str, str]:
    """(module, function) of a checkout's ``dnnbench`` program."""
    # the one line of [project.scripts] (tomllib would need Python 3.11)
    found = re.search(r'^dnnbench\s*=\s*"([\w.]+):(\w+)"', (root / "pyproject.toml").read_text(), re.MULTILINE)
    if found is None:
        sys.exit(f"startup_speed: no dnnbench entry point in {root / 'pyproject.toml'}")
    return found.group(1), found.group(2)


def command(root: Path) -> list[str]:
    """The checkout's ``dnnbench`` program run from its source folder (``PYTHONPATH``)."""
    module, function = entry_point(root)
    code = f"import sys; from {module} import {function} as f; sys.argv = ['dnnbench', *sys.argv[1:]]; sys.exit(f())"
    return [sys.executable, "-c", code]


def timed(root: Path, cache: Path, cwd: Path) -> float:
    # cwd: outside both checkouts, whose folder would come before PYTHONPATH on sys.path
    env = {**os.environ, "PYTHONPATH": str(root), "XDG_CACHE_HOME": str(cache)}
    env.pop("DNNBENCH_COMPILE_CACHE", None)
    start = time.perf_counter()
    subprocess.run([*command(root), *JOB], env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the commit to compare with (any git revision)")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "startup_speed.json")
    args = parser.parse_args()
    against = git("rev-parse", "--short", f"{args.against}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix="dnnbench-startup-") as tmp:
        base = Path(tmp)
        reference = base / "reference"
        git("worktree", "add", "--detach", str(reference), against)
        try:
            versions = {"this checkout": ROOT, f"commit {against}": reference}
            caches = {name: base / f"cache-{i}" for i, name in enumerate(versions)}
            for name, root in versions.items():  # untimed: each version keeps its data as after a first run
                timed(root, caches[name], base)
            times: dict[str, dict[str, list[float]]] = {"cold": {}, "warm": {}}
            for r in range(args.repeats):
                # alternate which version goes first, so that neither always follows the other's run
                for name in versions if r % 2 == 0 else reversed(list(versions)):
                    shutil.rmtree(caches[name] / "dnnbench" / "xla", ignore_errors=True)
                    for kind in ("cold", "warm"):
                        seconds = timed(versions[name], caches[name], base)
                        times[kind].setdefault(name, []).append(seconds)
                        print(f"  {kind} {name}: {seconds:.2f} s", file=sys.stderr)
        finally:
            git("worktree", "remove", "--force", str(reference))
    this, other = "this checkout", f"commit {against}"
    result: dict[str, object] = {
        "this_checkout": git("rev-parse", "--short", "HEAD"),
        "against": against,
        "cores": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
    }
    for kind, by_version in times.items():
        result[kind] = {name: summary(values) for name, values in by_version.items()}
        ratios = [a / b for a, b in zip(by_version[this], by_version[other], strict=True)]
        result[kind]["ratio"] = summary(ratios)  # type: ignore[index]
    # a warm run of this checkout against the other's first run: how much of a user's wait is left
    warm_vs_cold = [a / b for a, b in zip(times["warm"][this], times["cold"][other], strict=True)]
    result["this_warm_vs_other_cold"] = summary(warm_vs_cold)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
