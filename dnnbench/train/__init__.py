"""The numeric core: models, the training step, the jit/vmap/scan engine and XLA's threads."""
