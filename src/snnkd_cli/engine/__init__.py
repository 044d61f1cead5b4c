"""The one engine: training loop, evaluation sweep, checkpoints, precision, reporting."""
