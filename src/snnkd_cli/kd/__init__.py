"""Distillation: losses (pure tensor functions) and tasks (what one training step computes)."""
