"""Experiment kinds: every builder of trial lists (optimizers, regularizers, sweep, sensitivity, tune, suite)."""
