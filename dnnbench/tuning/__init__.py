"""Fair comparison: every optimizer tuned under a stated budget (``dnnbench tune``).

``space``: what is searched (defaults per optimizer, ``--space`` overrides); ``search``: the N
quasi-random candidates; ``expected_best``: what a budget of k tries buys; ``selection``: the
winner, chosen on the validation set only, and the trials that retrain it next to the default.
"""

from dnnbench.tuning.expected_best import expected_best, sparkline
from dnnbench.tuning.search import candidates
from dnnbench.tuning.selection import TuningPlan, final_specs, plan, search_specs, select
from dnnbench.tuning.space import Dimension, SpaceSetting, default_space, parse_space, space_for

__all__ = ["Dimension", "SpaceSetting", "TuningPlan", "candidates", "default_space", "expected_best", "final_specs",
           "parse_space", "plan", "search_specs", "select", "space_for", "sparkline"]
