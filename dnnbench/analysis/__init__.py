"""What rows mean: diagnosis, seed statistics, targets, profiles, regression checks, expected best."""
