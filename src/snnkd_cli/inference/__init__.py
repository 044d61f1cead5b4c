"""Inference on files: the step-by-step early-exit runtime and predict."""
