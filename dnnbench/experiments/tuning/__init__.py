"""Fair comparison: every optimizer tuned under a stated budget (``dnnbench tune``).

``space``: what is searched (defaults per optimizer, ``--space`` overrides); ``search``: the N
quasi-random candidates; ``expected_best`` (in ``analysis``): what a budget of k tries buys; ``selection``: the
winner, chosen on the validation set only, and the trials that retrain it next to the default.

The names below are loaded on first use (PEP 562): readers of results files (the HTML report,
``plot --budget``) use ``expected_best`` without importing the optimizers, hence JAX. (The
function ``expected_best`` is imported from its module: the name is the module's.)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "sparkline": "dnnbench.analysis.expected_best",
    "candidates": "search",
    "TuningPlan": "selection",
    "final_specs": "selection",
    "plan": "selection",
    "search_specs": "selection",
    "select": "selection",
    "Dimension": "space",
    "SpaceSetting": "space",
    "default_space": "space",
    "parse_space": "space",
    "space_for": "space",
}
__all__ = sorted(_EXPORTS)


def _module(name: str) -> str:
    return name if "." in name else f"dnnbench.experiments.tuning.{name}"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_module(_EXPORTS[name])), name)
    raise AttributeError(f"module 'dnnbench.experiments.tuning' has no attribute {name!r}")
