"""The metric names in one place (``dnnbench.results.metrics``): consistent, and readable without JAX."""

from __future__ import annotations

import subprocess
import sys

from dnnbench import config
from dnnbench.results import metrics

ACCEPTED = {
    "SUMMARY": metrics.SUMMARY,
    "ACCURACIES": metrics.ACCURACIES,
    "VALIDATION": metrics.VALIDATION,
    "CURVES": metrics.CURVES,
    "PLOTTABLE": metrics.PLOTTABLE,
    "TARGETS": metrics.TARGETS,
    "SENSITIVITY": metrics.SENSITIVITY,
    "SENSITIVITY_PLOT": metrics.SENSITIVITY_PLOT,
    "SORTABLE": metrics.SORTABLE,
    "HEADLINE": (metrics.HEADLINE,),
}


def test_early_stopping_monitors_are_the_validation_metrics():
    # config sits below the results layer and names them itself: they must not drift apart
    assert set(config.MONITORS) == set(metrics.VALIDATION) == {"val_acc", "val_loss"}


def test_every_name_a_command_accepts_is_one_a_trial_records():
    recorded = {*metrics.FINAL, "step_loss"}
    assert metrics.FINAL == ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "best_val_acc")
    for name, names in ACCEPTED.items():
        assert set(names) <= recorded, name
        assert len(set(names)) == len(names), name


def test_the_readers_of_results_get_them_without_jax():
    code = (
        "import sys, dnnbench.results.metrics, dnnbench.analysis.export, dnnbench.render.html.sections; "
        "print(sorted(m for m in ('jax', 'jaxlib', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
