"""The student contract and the input adapters shared by training, sweeps and inference.

A student is an ``nn.Module`` mapping ``[T, B, ...]`` to per-step logits ``[T, B, C]`` whose
state (membrane potentials) is reset by ``spikingjelly.activation_based.functional.reset_net``
(which also calls a ``reset()`` method the model defines itself). Its prediction after the
first t steps is ``logits[:t].mean(0)``. A teacher maps ``[B, ...]`` to ``[B, C]``.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional
from torch import nn


def time_major(x: torch.Tensor, T: int, temporal: bool) -> torch.Tensor:
    """Student input ``[T, B, ...]`` from a batch.

    Args:
        x: static images ``[B, C, H, W]`` or event frames ``[B, T0, C, H, W]`` (``T0 >= T``).
        T: number of steps.
        temporal: True for event frames (frame t at step t), False for static images.

    Returns:
        ``[T, B, ...]``; for static images a stride-0 view (no copy), which models may use
        to compute the first layer once.
    """
    if temporal:
        if x.dim() < 3 or x.shape[1] < T:
            raise ValueError(f"event batch must be [B, T>={T}, ...], got shape {tuple(x.shape)}")
        return x[:, :T].transpose(0, 1).contiguous()
    return x.unsqueeze(0).expand(T, *x.shape)


def teacher_input(x: torch.Tensor, temporal: bool) -> torch.Tensor:
    """ANN input ``[B, C, H, W]``: the image itself, or the mean over time of event frames ``[B, T, C, H, W]``."""
    return x.mean(1) if temporal else x


def reset_state(model: nn.Module) -> None:
    """Reset every stateful module of ``model`` (spikingjelly memories and user ``reset()`` methods)."""
    functional.reset_net(model)
