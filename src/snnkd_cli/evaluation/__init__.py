"""Evaluation of a trained network: the one-pass sweep over T, energy estimates, the early-exit rule and its
threshold search, and a checkpoint's evaluation (eval-sweep)."""
