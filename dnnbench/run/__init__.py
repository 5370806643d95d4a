"""Running trials: the plan, the runner and its backends (local, Ray)."""
