"""``python -m dnnbench``: the same as the ``dnnbench`` command."""

import sys

from dnnbench.cli import run

sys.exit(run())
