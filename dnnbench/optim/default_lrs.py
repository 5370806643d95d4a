"""Default learning rates for optax optimizers whose factory has none, each with its source.

optax's factories mostly take ``learning_rate`` without a default. Run at one fallback rate
(``FALLBACK_LR``), an optimizer built for another scale (adadelta's 1, muon's 0.02) looks broken.
So each gets the rate its paper or its authors' code recommends, the source named in ``source``
(shown by ``dnnbench optimizers --list --all`` and recorded in every row's ``optimizer_origin``).
Where neither gives one, the entry says what it is taken from instead ("optax docstring example":
the rate optax's own documentation uses for it; "derived": computed from a documented rate and the
update rule). These are starting points, not tuned values: ``dnnbench tune`` and
``dnnbench lr-sensitivity`` find the rate for a task.
"""

from __future__ import annotations

import csv
from importlib import resources
from typing import NamedTuple


class DefaultLr(NamedTuple):
    """A documented default learning rate and where it comes from (paper, section, or code)."""

    value: float
    source: str


#: One row per optimizer, in ``default_lrs.csv`` beside this module (data, kept as data): its
#: qualified name (``optax.<name>``, ``optax.contrib.<name>``), its default learning rate and that
#: rate's source.
TABLE: dict[str, DefaultLr] = {
    row["optimizer"]: DefaultLr(float(row["learning_rate"]), row["source"])
    for row in csv.DictReader(resources.files(__package__).joinpath("default_lrs.csv").read_text("utf-8").splitlines())
}


def lookup(qualified: str) -> DefaultLr | None:
    """The documented default of ``optax.<name>`` / ``optax.contrib.<name>``, or None."""
    return TABLE.get(qualified)
