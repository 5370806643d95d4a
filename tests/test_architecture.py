"""The package's shape as rules: a dozen entries at the top, imports that point one way.

The layers, top to bottom: ``cli`` -> ``experiments`` -> ``run`` -> ``train`` -> ``optim``/``data``/``config``.
``analysis`` and ``render`` read rows (``results``) and never train. The graph is read from the source
(every ``import``, lazy ones inside functions too), so a wrong import fails here before it ships.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dnnbench"
BOTTOM = {"config", "errors", "optim", "data"}
# What each top-level entry may import (besides itself). ``dnnbench`` is the package root (__version__).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors", "optim"},
    "optim": {"errors", "config"},
    "data": {"errors", "config"},
    "results": BOTTOM | {"dnnbench"},
    "analysis": BOTTOM | {"results"},
    "render": BOTTOM - {"optim", "data"} | {"results", "analysis"},
    "train": BOTTOM | {"results"},
    "run": BOTTOM | {"results", "analysis", "train"},
    "experiments": BOTTOM | {"results", "analysis", "train", "run"},
    "api": BOTTOM | {"results", "analysis", "train", "run", "experiments"},
    "cli": BOTTOM | {"results", "analysis", "train", "run", "experiments", "render", "dnnbench"},
    "__main__": {"cli"},
}
# XLA must start with --threads threads before JAX computes anything, and every path that computes imports
# ``optim`` first: the one import from a lower layer up, by design (see dnnbench/optim/__init__.py).
EXCEPTIONS = {("dnnbench.optim", "dnnbench.train.threads")}


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dnnbench" or node.module.startswith("dnnbench."):
                # module.name: a submodule or a name in it; either way the layer is the module's
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("dnnbench.")}
    return found


def _entry(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__version__" else "dnnbench"


def layer_violations(package: Path = PACKAGE) -> list[str]:
    """Every import of a module by a module whose layer may not import it: ``a -> b`` lines."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        module = _module_name(path, package)
        here = _entry(module)
        for target in sorted(_imports(path)):
            there = _entry(target)
            if there == here or (module, target) in EXCEPTIONS:
                continue
            if there not in ALLOWED.get(here, set()):
                bad.append(f"{module} -> {target}")
    return bad


def test_the_top_level_has_at_most_a_dozen_entries():
    # The package markers (__init__, __main__) and caches are not concepts; everything else is.
    entries = sorted(
        p.name
        for p in PACKAGE.iterdir()
        if p.name not in {"__init__.py", "__main__.py", "__pycache__"} and not p.name.startswith(".")
    )
    assert len(entries) <= 12, entries


def test_every_entry_has_a_layer():
    for path in PACKAGE.iterdir():
        name = path.name.removesuffix(".py")
        if name not in {"__init__", "__pycache__"}:
            assert name in ALLOWED, f"{name} has no layer in tests/test_architecture.py"


def test_imports_point_down_the_layers():
    assert layer_violations() == []


def test_a_wrong_import_is_caught(tmp_path):
    """The rule can fail: a copy of the package where the analysis layer imports the engine."""
    fake = tmp_path / "dnnbench"
    (fake / "analysis").mkdir(parents=True)
    (fake / "analysis" / "__init__.py").write_text("")
    (fake / "analysis" / "bad.py").write_text("def f():\n    from dnnbench.train import engine\n")
    (fake / "render").mkdir()
    (fake / "render" / "bad.py").write_text("from dnnbench import run\n")
    assert layer_violations(fake) == [
        "dnnbench.analysis.bad -> dnnbench.train.engine",
        "dnnbench.render.bad -> dnnbench.run",
    ]


@pytest.mark.parametrize("entry", ["analysis", "render"])
def test_readers_never_train(entry):
    assert not ALLOWED[entry] & {"train", "run", "experiments", "cli"}
