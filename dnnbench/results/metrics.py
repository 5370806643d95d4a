"""The metric names, in one place: what a trial records, and which of them each command accepts.

Plain tuples, no imports: analysis and render read them without JAX. A tuple's order is the order of
columns and of the names an error message lists, so each keeps the order its command has always shown.
"""

from __future__ import annotations

#: Recorded on every split each epoch (a row's ``history`` keys) and kept as final metrics, in column order.
EPOCH = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
#: The best validation accuracy over the epochs run (the restored epoch's, under early stopping).
BEST_VAL_ACC = "best_val_acc"
#: A row's final metrics: the epoch metrics and the best validation accuracy (CSV columns, ``check``).
FINAL = (*EPOCH, BEST_VAL_ACC)
#: Summarised over seeds in the comparison tables and the results file's summary line.
SUMMARY = ("train_loss", "train_acc", "val_acc", BEST_VAL_ACC, "test_loss", "test_acc")
#: The metric comparisons are ranked and paired on, and ``check``'s default.
HEADLINE = "test_acc"
#: The accuracies of the three splits.
ACCURACIES = ("train_acc", "val_acc", "test_acc")
#: The validation metrics a run is steered by: early stopping's monitor (``config.MONITORS``, which the
#: bottom layer defines for itself) and a tuner's selection metric.
VALIDATION = ("val_acc", "val_loss")
#: The learning curves drawn when none are named (``dnnbench plot``, the HTML report).
CURVES = ("train_loss", "val_loss", "train_acc", "val_acc")
#: What ``dnnbench plot --metric`` accepts: the epoch metrics and the mean minibatch objective.
PLOTTABLE = (*EPOCH, "step_loss")
#: What ``--target METRIC=VALUE`` accepts.
TARGETS = ("val_acc", "val_loss", "train_acc", "train_loss", "test_acc", "test_loss")
#: What ``dnnbench lr-sensitivity --metric`` accepts.
SENSITIVITY = ("val_acc", "val_loss", BEST_VAL_ACC, "train_acc", "train_loss")
#: What the HTML report's sensitivity plot draws; a run recorded with another metric is drawn on val_acc.
SENSITIVITY_PLOT = ("val_acc", BEST_VAL_ACC, "train_acc", "train_loss", "test_acc")
#: What ``dnnbench sweep --sort`` accepts.
SORTABLE = ("test_acc", "val_acc", BEST_VAL_ACC, "train_acc", "train_loss", "val_loss", "test_loss")

#: The results file format (its header's ``schema``) and the statuses a trial row can have.
SCHEMA = "dnnbench/1"
STATUSES = ("ok", "diverged", "error", "interrupted")
#: The keys of a trial row; any other top-level key is a tag (``"regularizer": "l2"``) or extra data.
ROW_KEYS = (
    "type",
    "id",
    "optimizer",
    "hyperparams",
    "seed",
    "config",
    "status",
    "metrics",
    "best_epoch",
    "stopped_epoch",
    "diverged_epoch",
    "history",
    "timing",
    "diagnosis",
)
