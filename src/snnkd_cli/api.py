"""The Python API for people who write their own loop: the engine's functions on your modules.

from snnkd_cli import distill, sweep, full_range_kd_loss
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save
from torch import nn
from torch.utils.data import DataLoader

from snnkd_cli.config import LOSSES, TrainConfig, check_choice
from snnkd_cli.engine.checkpoint import check_fresh_out
from snnkd_cli.engine.loop import Checkpointer, FitResult, fit
from snnkd_cli.engine.precision import default_device
from snnkd_cli.engine.report import Reporter, RichReporter
from snnkd_cli.engine.sweep import sweep as _sweep
from snnkd_cli.fsutil import atomic_write_bytes
from snnkd_cli.kd.tasks import DistillTask
from snnkd_cli.models.contract import check_student, time_major

_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def distill(
    student: nn.Module,
    teacher: nn.Module | None,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    loss: str = "full-range",
    alpha: float = 0.2,
    beta: float = 0.5,
    tau: float = 3.0,
    temporal: bool = False,
    device: str | torch.device | None = None,
    verbose: bool = True,
    overwrite: bool = False,
    **config: Any,
) -> FitResult:
    """Distil ``student`` from ``teacher`` with the engine's loop (the one ``snnkd distill`` runs).

    Args:
        student: maps ``[T, B, ...]`` to per-step logits ``[T, B, C]``; state reset by ``reset_net``.
        teacher: ANN mapping ``[B, ...]`` to ``[B, C]`` (None for ``loss="twce"``); kept frozen.
        train_loader, val_loader: yield ``(x [B, ...], y [B])``; event data as ``[B, T, C, H, W]``.
        loss: ``"full-range"``, ``"standard-kd"`` or ``"twce"``.
        alpha, beta, tau: loss weights and temperature.
        temporal: True for event frames (frame t at step t), False for static images.
        device: where to train (default: CUDA if available).
        verbose: Rich progress bar and per-epoch lines.
        overwrite: replace the checkpoints of an earlier run in ``out`` (otherwise such a folder is refused).
        **config: :class:`snnkd_cli.config.TrainConfig` fields: ``T``, ``epochs``, ``lr``,
            ``weight_decay``, ``warmup_epochs``, ``precision``, ``out`` (when given, the student's
            ``state_dict`` is written there as ``last.safetensors`` / ``best.safetensors``)...

    Returns:
        :class:`FitResult` with the per-epoch history and the best validation sweep.
    """
    check_choice(loss, LOSSES, "loss")
    unknown = set(config) - _TRAIN_FIELDS
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; choose from {sorted(_TRAIN_FIELDS)}")
    out = config.pop("out", None)
    if out is not None:
        check_fresh_out(out, overwrite)
    cfg = TrainConfig(**config)
    dev = torch.device(device) if device is not None else default_device()
    student.to(dev)
    if teacher is not None:
        teacher.to(dev).eval().requires_grad_(False)
    x, _ = next(iter(train_loader))
    check_student(student, time_major(x[:2].to(dev), min(cfg.T, 2), temporal))
    task = DistillTask(teacher, cfg.T, loss, alpha, beta, tau, temporal)
    ckpt = _WeightsOnly(student, Path(out)) if out is not None else None
    reporter: Reporter = RichReporter() if verbose else Reporter()
    return fit(
        student,
        task,
        train_loader,
        val_loader,
        cfg,
        eval_T=cfg.T,
        temporal=temporal,
        device=dev,
        checkpointer=ckpt,
        reporter=reporter,
    )


class _WeightsOnly(Checkpointer):
    """The student's ``state_dict`` as ``last.safetensors`` / ``best.safetensors``, written atomically."""

    def __init__(self, model: nn.Module, out: Path) -> None:
        self.model, self.out = model, out

    def epoch_end(self, epoch: int, improved: bool, extra: dict) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        data = st_save(tensors, metadata={"epoch": str(epoch)})
        atomic_write_bytes(self.out / "last.safetensors", data)
        if improved:
            atomic_write_bytes(self.out / "best.safetensors", data)


def sweep(
    model: nn.Module, loader: DataLoader, max_T: int, *, temporal: bool = False, precision: str = "fp32"
) -> list[dict]:
    """Accuracy at every T in 1..max_T from one pass: ``[{"T", "top1", "top5", "spike_rate"}, ...]`` (percent).

    The same numbers ``snnkd eval-sweep`` prints (fp32 by default, as the validation of :func:`distill`;
    ``"auto"``: bf16 where the device computes it natively).
    """
    return _sweep(model, loader, max_T, temporal=temporal, precision=precision).rows
