"""``python -m dnnbench``: the same as the ``dnnbench`` command."""

import sys

from dnnbench.cli import main

sys.exit(main())
