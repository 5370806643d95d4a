"""The numeric core: models, the training step, the jit/vmap engine and XLA's threads."""
