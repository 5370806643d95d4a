"""Results as plain rows and the files they live in."""
