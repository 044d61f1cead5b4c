"""The student contract and the input adapters shared by training, sweeps and inference.

A student is an ``nn.Module`` mapping ``[T, B, ...]`` to per-step logits ``[T, B, C]`` whose
state (membrane potentials) is reset by ``spikingjelly.activation_based.functional.reset_net``
(which also calls a ``reset()`` method the model defines itself). Its prediction after the
first t steps is ``logits[:t].mean(0)``; a student whose step t depends on later steps declares
``mixes_time = True`` (then it is evaluated once per T). A teacher maps ``[B, ...]`` to ``[B, C]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


def mixes_time(model: nn.Module) -> bool:
    """True when ``model`` or one of its modules has ``mixes_time = True``.

    Such a model's step t depends on later steps (attention or BN over T, a mean over T inside), so
    the logits of a run at T' are not the first T' steps of a longer run: sweeps run once per T'.
    """
    return any(getattr(m, "mixes_time", False) for m in model.modules())


def reset_state(model: nn.Module) -> None:
    """Reset every stateful module of ``model`` (spikingjelly memories and user ``reset()`` methods)."""
    functional.reset_net(model)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block, its own mode restored after (also on an error)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def check_student(model: nn.Module, x: torch.Tensor, num_classes: int | None = None) -> None:
    """Check the student contract on one small batch, before any training starts.

    Args:
        model: the student.
        x: a time-major input ``[T, B, ...]`` (a few samples are enough).
        num_classes: the expected C, if known.

    Raises:
        SnnkdError: one line saying what is wrong (output rank or shape, or state that
            ``reset_net`` does not clear, so two runs of the same input differ).
    """
    from snnkd_cli.errors import SnnkdError

    name = type(model).__name__
    with evaluating(model):
        try:
            reset_state(model)
            first = model(x)
            if not isinstance(first, torch.Tensor) or first.dim() != 3:
                got = tuple(first.shape) if isinstance(first, torch.Tensor) else type(first).__name__
                raise SnnkdError(
                    f"student {name} must map [T, B, ...] to logits [T, B, C]; got {got} for input {tuple(x.shape)}"
                )
            T, B = x.shape[:2]
            if first.shape[:2] != (T, B) or (num_classes is not None and first.shape[2] != num_classes):
                want = f"[{T}, {B}, {num_classes if num_classes is not None else 'C'}]"
                raise SnnkdError(
                    f"student {name} returned shape {tuple(first.shape)} for input {tuple(x.shape)}; expected {want}"
                )
            second = model(x)  # without a reset: state carried over
            reset_state(model)
            third = model(x)
            if not torch.allclose(first, third, rtol=1e-4, atol=1e-5):
                raise SnnkdError(
                    f"student {name} gives different outputs for the same input after a reset: its state "
                    "is not cleared by spikingjelly's functional.reset_net (define reset() on the module)"
                )
            del second
        finally:
            reset_state(model)
