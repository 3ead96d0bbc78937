"""asv suites: training step, inference and optimizer updates over batch size and width."""
