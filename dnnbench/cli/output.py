"""A training command's output options, built once from the command line and passed down whole."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dnnbench.render.layout import FIT, TableLayout


@dataclasses.dataclass(frozen=True)
class Output:
    """Where the rows go and how the tables print.

    ``out``: the results file (JSON Lines), or None. ``json``: the rows go to stdout, instead of
    the tables. ``quiet``: no progress display and no notes. ``resume``: keep the finished trials
    already in ``out``. ``force``: replace an existing ``out``. ``layout``: ``--wide`` /
    ``--columns``, which each command checks against its table before anything trains.
    ``session.execute`` checks the combinations (``--resume`` needs ``--out``, not with
    ``--force``) in its place among the other checks, so the first error named stays the same.
    """

    out: Path | None = None
    json: bool = False
    quiet: bool = False
    resume: bool = False
    force: bool = False
    layout: TableLayout = FIT
